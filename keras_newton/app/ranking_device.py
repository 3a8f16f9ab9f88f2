"""``keras-newton bench ranking --engine device``: every run of the ranking benchmark side by
side in one compiled training step, the four-digit sets drawn on the device.

The ``keras`` engine (`keras_newton.app.ranking.train_one`) trains one run at a time and
feeds each step from a host pipeline (tf.data or NumPy). On an accelerator that leaves the
device waiting on the host, and one small CNN does not fill it. This engine instead:

- holds the MNIST training split on the device and draws each step's sets inside the
  compiled step (`keras_newton.datasets.four_digit.FourDigitSampler`: `keras.random` and
  `keras.ops`; the distribution of the host pipelines, not their random stream);
- trains all runs (variants x lambdas x seeds) at once: `SideBySide` is one `keras.Model`
  holding one ranking CNN per run, and its loss is the sum of the runs' losses. The runs
  share no weight, so each run's gradient is its own loss's gradient, and Adam's update
  is per weight: every run trains as it would alone (`tests/test_ranking_device.py`
  checks this against runs trained one by one: bit for bit on JAX, PyTorch and eager
  TensorFlow; in a TensorFlow graph the larger graph rounds differently, gradients agree
  to about 1e-7 relative, and Adam can amplify such rounding in near-zero gradients).
  Runs of the same seed start from the same weights and see the same sets, as in the
  ``keras`` engine;
- evaluates every ``eval_every`` steps on the same fixed validation and test sets as the
  ``keras`` engine, composed on the device from their image indices; the test accuracy
  reported is the one at the best validation step (diffsort's protocol);
- optionally (``mixed_precision``) runs the CNNs in ``mixed_bfloat16`` while their scores,
  the relaxation, the loss and the Newton solve stay float32;
- optionally (``time_budget_s``) stops at the last evaluation point that fits a wall-clock
  budget (from the start of training, compilation included), the step count then being
  what fitted.

Ctrl-C stops at the next evaluation point; the runs of the group are then lost (they finish
together), and ``--resume`` trains them again.
"""

import math
import time

import keras
import numpy as np

from keras_newton.app import common


def build_side_by_side(config, runs, mnist_train, make_loss):
    """The `SideBySide` model of ``runs`` (``[(variant, tikhonov or None, seed)]``)."""
    from keras_newton.datasets.four_digit import FourDigitSampler
    from keras_newton.models import multi_digit_cnn

    seeds = sorted({seed for _, _, seed in runs})
    samplers = [FourDigitSampler(*mnist_train, n=config["n"], batch_size=config["batch_size"],
                                 seed=seed, name=f"sets_seed{seed}") for seed in seeds]
    towers, losses, base_losses = [], [], []
    policy = keras.config.dtype_policy()
    try:
        for i, (variant, lam, seed) in enumerate(runs):
            # The weights of a run depend on its seed alone, as in the keras engine.
            keras.utils.set_random_seed(seed)
            if config.get("mixed_precision"):
                keras.config.set_dtype_policy("mixed_bfloat16")
            towers.append(multi_digit_cnn(config["n"], name=f"run{i}",
                                          score_dtype="float32"))
            keras.config.set_dtype_policy(policy)
            loss, base = make_loss(config, variant, lam)
            losses.append(loss)
            base_losses.append(base)
    finally:
        keras.config.set_dtype_policy(policy)
    return SideBySide(samplers, [seeds.index(seed) for _, _, seed in runs], towers, losses,
                      base_losses)


class SideBySide(keras.Model):
    """Several ranking runs trained in one step: run ``i`` scores the sets of sampler
    ``sampler_of[i]`` with ``towers[i]`` and is trained on ``losses[i]``; the model's loss
    is the sum over runs. Per-run metrics ``loss_i`` and ``base_loss_i`` (the base loss of
    a Newton variant, for the curves)."""

    def __init__(self, samplers, sampler_of, towers, losses, base_losses, **kwargs):
        super().__init__(**kwargs)
        self.samplers = samplers
        self.sampler_of = list(sampler_of)
        self.towers = towers
        self.run_losses = losses
        self.run_base_losses = base_losses
        self.loss_trackers = [keras.metrics.Mean(name=f"loss_{i}")
                              for i in range(len(towers))]
        self.base_loss_trackers = [keras.metrics.Mean(name=f"base_loss_{i}")
                                   for i in range(len(towers))]

    def call(self, inputs, training=None):
        sets = [sampler() for sampler in self.samplers]
        out = {}
        for i, tower in enumerate(self.towers):
            x, y = sets[self.sampler_of[i]]
            out[f"scores_{i}"] = tower(x, training=training)
            out[f"labels_{i}"] = y
        return out

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        ops = keras.ops
        total = None
        for i, loss in enumerate(self.run_losses):
            labels = y_pred[f"labels_{i}"]
            scores = ops.cast(y_pred[f"scores_{i}"], "float32")
            value = loss(labels, scores)
            base = self.run_base_losses[i]
            base_value = value if base is loss else base(labels, ops.stop_gradient(scores))
            self.loss_trackers[i].update_state(value)
            self.base_loss_trackers[i].update_state(base_value)
            total = value if total is None else total + value
        return total

    @property
    def metrics(self):
        return super().metrics + self.loss_trackers + self.base_loss_trackers


def rank_scores(labels, scores, first=None):
    """``(exact match, element-wise accuracy)`` of ``scores`` against ``labels``, both
    ``(sets, n)``: the benchmark's metrics (`keras_newton.metrics`), the exact match over
    the ``first`` items when given."""
    from keras_newton.metrics import ElementwiseRankAccuracy, ExactMatchAccuracy

    exact, elementwise = ExactMatchAccuracy(first=first), ElementwiseRankAccuracy()
    for metric in (exact, elementwise):
        metric.update_state(labels, scores)
    return float(exact.result()), float(elementwise.result())


class _Evaluator:
    """Scores fixed sets (image indices) with every run's CNN, composed on the device."""

    def __init__(self, images, labels, indices, towers, batch_size):
        from keras_newton.datasets.four_digit import FourDigitSampler

        self.indices = indices.astype(np.int32)
        n = indices.shape[1]
        composer = FourDigitSampler(images, labels, n=n, batch_size=1)
        inp = keras.Input((n, 4), dtype="int32")
        x, y = composer(inp)
        self.model = keras.Model(inp, [y] + [t(x) for t in towers])
        self.batch_size = batch_size

    def __call__(self, first=None):
        out = self.model.predict(self.indices, batch_size=self.batch_size, verbose=0)
        labels = np.asarray(out[0])
        return [rank_scores(labels, np.asarray(s), first) for s in out[1:]]


def train_side_by_side(mnist, config, runs, make_loss, progress=True, prefix=""):
    """Trains ``runs`` (``[(variant, tikhonov or None, seed)]``) side by side; returns one
    record per run, in the format of `keras_newton.app.ranking.train_one`."""
    from keras_newton.datasets import four_digit_datasets
    from keras_newton.datasets.four_digit import split_mnist

    keras.backend.clear_session()
    splits = split_mnist(mnist)
    n = config["n"]
    model = build_side_by_side(config, runs, splits["train"], make_loss)
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]),
                  jit_compile=config["jit_compile"])
    # The fixed evaluation sets of the keras engine: those of `four_digit_datasets` (its
    # NumPy pipeline holds their image indices), composed here on the device.
    _, val, test = four_digit_datasets(
        mnist, n, batch_size=config["batch_size"],
        num_validation_sets=config["validation_sets"], num_test_sets=config["test_sets"],
        pipeline="numpy")
    evaluate_val = _Evaluator(*splits["validation"], val.indices, model.towers,
                              config["eval_batch_size"])
    evaluate_test = _Evaluator(*splits["test"], test.indices, model.towers,
                               config["eval_batch_size"])
    select_first = 5 if config.get("select_on") == "em5" and n > 5 else None

    k = len(runs)
    curves = [{"step": [], "val_exact_match": [], "val_elementwise": [], "base_loss": [],
               "val_select": [], "test_exact_match": [], "test_elementwise": []}
              for _ in range(k)]
    budget = config.get("time_budget_s")
    chunk = config["eval_every"]
    dummy = np.zeros((chunk, 1), np.float32)
    t0 = time.perf_counter()
    step, chunk_times, eval_times = 0, [], []
    while step < config["steps"]:
        steps = min(chunk, config["steps"] - step)
        start = time.perf_counter()
        history = model.fit(dummy[:steps], batch_size=1, epochs=1, shuffle=False, verbose=0)
        chunk_times.append((time.perf_counter() - start) / steps)
        step += steps
        start = time.perf_counter()
        val, val_sel = evaluate_val(), (evaluate_val(select_first) if select_first else None)
        test = evaluate_test()
        eval_times.append(time.perf_counter() - start)
        logs = {key: values[-1] for key, values in history.history.items()}
        for i, curve in enumerate(curves):
            curve["step"].append(step)
            curve["val_exact_match"].append(val[i][0])
            curve["val_elementwise"].append(val[i][1])
            curve["val_select"].append((val_sel or val)[i][0])
            curve["test_exact_match"].append(test[i][0])
            curve["test_elementwise"].append(test[i][1])
            curve["base_loss"].append(float(logs.get(f"base_loss_{i}", float("nan"))))
        elapsed = time.perf_counter() - t0
        if progress:
            best = max(range(k), key=lambda i: val[i][0])
            print(f"{prefix} step {step}/{config['steps']}: {k} runs, "
                  f"{chunk_times[-1] * 1e3:.1f} ms/step, val exact match "
                  f"{100 * min(v[0] for v in val):.2f}..{100 * val[best][0]:.2f}% "
                  f"({elapsed:.0f} s)", flush=True)
        common._Interrupt.check()
        if budget is not None and step < config["steps"]:
            # The next chunk at the latest chunk's pace, and its evaluation.
            if elapsed + steps * chunk_times[-1] + eval_times[-1] > budget:
                break
    wall = time.perf_counter() - t0
    step_time = common.step_time_stats(chunk_times[1:] or chunk_times, 0)
    step_time["per_chunk"] = True
    records = []
    for i, (variant, lam, seed) in enumerate(runs):
        curve = curves[i]
        scores = [v if math.isfinite(v) else -1.0 for v in curve["val_select"]]
        best = int(np.argmax(scores))  # the first of equal bests
        loss = model.run_losses[i]
        records.append({
            "variant": variant, "seed": seed,
            "tikhonov": None if variant == "baseline" else float(loss.tikhonov),
            "test_exact_match": curve["test_exact_match"][best],
            "test_elementwise": curve["test_elementwise"][best],
            "best_step": curve["step"][best],
            "best_val_exact_match": curve["val_exact_match"][best],
            "curve": curve,
            "diverged": not all(math.isfinite(v) for v in curve["base_loss"]),
            "step_time": step_time,
            "steps_done": step,
            "runs_side_by_side": k,
            "wall_s": wall,
        })
    return records
