"""Where `RankingLoss(derivatives="auto")` should switch from the closed form to autodiff.

For each relaxation and set size ``n``, one Newton target ``z*`` (``curvature="hessian"``)
of a batch of ``B`` sets is computed three ways, each in its own process (so that the
peak memory is that variant's alone):

- ``closed_form``: the relaxation's closed-form ``permutation_derivatives``
  (``RankingLoss(derivatives="closed_form")``, per-set Hessians);
- ``autodiff``: per-set Hessians by automatic differentiation of the loss (what
  ``derivatives="auto"`` falls back to above its switch);
- ``autodiff_shared``: ``RankingLoss(derivatives="autodiff")``: `NewtonLoss` forms only
  the batch's summed Hessian, by ``n`` Hessian-vector products.

Reported per variant: the first call (trace + run) and the median of the next calls, in
seconds, of the ``tf.function`` (graph mode), and the process's peak resident memory
above its level after the warm-up import, in MiB. The ratios to ``closed_form`` are
printed side by side; all numbers of one table come from the same run.

    python benchmarks/ranking_derivatives.py                      # n = 4 ... 64
    python benchmarks/ranking_derivatives.py --n 8 16 --relaxations neuralsort --calls 5
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VARIANTS = ("closed_form", "autodiff", "autodiff_shared")
RELAXATIONS = ("neuralsort", "softsort", "diffsort")

CHILD = r"""
import json, resource, statistics, sys, time
sys.path.insert(0, {repo!r})
import numpy as np
import tensorflow as tf
import keras_newton
from keras_newton.losses import RankingLoss

relaxation, variant, n, batch, calls = {args!r}
layers = {{"neuralsort": lambda: keras_newton.layers.NeuralSort(tau=1.0),
          "softsort": lambda: keras_newton.layers.SoftSort(tau=1.0),
          "diffsort": lambda: keras_newton.layers.DiffSort("odd_even", 10.0, "cauchy")}}
base = RankingLoss(layers[relaxation](),
                   derivatives="autodiff" if variant == "autodiff_shared" else "auto")
if variant == "closed_form":
    base.CLOSED_FORM_MAX_N = 10 ** 9
elif variant == "autodiff":
    base.CLOSED_FORM_MAX_N = 0
loss = keras_newton.NewtonLoss(base, curvature="hessian")
rng = np.random.default_rng(0)
s = tf.constant(rng.normal(size=(batch, n)).astype(np.float32))
y = tf.constant(rng.permuted(np.tile(np.arange(n), (batch, 1)), axis=1).astype(np.float32))
fn = tf.function(loss.target, autograph=False)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
fn(y, s).numpy()
first = time.perf_counter() - start
times = []
for _ in range(calls):
    start = time.perf_counter()
    fn(y, s).numpy()
    times.append(time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RESULT" + json.dumps({{"first_s": first, "call_s": statistics.median(times),
                             "peak_mib": (peak - rss0) / 1024}}))
"""


def measure(relaxation, variant, n, batch, calls, timeout):
    code = CHILD.format(repo=REPO, args=(relaxation, variant, n, batch, calls))
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail[:80]}
    return json.loads(lines[-1][len("RESULT"):])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[4, 8, 16, 24, 32, 48, 64])
    parser.add_argument("--batch", type=int, default=20, help="sets per batch")
    parser.add_argument("--calls", type=int, default=3, help="timed calls after the first")
    parser.add_argument("--relaxations", nargs="+", default=list(RELAXATIONS),
                        choices=RELAXATIONS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds per variant before it is reported as too slow")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    rows = []
    for relaxation in args.relaxations:
        print(f"\n{relaxation}, batch {args.batch}, graph mode "
              f"(first call s / median call s / peak MiB; ratio to closed_form)", flush=True)
        for n in args.n:
            got = {v: measure(relaxation, v, n, args.batch, args.calls, args.timeout)
                   for v in args.variants}
            rows.append({"relaxation": relaxation, "n": n, **got})
            ref = got.get("closed_form", {})
            cells = []
            for v in args.variants:
                r = got[v]
                if "error" in r:
                    cells.append(f"{v}: {r['error']}")
                    continue
                cell = f"{v}: {r['first_s']:.2f} / {r['call_s']:.4f} / {r['peak_mib']:.0f}"
                if v != "closed_form" and "call_s" in ref:
                    cell += f" (x{r['call_s'] / ref['call_s']:.1f} call)"
                cells.append(cell)
            print(f"  n={n:3d}  " + "   ".join(cells), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
