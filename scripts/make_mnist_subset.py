"""Cuts the class-balanced MNIST subset bundled with keras-newton.

Writes ``keras_newton/datasets/data/mnist_subset.npz``: ``TRAIN_PER_CLASS`` training and
``TEST_PER_CLASS`` test digits of every class (10 000 + 2 000 by default), drawn without
replacement by ``numpy.random.default_rng(SEED)`` from the full MNIST file in Keras' layout
(``x_train`` (60000, 28, 28) uint8, ``y_train`` (60000,) uint8, ``x_test``, ``y_test``).
The chosen rows keep their original order (indices sorted ascending), so the cut is
deterministic for a given source file and seed. Besides Keras' four arrays the file holds
``train_indices`` and ``test_indices``: the rows of the source file that were kept, so the
subset can be traced back to (and checked against) full MNIST. The file is written with
``numpy.savez_compressed``; no pickled objects.

Provenance and licence: MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges
(http://yann.lecun.com/exdb/mnist/), distributed under the Creative Commons
Attribution-Share Alike 3.0 licence (CC BY-SA 3.0). The source file is the copy Keras
downloads (``keras.datasets.mnist.load_data``, ``mnist.npz``). The subset is a derived
work under the same licence.

Usage:

    python scripts/make_mnist_subset.py [--source PATH] [--out PATH]
        [--train-per-class 1000] [--test-per-class 200] [--seed 0]

Without ``--source`` the file named by ``$KERAS_NEWTON_MNIST`` is read, else the Keras
cache (``$KERAS_HOME/datasets/mnist.npz``, by default ``~/.keras``).
"""

import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where full MNIST is looked for without --source: $KERAS_NEWTON_MNIST, then the Keras cache.
DEFAULT_SOURCES = tuple(p for p in (
    os.environ.get("KERAS_NEWTON_MNIST"),
    os.path.join(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")),
                 "datasets", "mnist.npz"),
) if p)
DEFAULT_OUT = os.path.join(REPO, "keras_newton", "datasets", "data", "mnist_subset.npz")
TRAIN_PER_CLASS = 1000
TEST_PER_CLASS = 200
SEED = 0
NUM_CLASSES = 10
MAX_BYTES = 3 * 1024 * 1024


def balanced_indices(labels, per_class, rng):
    """Sorted row indices holding ``per_class`` rows of every class, drawn by ``rng``."""
    chosen = []
    for c in range(NUM_CLASSES):
        rows = np.flatnonzero(labels == c)
        if rows.size < per_class:
            raise ValueError(
                f"class {c} has only {rows.size} rows; cannot draw per_class={per_class}."
            )
        chosen.append(rng.choice(rows, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int32)


def make_subset(source, train_per_class=TRAIN_PER_CLASS, test_per_class=TEST_PER_CLASS,
                seed=SEED):
    """Returns the subset's arrays (a dict) cut from the MNIST ``.npz`` at ``source``."""
    with np.load(source, allow_pickle=False) as f:
        full = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    rng = np.random.default_rng(seed)
    train_idx = balanced_indices(full["y_train"], train_per_class, rng)
    test_idx = balanced_indices(full["y_test"], test_per_class, rng)
    return {
        "x_train": full["x_train"][train_idx],
        "y_train": full["y_train"][train_idx],
        "x_test": full["x_test"][test_idx],
        "y_test": full["y_test"][test_idx],
        "train_indices": train_idx,
        "test_indices": test_idx,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="full MNIST .npz in Keras' layout")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS)
    parser.add_argument("--test-per-class", type=int, default=TEST_PER_CLASS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    source = args.source or next((p for p in DEFAULT_SOURCES if os.path.isfile(p)), None)
    if source is None:
        parser.error("no MNIST file found; pass --source PATH (Keras' mnist.npz)")
    arrays = make_subset(source, args.train_per_class, args.test_per_class, args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {len(arrays['y_train'])} train + {len(arrays['y_test'])} "
          f"test digits from {source}, {size / 2**20:.2f} MiB")
    if size > MAX_BYTES:
        print(f"warning: {size} bytes exceeds the {MAX_BYTES}-byte budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
