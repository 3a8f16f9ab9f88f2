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

Two pipelines give the same sets, bit for bit:

- ``"tf.data"`` (`train_dataset`, `eval_dataset`): `tf.data.Dataset` objects built with
  TensorFlow ops; the default on the TensorFlow backend. Needs TensorFlow.
- ``"numpy"`` (`train_sets`, `eval_sets`): `keras.utils.PyDataset` objects composed in
  NumPy, for every backend; the default on JAX and PyTorch, and needs no TensorFlow. The
  training indices are TensorFlow's ``tf.random.stateless_uniform`` draws, computed in
  NumPy (`stateless_uniform_indices`, Philox-4x32-10), so a seed gives the same training
  stream on every backend.

All functions take MNIST as arrays; TensorFlow is imported only by the ``"tf.data"``
pipeline.

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

import keras
import numpy as np

from keras_newton import _checks

PIPELINES = ("auto", "tf.data", "numpy")

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


# -- TensorFlow's stateless uniform integers, in NumPy ---------------------------------------
# `tf.random.stateless_uniform(shape, seed, minval=0, maxval=m, dtype=tf.int64)` with the
# default algorithm on CPU and GPU (Philox-4x32-10): the seed pair becomes a Philox key and
# counter by one Philox round trip (TensorFlow's GenerateKey), then output pair ``i`` is
# the bits of Philox block ``counter + i``, each 64-bit word taken modulo ``m``.

_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_U32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def _philox(c0, c1, c2, c3, key):
    """Philox-4x32-10 of counters (four uint64 arrays holding 32-bit words) and a key."""
    k0, k1 = key
    for _ in range(10):
        p0, p1 = _PHILOX_M[0] * c0, _PHILOX_M[1] * c2
        c0, c1, c2, c3 = ((p1 >> _S32) ^ c1 ^ np.uint64(k0), p1 & _U32,
                          (p0 >> _S32) ^ c3 ^ np.uint64(k1), p0 & _U32)
        k0, k1 = (k0 + _PHILOX_W[0]) & 0xFFFFFFFF, (k1 + _PHILOX_W[1]) & 0xFFFFFFFF
    return c0, c1, c2, c3


def stateless_uniform_indices(shape, seed, maxval):
    """Integers in ``[0, maxval)``, those of ``tf.random.stateless_uniform(shape, seed,
    minval=0, maxval=maxval, dtype=tf.int64)`` (Philox, TensorFlow's algorithm on CPU and
    GPU), computed in NumPy without TensorFlow.

    Args:
        shape: output shape.
        seed: two integers (each read as a 64-bit two's-complement word, as TensorFlow's
            int64 seed tensor).
        maxval: exclusive upper bound, ``>= 1``.

    Returns:
        int64 array of ``shape``.
    """
    shape = tuple(int(d) for d in shape)
    maxval = int(maxval)
    if maxval < 1:
        raise ValueError(f"maxval must be >= 1; received {maxval}.")
    s0, s1 = (int(v) & 0xFFFFFFFFFFFFFFFF for v in seed)
    words = [np.array([w], np.uint64) for w in
             (s0 & 0xFFFFFFFF, s0 >> 32, s1 & 0xFFFFFFFF, s1 >> 32)]
    mix = [int(w[0]) for w in _philox(*words, key=(0x3EC8F720, 0x02461E29))]
    key, low, high = (mix[0], mix[1]), 0, mix[2] | mix[3] << 32
    size = int(np.prod(shape, dtype=np.int64))
    blocks = np.arange((size + 1) // 2, dtype=np.uint64)
    c_low = np.uint64(low) + blocks  # the 128-bit counter + i (its low word is 0: no carry)
    c_high = np.full_like(c_low, np.uint64(high))
    r0, r1, r2, r3 = _philox(c_low & _U32, c_low >> _S32, c_high & _U32, c_high >> _S32,
                             key)
    bits = np.stack([r0 | (r1 << _S32), r2 | (r3 << _S32)], axis=1).reshape(-1)[:size]
    return (bits % np.uint64(maxval)).astype(np.int64).reshape(shape)


def train_indices(num_images, n, batch_size, seed, step):
    """Image indices ``(batch_size, n, 4)`` of training batch ``step`` of the stream
    ``seed``: those `train_dataset` draws with ``tf.random.stateless_uniform``."""
    return stateless_uniform_indices((batch_size, n, DIGITS), (seed, step), num_images)


class FourDigitTrainSets(keras.utils.PyDataset):
    """`train_sets`: endless training batches of sets, composed in NumPy (item ``t`` is
    training batch ``t``)."""

    def __init__(self, images, labels, n, batch_size, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels = _check_arrays(images, labels, "training")
        self.n = _checks.check_int("n", n, 2, note="items per set")
        self.batch_size = _checks.check_positive_int("batch_size", batch_size)
        self.seed = int(seed)

    @property
    def num_batches(self):
        return None  # endless

    def __getitem__(self, step):
        step = int(step)
        if step < 0:
            raise IndexError(f"training batch {step} does not exist (steps count from 0).")
        indices = train_indices(len(self.images), self.n, self.batch_size, self.seed, step)
        return compose_sets(self.images, self.labels, indices)


class FourDigitEvalSets(keras.utils.PyDataset):
    """`eval_sets`: a fixed, seeded list of evaluation sets in batches, composed in
    NumPy."""

    def __init__(self, images, labels, n, num_sets, batch_size, seed=1, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels = _check_arrays(images, labels, "evaluation")
        num_sets = _checks.check_positive_int("num_sets", num_sets)
        self.batch_size = _checks.check_positive_int("batch_size", batch_size)
        self.indices = sample_set_indices(len(self.images), num_sets, n, seed)

    @property
    def num_batches(self):
        return -(-len(self.indices) // self.batch_size)

    def __len__(self):
        return self.num_batches

    def __getitem__(self, index):
        index = int(index)
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} out of range: {self.num_batches} batches.")
        part = self.indices[index * self.batch_size:(index + 1) * self.batch_size]
        return compose_sets(self.images, self.labels, part)


def train_sets(images, labels, n, batch_size, seed=0, **kwargs):
    """Endless `keras.utils.PyDataset` of fresh random batches of sets, in NumPy.

    The batches are those of `train_dataset` (the same seed gives the same arrays, bit for
    bit), composed in NumPy: any Keras backend, no TensorFlow. Batch ``t`` is item ``t``
    (``train[t]``); iteration and `keras.Model.fit` run ``t = 0, 1, ...`` without end
    (give ``steps_per_epoch``; the stream continues across epochs).

    Args:
        images, labels, n, batch_size, seed: as in `train_dataset`.
        **kwargs: `keras.utils.PyDataset` options (``workers``, ``use_multiprocessing``,
            ``max_queue_size``).

    Returns:
        `FourDigitTrainSets` (a `keras.utils.PyDataset`) of ``(x, y)`` NumPy batches:
        ``x`` float32 ``(batch_size, n, 28, 112)``, ``y`` float32 ``(batch_size, n)``.
    """
    return FourDigitTrainSets(images, labels, n, batch_size, seed=seed, **kwargs)


def eval_sets(images, labels, n, num_sets, batch_size, seed=1, **kwargs):
    """Finite `keras.utils.PyDataset` of ``num_sets`` fixed, seeded sets, in NumPy.

    The batches of `eval_dataset` with the same arguments (the same arrays), composed in
    NumPy: any Keras backend, no TensorFlow.

    Returns:
        `FourDigitEvalSets` (a `keras.utils.PyDataset`) of ``(x, y)`` NumPy batches (the
        last one may be smaller).
    """
    return FourDigitEvalSets(images, labels, n, num_sets, batch_size, seed=seed, **kwargs)


def resolve_pipeline(pipeline="auto"):
    """``"tf.data"`` or ``"numpy"``: ``"auto"`` is ``"tf.data"`` on the TensorFlow backend
    and ``"numpy"`` on the others."""
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {PIPELINES}; received {pipeline!r}.")
    if pipeline == "auto":
        pipeline = "tf.data" if keras.backend.backend() == "tensorflow" else "numpy"
    return pipeline


def four_digit_datasets(mnist, n, batch_size=100, num_validation_sets=None,
                        num_test_sets=None, eval_batch_size=None, seed=0, eval_seed=0,
                        pipeline="auto"):
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
        pipeline: ``"tf.data"`` (`train_dataset`, `eval_dataset`; needs TensorFlow),
            ``"numpy"`` (`train_sets`, `eval_sets`: `keras.utils.PyDataset`, any
            backend), or ``"auto"`` (default): ``"tf.data"`` on the TensorFlow backend,
            ``"numpy"`` on JAX and PyTorch. Both give the same batches, bit for bit.

    Returns:
        ``(train, validation, test)`` of ``(x, y)`` batches: `tf.data.Dataset` objects, or
        `keras.utils.PyDataset` objects for the ``"numpy"`` pipeline.
    """
    pipeline = resolve_pipeline(pipeline)
    splits = split_mnist(mnist)
    eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
    x_tr, y_tr = splits["train"]
    x_va, y_va = splits["validation"]
    x_te, y_te = splits["test"]
    n = _checks.check_int("n", n, 2, note="items per set")
    num_validation_sets = num_validation_sets or max(1, len(x_va) // n)
    num_test_sets = num_test_sets or max(1, len(x_te) // n)
    eval_seed = int(eval_seed)
    train, evaluation = ((train_dataset, eval_dataset) if pipeline == "tf.data"
                         else (train_sets, eval_sets))
    return (
        train(x_tr, y_tr, n, batch_size, seed=seed),
        evaluation(x_va, y_va, n, num_validation_sets, eval_batch_size, seed=eval_seed),
        evaluation(x_te, y_te, n, num_test_sets, eval_batch_size, seed=eval_seed + 1),
    )


# -- Sets composed on the device -----------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_newton")
class FourDigitSampler(keras.layers.Layer):
    """Four-digit sets drawn and composed on the device, inside the compiled step.

    The third pipeline, for accelerators: the digit images live on the device as a
    non-trainable weight, and every call draws a fresh training batch with `keras.random`
    (a `keras.random.SeedGenerator`, carried through every backend's trainer as a layer
    state) and composes it with `keras.ops`: no host work per step. The distribution is the
    other pipelines' (`train_dataset`, `train_sets`): ``batch_size x n`` items, each of four
    images drawn independently and uniformly from the split, concatenated along the width
    (``28 x 112``, pixels in ``[0, 1]``), labelled with the four-digit number (``0 .. 9999``,
    ties allowed). The random stream is Keras', not TensorFlow's Philox stream, so the sets
    are not those of the other pipelines; a ``seed`` gives the same stream on every call
    sequence of the same backend.

    Args:
        images: ``(N, 28, 28)`` (or ``(N, 28, 28, 1)``) digit images, uint8 ``0..255`` or
            float in ``[0, 1]``; stored as float32 ``[0, 1]``.
        labels: ``(N,)`` digits.
        n: items per set (``>= 2``).
        batch_size: sets per call.
        seed: integer seed of the stream (default ``None``: Keras' global seed).

    Call: ``sampler()`` draws a training batch and returns ``(x, y)``: ``x`` float32
    ``(batch_size, n, 28, 112)``, ``y`` float32 ``(batch_size, n)``.
    ``sampler(indices)`` composes given int ``(..., 4)`` image indices instead (the fixed
    evaluation sets of `sample_set_indices`, say: ``x`` ``(..., 28, 112)``, ``y``
    ``(...)``); so does ``sampler.compose(indices)``.

    Example:

    ```python
    splits = keras_newton.datasets.four_digit.split_mnist(mnist)
    sampler = FourDigitSampler(*splits["train"], n=5, batch_size=100, seed=0)
    x, y = sampler()          # (100, 5, 28, 112), (100, 5)
    ```

    Serialization: ``get_config`` holds the shapes and the seed, not the images; a model
    loaded from a ``.keras`` file restores the images from its weights.
    """

    def __init__(self, images=None, labels=None, n=2, batch_size=1, seed=None,
                 num_images=None, **kwargs):
        super().__init__(**kwargs)
        self.n = _checks.check_int("n", n, 2, note="items per set")
        self.batch_size = _checks.check_positive_int("batch_size", batch_size)
        self.seed = None if seed is None else _checks.check_int("seed", seed)
        if images is None:  # from_config: the weights bring the images
            self.num_images = _checks.check_positive_int("num_images", num_images)
            pixels = np.zeros((self.num_images,) + IMAGE_SHAPE, np.float32)
            digits = np.zeros((self.num_images,), np.int32)
        else:
            images, labels = _check_arrays(images, labels, "sampler")
            self.num_images = len(images)
            pixels = (images / _pixel_scale(images)).astype(np.float32)
            digits = labels.astype(np.int32)
        self.images = self.add_weight(shape=pixels.shape, dtype="float32",
                                      initializer=_constant(pixels), trainable=False,
                                      name="images")
        self.labels = self.add_weight(shape=digits.shape, dtype="int32",
                                      initializer=_constant(digits), trainable=False,
                                      name="labels")
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.built = True

    def draw_indices(self):
        """Fresh image indices ``(batch_size, n, 4)``, uniform over the split."""
        return keras.random.randint((self.batch_size, self.n, DIGITS), 0, self.num_images,
                                    seed=self.seed_generator, dtype="int32")

    def compose(self, indices):
        """``(x, y)`` of the items with image ``indices`` ``(..., 4)``, in `keras.ops`."""
        ops = keras.ops
        indices = ops.convert_to_tensor(indices, "int32")
        lead = tuple(indices.shape[:-1])
        digits = ops.take(self.images, ops.reshape(indices, (-1,)), axis=0)
        digits = ops.reshape(digits, (-1, DIGITS) + IMAGE_SHAPE)  # (items, 4, 28, 28)
        x = ops.reshape(ops.transpose(digits, (0, 2, 1, 3)), lead + (28, 28 * DIGITS))
        places = ops.convert_to_tensor(_PLACES.astype(np.int32))
        y = ops.sum(ops.take(self.labels, indices, axis=0) * places, axis=-1)
        return x, ops.cast(y, "float32")

    def call(self, indices=None):
        return self.compose(self.draw_indices() if indices is None else indices)

    def compute_output_spec(self, indices=None):
        lead = ((self.batch_size, self.n) if indices is None
                else tuple(indices.shape[:-1]))
        return (keras.KerasTensor(lead + (28, 28 * DIGITS), "float32"),
                keras.KerasTensor(lead, "float32"))

    def get_config(self):
        config = super().get_config()
        config.update(n=self.n, batch_size=self.batch_size, seed=self.seed,
                      num_images=self.num_images)
        return config


def _constant(value):
    """An initializer returning ``value`` (for weights that hold data)."""

    def init(shape, dtype=None):
        return keras.ops.convert_to_tensor(value, dtype=dtype)

    return init
