"""Warcraft data: the procedural generator, the loader, the CLI, and CombResNet18.

Stored labels are checked with scipy's Dijkstra (independent of the library's solver),
the loader's normalisation with NumPy, the model's size with ResNet18's layer formula.
"""

import os

import keras
import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from keras_newton.app.cli import main as cli_main
from keras_newton.datasets import generate_warcraft, load_warcraft, normalise_warcraft
from keras_newton.datasets import read_warcraft_arrays
from keras_newton.datasets.warcraft import TERRAIN_COSTS
from keras_newton.models import comb_resnet18
from keras_newton.paths import pack_path_targets, shortest_path, solve_shortest_paths

SIZES = dict(n_train=24, n_val=6, n_test=6)
FILES = [f"{s}_{k}.npy" for s in ("train", "val", "test")
         for k in ("maps", "vertex_weights", "shortest_paths")]
NEIGHBOURS = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("warcraft"))
    info = generate_warcraft(out, seed=3, **SIZES)
    return out, info


def scipy_optimum(c):
    """Vertex-weighted optimum (both ends counted) with scipy's Dijkstra, float64."""
    h, w = c.shape
    rows, cols, data = [], [], []
    for i in range(h):
        for j in range(w):
            for di, dj in NEIGHBOURS:
                if 0 <= i + di < h and 0 <= j + dj < w:
                    rows.append(i * w + j)
                    cols.append((i + di) * w + j + dj)
                    data.append(c[i + di, j + dj])
    graph = csr_matrix((data, (rows, cols)), shape=(h * w, h * w))
    return dijkstra(graph, indices=0)[-1] + c[0, 0]


def is_chain(mask):
    """Connected 8-neighbour chain from the top-left to the bottom-right cell."""
    h, w = mask.shape
    cells = {(int(i), int(j)) for i, j in zip(*np.nonzero(mask))}
    if (0, 0) not in cells or (h - 1, w - 1) not in cells:
        return False
    seen, todo = {(0, 0)}, [(0, 0)]
    while todo:
        i, j = todo.pop()
        for di, dj in NEIGHBOURS:
            nxt = (i + di, j + dj)
            if nxt in cells and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen == cells


def test_generator_layout_and_dtypes(generated):
    out, info = generated
    for name in FILES:
        assert os.path.exists(os.path.join(out, name)), name
    arrays = read_warcraft_arrays(out)
    for split, n in (("train", 24), ("val", 6), ("test", 6)):
        a = arrays[split]
        assert a["maps"].shape == (n, 96, 96, 3) and a["maps"].dtype == np.uint8
        assert a["weights"].shape == (n, 12, 12) and a["weights"].dtype == np.float16
        assert a["paths"].shape == (n, 12, 12)
        assert set(np.unique(a["paths"])) <= {0, 1}
        assert set(np.unique(a["weights"])) <= set(np.float16(TERRAIN_COSTS))
    assert {k: info[k] for k in ("train", "val", "test")} == {"train": 24, "val": 6, "test": 6}


def test_generator_paths_optimal_under_stored_weights(generated):
    out, _ = generated
    for split, a in read_warcraft_arrays(out).items():
        weights = a["weights"].astype(np.float64)
        for c, p in zip(weights, a["paths"].astype(np.float64)):
            assert is_chain(p)
            np.testing.assert_allclose(np.sum(p * c), scipy_optimum(c), rtol=1e-6)
        # The labels are the library solver's (deterministic) choices among optima, and
        # the compiled batch helper agrees with the eager solver.
        eager = np.asarray(shortest_path(a["weights"].astype(np.float32)))
        np.testing.assert_array_equal(eager, a["paths"])
        np.testing.assert_array_equal(solve_shortest_paths(weights, batch_size=4), eager)


def test_generator_structure_and_learnable_tiles(generated):
    out, _ = generated
    arrays = read_warcraft_arrays(out)
    classes = {float(np.float16(c)): k for k, c in enumerate(TERRAIN_COSTS)}

    def tiles(split):
        a = arrays[split]
        n = len(a["maps"])
        colour = a["maps"].reshape(n, 12, 8, 12, 8, 3).astype(np.float64).mean(axis=(2, 4))
        label = np.vectorize(lambda v: classes[float(v)])(a["weights"])
        return colour.reshape(-1, 3), label.ravel()

    x, y = tiles("train")
    counts = np.bincount(y, minlength=5)
    assert np.all(counts > 0), counts  # every terrain class occurs
    assert counts[1] == counts.max()   # grass is the most common class
    # Spatial structure: neighbouring cells share their class far more often than chance.
    terr = y.reshape(-1, 12, 12)
    same = np.mean(terr[:, 1:, :] == terr[:, :-1, :])
    chance = np.sum((counts / counts.sum()) ** 2)
    assert same > chance + 0.2, (same, chance)
    # Pixels carry the class: a nearest-centroid rule on mean tile colour (fit on train)
    # classifies most validation tiles; per-map variation keeps it from being perfect.
    centroids = np.stack([x[y == k].mean(0) for k in range(5)])
    xv, yv = tiles("val")
    pred = np.argmin(((xv[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = np.mean(pred == yv)
    assert 0.7 < accuracy < 1.0, accuracy


def test_generator_deterministic_by_seed(generated, tmp_path):
    out, _ = generated
    same = str(tmp_path / "same")
    other = str(tmp_path / "other")
    generate_warcraft(same, seed=3, **SIZES)
    generate_warcraft(other, seed=4, **SIZES)
    for name in FILES:
        ref = np.load(os.path.join(out, name))
        np.testing.assert_array_equal(np.load(os.path.join(same, name)), ref)
    assert not np.array_equal(np.load(os.path.join(other, "train_maps.npy")),
                              np.load(os.path.join(out, "train_maps.npy")))


def test_generator_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_train"):
        generate_warcraft(str(tmp_path), n_train=0)
    with pytest.raises(ValueError, match="n_val"):
        generate_warcraft(str(tmp_path), n_val=-1)
    with pytest.raises(ValueError, match="grid"):
        generate_warcraft(str(tmp_path), grid=1)


def test_load_warcraft_pipelines(generated):
    out, _ = generated
    data = load_warcraft(out, batch_size=5, targets="paths_and_costs", shuffle=False)
    arrays = read_warcraft_arrays(out)
    pixels = arrays["train"]["maps"].reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(data.mean, pixels.mean(0), rtol=1e-5)
    np.testing.assert_allclose(data.std, pixels.std(0), rtol=1e-4)
    x, y = next(iter(data.val))
    expected_x = (arrays["val"]["maps"][:5].astype(np.float64) - pixels.mean(0)) / pixels.std(0)
    np.testing.assert_allclose(np.asarray(x), expected_x, rtol=1e-4, atol=1e-4)
    expected_y = pack_path_targets(arrays["val"]["paths"][:5], arrays["val"]["weights"][:5])
    np.testing.assert_allclose(np.asarray(y), expected_y, rtol=1e-6)
    assert sum(int(b[0].shape[0]) for b in data.train) == 24
    paths_only = load_warcraft(out, batch_size=6, targets="paths")
    _, y = next(iter(paths_only.test))
    np.testing.assert_array_equal(np.asarray(y), arrays["test"]["paths"].astype(np.float32))


def test_normalise_warcraft_against_numpy_and_the_pipelines(generated):
    """Every split normalised with the training maps' per-channel float64 statistics (up
    to float32 rounding and the 1e-6 added to the std), and the same images as
    `load_warcraft`'s pipelines; costs and paths unchanged, as float32."""
    out, _ = generated
    arrays = read_warcraft_arrays(out)
    data = normalise_warcraft(arrays)
    assert set(data) == {"train", "val", "test"}
    pixels = arrays["train"]["maps"].reshape(-1, 3).astype(np.float64)
    mean, std = pixels.mean(0), pixels.std(0)
    pipelines = load_warcraft(out, batch_size=6, shuffle=False)
    for split in ("train", "val", "test"):
        x, costs, paths = data[split]
        assert x.dtype == costs.dtype == paths.dtype == np.float32
        expected = (arrays[split]["maps"].astype(np.float64) - mean) / std
        np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(costs, arrays[split]["weights"].astype(np.float32))
        np.testing.assert_array_equal(paths, arrays[split]["paths"].astype(np.float32))
        piped = np.concatenate([np.asarray(b[0]) for b in getattr(pipelines, split)])
        np.testing.assert_allclose(x, piped, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="train"):
        normalise_warcraft({"val": arrays["val"]})


def test_load_warcraft_archive_layout_and_errors(generated, tmp_path):
    out, _ = generated
    nested = tmp_path / "warcraft_shortest_path_oneskin" / "12x12"
    nested.mkdir(parents=True)
    for name in FILES:
        os.symlink(os.path.join(out, name), nested / name)
    data = load_warcraft(str(nested.parent), batch_size=6)
    assert len(data.arrays["test"]["maps"]) == 6
    with pytest.raises(ValueError, match="grid=18"):
        load_warcraft(out, grid=18)
    with pytest.raises(ValueError, match="targets"):
        load_warcraft(out, targets="images")
    with pytest.raises(ValueError, match="Missing"):
        read_warcraft_arrays(str(tmp_path))


def test_cli_data_warcraft(generated, tmp_path):
    out, _ = generated
    target = str(tmp_path / "cli")
    argv = ["data", "warcraft", "--out", target, "--n-train", "24", "--n-val", "6",
            "--n-test", "6", "--seed", "3"]
    assert cli_main(argv) == 0
    for name in FILES:
        np.testing.assert_array_equal(np.load(os.path.join(target, name)),
                                      np.load(os.path.join(out, name)))


def test_comb_resnet18_architecture(tmp_path):
    model = comb_resnet18()
    # ResNet18's stem and layer1: conv1 7x7x3x64, four 3x3x64x64 convs, five BNs of 64
    # (gamma, beta trainable; moving mean and variance not).
    trainable = 7 * 7 * 3 * 64 + 4 * 3 * 3 * 64 * 64 + 5 * 2 * 64
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == trainable
    assert sum(int(np.prod(v.shape)) for v in model.non_trainable_weights) == 5 * 2 * 64
    assert model.get_layer("conv1").output.shape[1:3] == (48, 48)
    assert model.get_layer("maxpool").output.shape[1:3] == (24, 24)
    rng = np.random.default_rng(0)
    x = rng.normal(-3.0, 2.0, (2, 96, 96, 3)).astype(np.float32)
    costs = np.asarray(model(x, training=False))
    assert costs.shape == (2, 12, 12)
    assert costs.min() >= 0.0
    # Max-pool to the grid then channel mean: equal to computing it from layer1's output.
    features = keras.Model(model.input, model.get_layer("layer1_1_relu2").output)(x)
    f = np.asarray(features).reshape(2, 12, 2, 12, 2, 64).max(axis=(2, 4)).mean(-1)
    np.testing.assert_allclose(costs, f, rtol=1e-5, atol=1e-6)
    path = str(tmp_path / "comb.keras")
    model.save(path)
    np.testing.assert_allclose(np.asarray(keras.models.load_model(path)(x)), costs, atol=1e-6)
    assert comb_resnet18(grid=10).output.shape[1:] == (10, 10)
    with pytest.raises(ValueError, match="grid"):
        comb_resnet18(grid=0)
