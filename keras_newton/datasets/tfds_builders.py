"""TensorFlow Datasets builders: ``four_digit_mnist`` and ``warcraft_shortest_path``.

Importing this module registers both builders with TFDS, so that ``tfds.load`` finds them:

```python
import tensorflow_datasets as tfds
import keras_newton.datasets.tfds_builders  # noqa: F401  (registers the builders)

train = tfds.load("four_digit_mnist/n5", split="train", as_supervised=True)
maps = tfds.load("warcraft_shortest_path/look_alike", split="test")
```

- ``four_digit_mnist/n{3,5,7,9,10,15}``: sets of ``n`` four-digit MNIST numbers (the
  ranking benchmark, `keras_newton.datasets.four_digit`), built from the MNIST that
  `keras_newton.datasets.load_mnist` finds (``mnist.npz`` in the TFDS manual folder if
  there is one, else ``$KERAS_NEWTON_MNIST``, the Keras cache, or the bundled 10k/2k
  subset; offline). Its ``validation`` and ``test`` splits are exactly the fixed sets of
  `keras_newton.datasets.four_digit_datasets` (``eval_seed=0``); ``train`` is a fixed
  sample of sets (seed 2) where the benchmark draws fresh sets at every step.
- ``warcraft_shortest_path/original``: the Warcraft maps of Vlastelica et al. (ICLR 2020),
  from the archive's ``12x12`` ``.npy`` files placed in the TFDS manual folder (they may not
  be redistributed; no automatic download).
- ``warcraft_shortest_path/look_alike``: the procedural look-alike of
  `keras_newton.datasets.generate_warcraft` (same layout, terrain costs and labels), seed 0.

Needs ``pip install tensorflow-datasets``. Which MNIST a ``four_digit_mnist`` build used is
recorded in its ``info.metadata["mnist_source"]``; delete the prepared folder under
``~/tensorflow_datasets/four_digit_mnist`` to rebuild from another source.
"""

import dataclasses
import inspect
import os
import tempfile

import numpy as np

try:
    import tensorflow_datasets as tfds
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError("keras_newton.datasets.tfds_builders needs TensorFlow Datasets: pip "
                      "install tensorflow-datasets") from error

from keras_newton import _checks
from keras_newton.datasets import four_digit

__all__ = ["FourDigitMnist", "FourDigitMnistConfig", "WarcraftShortestPath",
           "WarcraftShortestPathConfig"]

#: Set sizes with a prepared ``four_digit_mnist`` config (NeuralSort and diffsort tables).
SET_SIZES = (3, 5, 7, 9, 10, 15)
#: Seeds of the sets of each split (validation and test as `four_digit_datasets`).
SPLIT_SEEDS = {"train": 2, "validation": 0, "test": 1}


@dataclasses.dataclass(eq=False)
class FourDigitMnistConfig(tfds.core.BuilderConfig):
    """A ``four_digit_mnist`` configuration: set size and number of sets per split.

    Attributes:
        n: items per set, ``>= 2``.
        num_sets: ``{"train": k, "validation": k, "test": k}``; a split not given (or
            ``None``) gets ``len(split images) // n`` sets, as `four_digit_datasets`.
        mnist_source: `load_mnist` source when the manual folder holds no ``mnist.npz``.

    Example:

    ```python
    config = FourDigitMnistConfig(name="n4_small", n=4, num_sets={"train": 1000})
    builder = FourDigitMnist(config=config)
    builder.download_and_prepare()
    ```
    """

    n: int = 5
    num_sets: dict | None = None
    mnist_source: str = "auto"


class FourDigitMnist(tfds.core.GeneratorBasedBuilder):
    """Sets of ``n`` four-digit MNIST numbers, for ranking supervision.

    One item is four MNIST digits side by side, a ``28 x 112`` uint8 image (divide by 255
    for the ``[0, 1]`` pixels of `keras_newton.datasets.four_digit`); its label is the
    number they show, ``0 .. 9999``. An example is a set: ``images`` uint8
    ``(n, 28, 112)`` and ``numbers`` int32 ``(n,)``. MNIST is split 55k/5k/10k in
    proportion (`four_digit.split_mnist`); sets are drawn by
    `four_digit.sample_set_indices` with the seeds `SPLIT_SEEDS` (Grover et al., ICLR
    2019; Petersen et al., ICML 2021).

    Example:

    ```python
    ds = tfds.load("four_digit_mnist/n5", split="train", as_supervised=True)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, tf.cast(y, tf.float32)))
    model.fit(ds.shuffle(1000).batch(100), epochs=10)
    ```
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        FourDigitMnistConfig(name=f"n{n}", n=n, description=f"sets of {n} numbers")
        for n in SET_SIZES
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Optional: place MNIST as `mnist.npz` in Keras' layout (x_train, y_train, x_test, "
        "y_test) in the manual folder. Without it, keras_newton.datasets.load_mnist finds "
        "MNIST ($KERAS_NEWTON_MNIST, the Keras cache, or the bundled subset).")

    def _info(self):
        n = self.builder_config.n
        return self.dataset_info_from_configs(
            description=inspect.cleandoc(type(self).__doc__).split("\n\n")[0],
            features=tfds.features.FeaturesDict({
                "images": tfds.features.Tensor(shape=(n, 28, 28 * four_digit.DIGITS),
                                               dtype=np.uint8),
                "numbers": tfds.features.Tensor(shape=(n,), dtype=np.int32),
            }),
            supervised_keys=("images", "numbers"),
            metadata=tfds.core.MetadataDict(),
            citation="Grover, Wang, Zweig, Ermon: Stochastic Optimization of Sorting "
                     "Networks via Continuous Relaxations, ICLR 2019.",
        )

    def _load_mnist(self, dl_manager):
        from keras_newton.datasets.mnist import load_mnist

        source = self.builder_config.mnist_source
        try:
            manual = os.path.join(os.fspath(dl_manager.manual_dir), "mnist.npz")
            if os.path.exists(manual):
                source = manual
        except AssertionError:  # no manual folder: the optional file is absent
            pass
        mnist, info = load_mnist(source, verbose=False, return_source=True)
        self.info.metadata["mnist_source"] = info["kind"]
        return mnist

    def _split_generators(self, dl_manager):
        config = self.builder_config
        _checks.check_int("n", config.n, 2, note="items per set")
        splits = four_digit.split_mnist(self._load_mnist(dl_manager))
        counts = dict(config.num_sets or {})
        generators = {}
        for split, (images, labels) in splits.items():
            num_sets = counts.get(split) or max(1, len(images) // config.n)
            indices = four_digit.sample_set_indices(len(images), num_sets, config.n,
                                                    SPLIT_SEEDS[split])
            generators[split] = self._generate_examples(images, labels, indices)
        return generators

    def _generate_examples(self, images, labels, indices):
        for k in range(len(indices)):
            x, y = four_digit.compose_sets(images, labels, indices[k])
            if np.issubdtype(np.asarray(images).dtype, np.integer):
                x = np.rint(x * 255.0)
            else:  # float MNIST in [0, 1]
                x = np.rint(np.clip(x, 0.0, 1.0) * 255.0)
            yield k, {"images": x.astype(np.uint8), "numbers": y.astype(np.int32)}


@dataclasses.dataclass(eq=False)
class WarcraftShortestPathConfig(tfds.core.BuilderConfig):
    """A ``warcraft_shortest_path`` configuration.

    Attributes:
        source: ``"original"`` (the archive's files in the manual folder) or
            ``"look_alike"`` (generated by `keras_newton.datasets.generate_warcraft`).
        grid: side of the cost grid (12; images are ``8 * grid`` pixels wide).
        sizes: ``(train, validation, test)`` maps generated for ``"look_alike"``.
        seed: generator seed for ``"look_alike"``.

    Example:

    ```python
    config = WarcraftShortestPathConfig(name="small", source="look_alike",
                                        sizes=(1000, 100, 100))
    WarcraftShortestPath(config=config).download_and_prepare()
    ```
    """

    source: str = "look_alike"
    grid: int = 12
    sizes: tuple = (10000, 1000, 1000)
    seed: int = 0


class WarcraftShortestPath(tfds.core.GeneratorBasedBuilder):
    """Warcraft terrain maps with their vertex costs and shortest paths.

    An example: ``map`` uint8 image ``(8g, 8g, 3)``; ``weights`` float32 ``(g, g)``, the
    cost of every tile; ``path`` uint8 ``(g, g)``, the shortest path from ``(0, 0)`` to
    ``(g - 1, g - 1)`` (vertex-weighted, 8-neighbourhood, both ends counted; Vlastelica,
    Paulus, Musil, Martius, Rolinek, ICLR 2020). Splits ``train``, ``validation``,
    ``test`` (the archive's train / val / test).

    Example:

    ```python
    ds = tfds.load("warcraft_shortest_path/look_alike", split="train")
    ds = ds.map(lambda e: (tf.cast(e["map"], tf.float32) / 255.0,
                           tf.cast(e["path"], tf.float32)))
    ```
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        WarcraftShortestPathConfig(name="original", source="original",
                                   description="the original maps (manual download)"),
        WarcraftShortestPathConfig(name="look_alike", source="look_alike",
                                   description="the procedural look-alike, seed 0"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "For the 'original' config: download the Warcraft shortest-path archive of "
        "Vlastelica et al. (ICLR 2020, 'Differentiation of Blackbox Combinatorial "
        "Solvers') and place its 12x12 files ({train,val,test}_maps.npy, "
        "{train,val,test}_vertex_weights.npy, {train,val,test}_shortest_paths.npy), or the "
        "12x12 folder holding them, in the manual folder. The 'look_alike' config needs "
        "nothing.")

    def _info(self):
        g = self.builder_config.grid
        return self.dataset_info_from_configs(
            description=inspect.cleandoc(type(self).__doc__).split("\n\n")[0],
            features=tfds.features.FeaturesDict({
                "map": tfds.features.Image(shape=(8 * g, 8 * g, 3)),
                "weights": tfds.features.Tensor(shape=(g, g), dtype=np.float32),
                "path": tfds.features.Tensor(shape=(g, g), dtype=np.uint8),
            }),
            supervised_keys=("map", "path"),
            citation="Vlastelica, Paulus, Musil, Martius, Rolinek: Differentiation of "
                     "Blackbox Combinatorial Solvers, ICLR 2020.",
        )

    def _split_generators(self, dl_manager):
        from keras_newton.datasets.warcraft import generate_warcraft, read_warcraft_arrays

        config = self.builder_config
        if config.source == "original":
            arrays = read_warcraft_arrays(os.fspath(dl_manager.manual_dir), grid=config.grid)
        elif config.source == "look_alike":
            n_train, n_val, n_test = config.sizes
            with tempfile.TemporaryDirectory() as folder:
                generate_warcraft(folder, n_train, n_val, n_test, grid=config.grid,
                                  seed=config.seed)
                arrays = read_warcraft_arrays(folder, grid=config.grid)
        else:
            raise ValueError(f"source must be 'original' or 'look_alike'; received "
                             f"{config.source!r}.")
        names = {"train": "train", "validation": "val", "test": "test"}
        return {split: self._generate_examples(arrays[name]) for split, name in names.items()}

    def _generate_examples(self, split):
        for k in range(len(split["maps"])):
            yield k, {"map": np.asarray(split["maps"][k], np.uint8),
                      "weights": np.asarray(split["weights"][k], np.float32),
                      "path": np.asarray(split["paths"][k], np.uint8)}
