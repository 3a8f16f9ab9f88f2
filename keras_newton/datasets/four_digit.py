"""Four-digit MNIST sets for ranking supervision (Grover et al., ICLR 2019; diffsort).

Protocol (docs/conventions.md, "Data"): MNIST is split into 55k training / 5k validation / 10k test
images (or the same proportions of whatever MNIST arrays are given). One *item* is four
MNIST images, drawn independently at random (a random index per position), concatenated
along the width into a ``28 x 112`` image with pixels in ``[0, 1]``; its label is the
four-digit number they show (leading zeros allowed, so ``0 .. 9999``). A *sample* is a
set of ``n`` items, ``x`` of shape ``(n, 28, 112)`` and ``y`` of shape ``(n,)``: the
values a ranking model must order.

- Training: `train_dataset` draws fresh random sets for every step (stateless random
  numbers keyed by ``(seed, step)``, so a run is reproducible).
- Validation and test: `eval_dataset` holds a fixed set of seeded sets.

All functions take MNIST as arrays; the tf.data pipelines use TensorFlow ops (allowed in
``keras_newton.datasets``).

Example:

```python
with np.load("mnist.npz") as f:
    mnist = (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
train, val, test = keras_newton.datasets.four_digit_datasets(mnist, n=5, batch_size=20)
model = keras_newton.models.multi_digit_cnn(5)
model.compile("adam", loss=..., metrics=[keras_newton.metrics.ExactMatchAccuracy()])
model.fit(train, steps_per_epoch=100, epochs=10, validation_data=val)
```
"""

import numpy as np

from keras_newton import _checks

DIGITS = 4
IMAGE_SHAPE = (28, 28)
# Place values of the four positions, left to right.
_PLACES = np.array([1000, 100, 10, 1], dtype=np.int64)
# 55k / 5k of MNIST's 60k training images.
VALIDATION_FRACTION = 5000 / 60000


def _check_arrays(x, y, name):
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(
            f"{name} images must have shape (N, 28, 28) (or (N, 28, 28, 1)); received "
            f"{x.shape}."
        )
    if len(y) != len(x):
        raise ValueError(
            f"{name} has {len(x)} images but {len(y)} labels; they must match."
        )
    if len(x) == 0:
        raise ValueError(f"{name} holds no images.")
    if y.min() < 0 or y.max() > 9:
        raise ValueError(f"{name} labels must be digits 0..9; received {y.min()}..{y.max()}.")
    return x, y.astype(np.int64)


def split_mnist(mnist, validation_fraction=VALIDATION_FRACTION):
    """Splits MNIST into training, validation and test images (55k / 5k / 10k protocol).

    The last ``round(validation_fraction * N)`` training images form the validation split;
    the test split is MNIST's test set.

    Args:
        mnist: ``((x_train, y_train), (x_test, y_test))`` with images ``(N, 28, 28)``
            (uint8 ``0..255``, or float already in ``[0, 1]``) and digit labels ``(N,)``.
        validation_fraction: share of the training images held out, ``5000 / 60000``.

    Returns:
        dict with keys ``"train"``, ``"validation"``, ``"test"``, each ``(images, labels)``.
    """
    try:
        (x_train, y_train), (x_test, y_test) = mnist
    except (TypeError, ValueError) as e:
        raise ValueError(
            "mnist must be ((x_train, y_train), (x_test, y_test)), as returned by "
            "keras.datasets.mnist.load_data()."
        ) from e
    x_train, y_train = _check_arrays(x_train, y_train, "mnist training")
    x_test, y_test = _check_arrays(x_test, y_test, "mnist test")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must lie in (0, 1); received {validation_fraction!r}."
        )
    n_val = max(1, int(round(validation_fraction * len(x_train))))
    if n_val >= len(x_train):
        raise ValueError(f"Too few training images ({len(x_train)}) to hold out validation.")
    cut = len(x_train) - n_val
    return {
        "train": (x_train[:cut], y_train[:cut]),
        "validation": (x_train[cut:], y_train[cut:]),
        "test": (x_test, y_test),
    }


def _pixel_scale(images):
    """255 for integer images (MNIST's uint8), 1 for float images already in [0, 1]."""
    return 255.0 if np.issubdtype(np.asarray(images).dtype, np.integer) else 1.0


def sample_set_indices(num_images, num_sets, n, seed):
    """Seeded image indices ``(num_sets, n, 4)``: item ``j`` of set ``k`` shows the images
    ``indices[k, j, 0..3]`` left to right."""
    n = _checks.check_int("n", n, 2, note="items per set")
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_images, size=(num_sets, n, DIGITS), dtype=np.int64)


def compose_sets(images, labels, indices):
    """Four-digit items from image indices, in NumPy.

    Args:
        images: ``(N, 28, 28)`` digit images (uint8 ``0..255`` are divided by 255, float
            images are taken as they are).
        labels: ``(N,)`` digits.
        indices: ``(..., 4)`` int indices into ``images``.

    Returns:
        ``x`` float32 ``(..., 28, 112)`` and ``y`` float32 ``(...)``, the four-digit numbers.
    """
    images = np.asarray(images)
    indices = np.asarray(indices)
    digits = images[indices]  # (..., 4, 28, 28)
    lead = indices.shape[:-1]
    x = np.moveaxis(digits, -3, -2).reshape(lead + (28, 28 * DIGITS))
    x = (x / _pixel_scale(images)).astype(np.float32)
    y = (np.asarray(labels)[indices] * _PLACES).sum(axis=-1).astype(np.float32)
    return x, y


def _tf_compose(images, labels, indices, scale):
    """`compose_sets` in TensorFlow, for tf.data."""
    import tensorflow as tf

    digits = tf.gather(images, indices)  # (..., 4, 28, 28)
    rank = len(indices.shape)
    perm = list(range(rank - 1)) + [rank, rank - 1, rank + 1]
    x = tf.transpose(digits, perm)  # (..., 28, 4, 28)
    x = tf.reshape(x, tf.concat([tf.shape(indices)[:-1], [28, 28 * DIGITS]], axis=0))
    x = tf.cast(x, tf.float32) / scale
    places = tf.constant(_PLACES, tf.int64)
    y = tf.reduce_sum(tf.gather(labels, indices) * places, axis=-1)
    return x, tf.cast(y, tf.float32)


def train_dataset(images, labels, n, batch_size, seed=0):
    """Endless `tf.data.Dataset` of fresh random batches of sets, one batch per step.

    Batch ``t`` uses image indices drawn by ``tf.random.stateless_uniform`` with the seed
    ``(seed, t)``: every step sees new sets, and the stream is the same in every run.

    Args:
        images: ``(N, 28, 28)`` training images; labels: ``(N,)`` digits.
        n: items per set (``>= 2``).
        batch_size: sets per batch.
        seed: integer seed of the stream.

    Returns:
        Dataset of ``(x, y)``: ``x`` float32 ``(batch_size, n, 28, 112)``, ``y`` float32
        ``(batch_size, n)``.
    """
    import tensorflow as tf

    images, labels = _check_arrays(images, labels, "training")
    n = _checks.check_int("n", n, 2, note="items per set")
    batch_size = _checks.check_positive_int("batch_size", batch_size)
    scale = _pixel_scale(images)
    images_t = tf.constant(images)
    labels_t = tf.constant(labels)
    num = len(images)
    seed = int(seed)

    def batch(step):
        idx = tf.random.stateless_uniform(
            (batch_size, n, DIGITS), seed=tf.stack([tf.constant(seed, tf.int64), step]),
            minval=0, maxval=num, dtype=tf.int64,
        )
        return _tf_compose(images_t, labels_t, idx, scale)

    return (
        tf.data.Dataset.counter(dtype=tf.int64)
        .map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def eval_dataset(images, labels, n, num_sets, batch_size, seed=1):
    """Finite `tf.data.Dataset` of ``num_sets`` fixed, seeded sets (validation or test).

    The sets are those of `sample_set_indices` ``(len(images), num_sets, n, seed)``: the
    same in every call with the same arguments.

    Returns:
        Dataset of ``(x, y)`` batches as in `train_dataset` (the last one may be smaller;
        the batch size is static when ``batch_size`` divides ``num_sets``).
    """
    import tensorflow as tf

    images, labels = _check_arrays(images, labels, "evaluation")
    num_sets = _checks.check_positive_int("num_sets", num_sets)
    batch_size = _checks.check_positive_int("batch_size", batch_size)
    indices = sample_set_indices(len(images), num_sets, n, seed)
    scale = _pixel_scale(images)
    images_t = tf.constant(images)
    labels_t = tf.constant(labels)
    # A static batch size where the sets divide evenly (static shapes trace once and
    # suit code that needs them, such as curvature providers).
    return (
        tf.data.Dataset.from_tensor_slices(indices)
        .batch(batch_size, drop_remainder=num_sets % batch_size == 0)
        .map(lambda idx: _tf_compose(images_t, labels_t, idx, scale),
             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def four_digit_datasets(mnist, n, batch_size=100, num_validation_sets=None,
                        num_test_sets=None, eval_batch_size=None, seed=0, eval_seed=0):
    """Training, validation and test pipelines of four-digit MNIST sets.

    Args:
        mnist: ``((x_train, y_train), (x_test, y_test))``, split by `split_mnist`.
        n: items per set.
        batch_size: sets per training batch (diffsort: 100; NeuralSort: 20).
        num_validation_sets, num_test_sets: fixed evaluation sets; default: as many as
            the split has images divided by ``n`` (each image used about 4 times).
        eval_batch_size: sets per evaluation batch (default ``batch_size``).
        seed: seed of the training stream.
        eval_seed: seed of the fixed validation sets (``eval_seed``) and test sets
            (``eval_seed + 1``), independent of ``seed`` so that runs with different
            training seeds are evaluated on the same sets.

    Returns:
        ``(train, validation, test)`` `tf.data.Dataset` objects of ``(x, y)`` batches.
    """
    splits = split_mnist(mnist)
    eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
    x_tr, y_tr = splits["train"]
    x_va, y_va = splits["validation"]
    x_te, y_te = splits["test"]
    n = _checks.check_int("n", n, 2, note="items per set")
    num_validation_sets = num_validation_sets or max(1, len(x_va) // n)
    num_test_sets = num_test_sets or max(1, len(x_te) // n)
    eval_seed = int(eval_seed)
    return (
        train_dataset(x_tr, y_tr, n, batch_size, seed=seed),
        eval_dataset(x_va, y_va, n, num_validation_sets, eval_batch_size, seed=eval_seed),
        eval_dataset(x_te, y_te, n, num_test_sets, eval_batch_size, seed=eval_seed + 1),
    )
