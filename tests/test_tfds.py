"""TFDS builders ``four_digit_mnist`` and ``warcraft_shortest_path`` (offline, tiny data).

Specification:
- both builders pass `tfds.testing.DatasetBuilderTestCase` (registered, build, read back,
  split sizes) on tiny configurations and fake manual data;
- ``four_digit_mnist``'s validation and test sets are exactly the fixed sets of
  `four_digit_datasets` (pixels x 255, numbers), its training sets those of
  `compose_sets(sample_set_indices(..., seed 2))`;
- ``warcraft_shortest_path/original`` returns the manual files unchanged; the look-alike's
  labels are the exact shortest paths of its weights (checked with SciPy's Dijkstra on the
  vertex-weighted 8-neighbourhood graph), and its weights are the five terrain costs.
"""

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from keras_newton.datasets import four_digit  # noqa: E402
from keras_newton.datasets import tfds_builders as tb  # noqa: E402
from keras_newton.paths import solve_shortest_paths  # noqa: E402

GRID = 4
_ROOT = tempfile.mkdtemp(prefix="keras_newton_tfds_test_")
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
MNIST_DIR = os.path.join(_ROOT, "mnist_manual")
WARCRAFT_DIR = os.path.join(_ROOT, "warcraft_manual")


def _fake_mnist():
    rng = np.random.default_rng(0)
    return ((rng.integers(0, 256, (60, 28, 28), dtype=np.uint8), rng.integers(0, 10, 60)),
            (rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), rng.integers(0, 10, 20)))


def _fake_warcraft():
    rng = np.random.default_rng(1)
    arrays = {}
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        weights = rng.choice([0.8, 1.2, 5.3, 7.7, 9.2], size=(count, GRID, GRID))
        weights = weights.astype(np.float16)
        arrays[split] = {
            "maps": rng.integers(0, 256, (count, 8 * GRID, 8 * GRID, 3), dtype=np.uint8),
            "weights": weights,
            "paths": solve_shortest_paths(weights.astype(np.float32)).astype(np.uint8),
        }
    return arrays


os.makedirs(MNIST_DIR)
(_xt, _yt), (_xs, _ys) = _fake_mnist()
np.savez(os.path.join(MNIST_DIR, "mnist.npz"), x_train=_xt, y_train=_yt, x_test=_xs,
         y_test=_ys)
os.makedirs(WARCRAFT_DIR)
FAKE_WARCRAFT = _fake_warcraft()
for _split, _arrays in FAKE_WARCRAFT.items():
    for _key, _file in (("maps", "maps"), ("weights", "vertex_weights"),
                        ("paths", "shortest_paths")):
        np.save(os.path.join(WARCRAFT_DIR, f"{_split}_{_file}.npy"), _arrays[_key])

TINY_FOUR_DIGIT = tb.FourDigitMnistConfig(name="tiny_n3", n=3, description="test sets of 3")
TINY_ORIGINAL = tb.WarcraftShortestPathConfig(name="tiny_original", source="original",
                                              grid=GRID, description="fake maps")


class FourDigitMnistBuilderTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = tb.FourDigitMnist
    BUILDER_CONFIG_NAMES_TO_TEST = [TINY_FOUR_DIGIT]
    # 60 training images: 55 train / 5 validation; sets = images // 3.
    SPLITS = {"train": 18, "validation": 1, "test": 6}
    EXAMPLE_DIR = MNIST_DIR
    MOCK_OUT_FORBIDDEN_OS_FUNCTIONS = False
    SKIP_CHECKSUMS = True


class WarcraftBuilderTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = tb.WarcraftShortestPath
    BUILDER_CONFIG_NAMES_TO_TEST = [TINY_ORIGINAL]
    SPLITS = {"train": 2, "validation": 1, "test": 1}
    EXAMPLE_DIR = WARCRAFT_DIR
    MOCK_OUT_FORBIDDEN_OS_FUNCTIONS = False
    SKIP_CHECKSUMS = True


def _prepare(builder_cls, config, tmp_path, manual_dir=None):
    builder = builder_cls(config=config, data_dir=str(tmp_path))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir))
    return builder


def _numpy(builder, split):
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def test_four_digit_sets_match_the_benchmark_pipeline(tmp_path):
    builder = _prepare(tb.FourDigitMnist, TINY_FOUR_DIGIT, tmp_path, MNIST_DIR)
    assert builder.info.metadata["mnist_source"] == "file"
    mnist = _fake_mnist()
    splits = four_digit.split_mnist(mnist)
    counts = {"train": 18, "validation": 1, "test": 6}
    examples = {s: sorted(_numpy(builder, s), key=lambda e: tuple(e["numbers"]))
                for s in counts}
    # Validation and test: the fixed sets of the tf.data pipeline.
    _, val, test = four_digit.four_digit_datasets(
        mnist, 3, batch_size=2, num_validation_sets=1, num_test_sets=6, eval_batch_size=6)
    for split, dataset in (("validation", val), ("test", test)):
        x, y = next(iter(dataset.as_numpy_iterator()))
        reference = sorted(zip(np.rint(x * 255).astype(np.uint8), y.astype(np.int32)),
                           key=lambda p: tuple(p[1]))
        assert len(examples[split]) == len(reference) == counts[split]
        for example, (images, numbers) in zip(examples[split], reference):
            np.testing.assert_array_equal(example["numbers"], numbers)
            np.testing.assert_array_equal(example["images"], images)
    # Training: a fixed sample of sets with seed 2.
    images, labels = splits["train"]
    idx = four_digit.sample_set_indices(len(images), 18, 3, tb.SPLIT_SEEDS["train"])
    x, y = four_digit.compose_sets(images, labels, idx)
    reference = sorted(zip(np.rint(x * 255).astype(np.uint8), y.astype(np.int32)),
                       key=lambda p: tuple(p[1]))
    for example, (imgs, numbers) in zip(examples["train"], reference):
        np.testing.assert_array_equal(example["numbers"], numbers)
        np.testing.assert_array_equal(example["images"], imgs)
    # The numbers are the digits' place values.
    first = examples["test"][0]
    assert first["images"].shape == (3, 28, 112) and first["images"].dtype == np.uint8


def test_warcraft_original_is_the_manual_files(tmp_path):
    builder = _prepare(tb.WarcraftShortestPath, TINY_ORIGINAL, tmp_path, WARCRAFT_DIR)
    for split, name in (("train", "train"), ("validation", "val"), ("test", "test")):
        got = sorted(_numpy(builder, split), key=lambda e: e["map"].tobytes())
        ref = FAKE_WARCRAFT[name]
        order = sorted(range(len(ref["maps"])), key=lambda k: ref["maps"][k].tobytes())
        for example, k in zip(got, order):
            np.testing.assert_array_equal(example["map"], ref["maps"][k])
            np.testing.assert_array_equal(example["weights"],
                                          ref["weights"][k].astype(np.float32))
            np.testing.assert_array_equal(example["path"], ref["paths"][k])


def _dijkstra_cost(weights):
    """Cost of the shortest (0,0) -> (g-1,g-1) path, start cell counted (SciPy)."""
    from scipy.sparse import lil_matrix
    from scipy.sparse.csgraph import dijkstra

    g = weights.shape[0]
    graph = lil_matrix((g * g, g * g))
    for r in range(g):
        for c in range(g):
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if (dr or dc) and 0 <= rr < g and 0 <= cc < g:
                        graph[r * g + c, rr * g + cc] = weights[rr, cc]
    return dijkstra(graph.tocsr(), indices=0)[g * g - 1] + weights[0, 0]


def test_warcraft_look_alike_labels_are_shortest_paths(tmp_path):
    config = tb.WarcraftShortestPathConfig(name="tiny_look_alike", source="look_alike",
                                           grid=GRID, sizes=(2, 1, 1), seed=3,
                                           description="tiny look-alike")
    builder = _prepare(tb.WarcraftShortestPath, config, tmp_path)
    assert {s: builder.info.splits[s].num_examples for s in ("train", "validation", "test")} \
        == {"train": 2, "validation": 1, "test": 1}
    for example in _numpy(builder, "train"):
        weights, path = example["weights"].astype(np.float64), example["path"]
        assert example["map"].shape == (8 * GRID, 8 * GRID, 3)
        assert set(np.round(np.unique(weights), 1)) <= {0.8, 1.2, 5.3, 7.7, 9.2}
        assert path[0, 0] == 1 and path[-1, -1] == 1
        np.testing.assert_allclose(np.sum(path * weights), _dijkstra_cost(weights),
                                   rtol=1e-6)


def test_registered_names():
    names = tfds.list_builders(with_community_datasets=False)
    assert "four_digit_mnist" in names and "warcraft_shortest_path" in names
    assert [c.name for c in tb.FourDigitMnist.BUILDER_CONFIGS] == [
        f"n{n}" for n in tb.SET_SIZES]
    with pytest.raises(ValueError, match="source"):
        bad = tb.WarcraftShortestPathConfig(name="bad", source="web", description="x")
        _prepare(tb.WarcraftShortestPath, bad, tempfile.mkdtemp(dir=_ROOT))
