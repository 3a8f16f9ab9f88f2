"""Warcraft shortest-path maps (Vlastelica et al., ICLR 2020): loader and offline look-alike.

The original data set holds 96x96 RGB images of 12x12 terrain grids drawn from a game
tileset (8x8 pixels per cell), the vertex weights (terrain costs) of each cell, and the
shortest path from the top-left to the bottom-right cell (vertex-weighted Dijkstra,
8-neighbourhood, start cell counted), in the layout

    {train,val,test}_maps.npy            uint8   (N, 96, 96, 3)
    {train,val,test}_vertex_weights.npy  float16 (N, 12, 12)   (float16 in the archive)
    {train,val,test}_shortest_paths.npy  {0, 1}  (N, 12, 12)

with 10000 / 1000 / 1000 maps. The tiles are not redistributable, so the data cannot be
shipped or regenerated exactly; `generate_warcraft` writes a procedural look-alike in the
same layout, and `load_warcraft` reads either.
"""

import json
import os
import time
from typing import NamedTuple

import numpy as np

from keras_newton import _checks

__all__ = [
    "TERRAIN_COSTS",
    "TERRAIN_NAMES",
    "WarcraftData",
    "generate_warcraft",
    "load_warcraft",
    "normalise_warcraft",
    "read_warcraft_arrays",
]

SPLITS = ("train", "val", "test")
# The five terrain costs of the original data set, and the classes they stand for here.
TERRAIN_COSTS = (0.8, 1.2, 5.3, 7.7, 9.2)
TERRAIN_NAMES = ("road", "grass", "forest", "mountain", "water")
ROAD, GRASS, FOREST, MOUNTAIN, WATER = range(5)
TILE = 8


# --- reading -----------------------------------------------------------------------------


def _split_dir(path, grid):
    """``path`` itself, or its ``{grid}x{grid}`` subfolder (the original archive's layout)."""
    sub = os.path.join(path, f"{grid}x{grid}")
    if not os.path.exists(os.path.join(path, "train_maps.npy")) and os.path.isdir(sub):
        return sub
    return path


def _load_npy(file, mmap):
    """``np.load`` of one ``.npy`` file; a file numpy cannot read raises ValueError naming it."""
    try:
        array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(
            f"warcraft file {file!r} is not a readable .npy array (truncated, or not written "
            f"by numpy.save?): {e}"
        ) from None
    if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
        if hasattr(array, "close"):
            array.close()
        raise ValueError(f"warcraft file {file!r} is an .npz archive; expected one .npy "
                         "array (numpy.save).")
    return array


def _first_bad(array, bad):
    """``(value, "map i, cell (r, c)")`` of the first entry of ``array`` (``(N, g, g)``)
    where the boolean ``bad`` is true."""
    index = np.unravel_index(int(np.argmax(bad)), bad.shape)
    return array[index], f"map {index[0]}, cell {tuple(int(i) for i in index[1:])}"


def _check_values(file, key, array):
    """Rejects a dtype or values that ``key`` (maps, weights, paths) cannot hold.

    One vectorised pass over the weights and the paths; the maps' dtype only.
    """
    kind = array.dtype.kind
    if key == "maps":
        if kind not in "uif":
            raise ValueError(f"warcraft file {file!r}: maps must be pixel values (uint8 in "
                             f"the original); found dtype {array.dtype}.")
    elif key == "weights":
        if kind not in "uif":
            raise ValueError(f"warcraft file {file!r}: vertex weights must be real numbers "
                             f"(float16 in the original); found dtype {array.dtype}.")
        bad = ~np.isfinite(array) | (array < 0) if kind == "f" else array < 0
        if bad.any():
            value, where = _first_bad(array, bad)
            found = "NaN" if np.isnan(value) else repr(float(value))
            raise ValueError(f"warcraft file {file!r}: vertex weights must be finite and "
                             f"non-negative; found {found} ({where}).")
    else:
        if kind not in "buif":
            raise ValueError(f"warcraft file {file!r}: shortest paths must be 0/1 masks; "
                             f"found dtype {array.dtype}.")
        bad = (array != 0) & (array != 1)
        if bad.any():
            value, where = _first_bad(array, bad)
            found = "NaN" if kind == "f" and np.isnan(value) else repr(value.item())
            raise ValueError(f"warcraft file {file!r}: shortest paths must be 0 or 1 in "
                             f"every cell; found {found} ({where}).")


def read_warcraft_arrays(path, grid=12, splits=SPLITS, mmap=False):
    """Reads the Warcraft ``.npy`` files as numpy arrays, checking them.

    Args:
        path: folder holding ``{split}_{maps,vertex_weights,shortest_paths}.npy``, or
            holding a ``{grid}x{grid}`` folder that does (the original archive).
        grid: side of the cost grid; images must be ``(8 grid, 8 grid, 3)``.
        splits: which splits to read.
        mmap: memory-map the files instead of reading them.

    Returns:
        ``{split: {"maps": uint8 (N, 8g, 8g, 3), "weights": (N, g, g),
        "paths": (N, g, g)}}`` with the stored dtypes.

    Raises:
        ValueError: (the message names the file and what was expected) a missing file; a file
            numpy cannot read as one array (truncated, garbage, pickled objects, an
            ``.npz``); shapes other than the above, or splits whose three files disagree
            on ``N``; an empty training split (its maps give the normalisation
            statistics); maps that are not integer or float pixel values; vertex weights
            that are not real numbers, or are NaN, infinite or negative; shortest paths
            with a value other than 0 and 1. The weights and paths are checked in one
            vectorised pass each (the maps by dtype and shape only).
    """
    grid = _checks.check_positive_int("grid", grid)
    if not os.path.isdir(path):
        raise ValueError(f"path must be a folder with the Warcraft .npy files; {path!r} is not.")
    folder = _split_dir(path, grid)
    out = {}
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}: expected one of {SPLITS}.")
        files, arrays = {}, {}
        for key, stem in (("maps", "maps"), ("weights", "vertex_weights"),
                          ("paths", "shortest_paths")):
            file = os.path.join(folder, f"{split}_{stem}.npy")
            if not os.path.exists(file):
                raise ValueError(f"Missing Warcraft file {file!r} (grid={grid}).")
            files[key], arrays[key] = file, _load_npy(file, mmap)
        n = len(arrays["maps"]) if arrays["maps"].ndim else 0
        expected = {
            "maps": (n, TILE * grid, TILE * grid, 3),
            "weights": (n, grid, grid),
            "paths": (n, grid, grid),
        }
        for key, shape in expected.items():
            if tuple(arrays[key].shape) != shape:
                raise ValueError(
                    f"warcraft file {files[key]!r} has shape {tuple(arrays[key].shape)}; "
                    f"expected {shape} for grid={grid}."
                )
            if key == "maps" and split == "train" and n == 0:
                raise ValueError(f"warcraft file {files['maps']!r} holds no maps; the "
                                 "training split needs at least one (its maps give the "
                                 "normalisation statistics).")
        for key, array in arrays.items():
            _check_values(files[key], key, array)
        out[split] = arrays
    return out


class WarcraftData(NamedTuple):
    """Warcraft pipelines and what they were built from.

    Attributes:
        train, val, test: batched `tf.data.Dataset` of ``(images, targets)``; images
            float32 ``(B, 8g, 8g, 3)`` normalised per channel with the training mean and
            std; targets as ``load_warcraft``'s ``targets`` says.
        mean, std: per-channel training statistics (pixel units, float32 ``(3,)``).
        arrays: the numpy arrays, ``{split: {"maps", "weights", "paths"}}``.
    """

    train: object
    val: object
    test: object
    mean: np.ndarray
    std: np.ndarray
    arrays: dict


def _channel_stats(maps, chunk=1000):
    total = np.zeros(3)
    total_sq = np.zeros(3)
    for i in range(0, len(maps), chunk):
        x = np.asarray(maps[i : i + chunk], np.float64).reshape(-1, 3)
        total += x.sum(0)
        total_sq += np.square(x).sum(0)
    count = len(maps) * maps.shape[1] * maps.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def normalise_warcraft(arrays):
    """The Warcraft arrays as float32 model inputs and targets, numpy in and out.

    Each image channel ``c`` is normalised with the mean and standard deviation of the
    *training* maps (pixel units, over every training pixel):

        x = (pixel - mean_c) / (std_c + 1e-6)

    the statistics computed in float32 from ``arrays["train"]["maps"]``. This is the
    in-memory counterpart of `load_warcraft`'s pipelines (which accumulate the statistics
    in float64 and floor the std at 1e-6: the same images up to float rounding); the
    benchmarks and ``keras-newton tune shortest-path`` train on it.

    Args:
        arrays: ``{split: {"maps", "weights", "paths"}}`` as `read_warcraft_arrays`
            returns, with a ``"train"`` split.

    Returns:
        ``{split: (images, costs, paths)}``: float32 ``(N, 8g, 8g, 3)`` normalised images,
        float32 ``(N, g, g)`` vertex weights and float32 ``(N, g, g)`` path masks.

    Example:

    ```python
    data = normalise_warcraft(read_warcraft_arrays("warcraft_maps/"))
    x, costs, paths = data["train"]
    model.fit(x, paths, batch_size=70)
    ```
    """
    if "train" not in arrays:
        raise ValueError("arrays must hold the 'train' split: its maps give the "
                         "normalisation statistics.")
    maps = arrays["train"]["maps"].astype(np.float32)
    mean = maps.mean(axis=(0, 1, 2))
    std = maps.std(axis=(0, 1, 2)) + 1e-6
    return {s: ((a["maps"].astype(np.float32) - mean) / std,
                np.asarray(a["weights"], np.float32), np.asarray(a["paths"], np.float32))
            for s, a in arrays.items()}


def load_warcraft(path, grid=12, batch_size=70, targets="paths", shuffle=True, seed=0):
    """Warcraft shortest-path data as `tf.data` pipelines (Vlastelica et al., ICLR 2020).

    Reads the original layout (or `generate_warcraft`'s) and normalises each image
    channel with the mean and standard deviation of the training maps:
    ``x = (pixel - mean_c) / std_c``.

    Args:
        path: folder of the ``.npy`` files (or of their ``{grid}x{grid}`` folder).
        grid: side of the cost grid (12 for the 96x96 maps).
        batch_size: batch size of the three pipelines (70 in the paper).
        targets: what the pipelines yield as ``y``: ``"paths"`` (float32
            ``(B, g, g)``), ``"paths_and_costs"`` (``(B, g, g, 2)``, packed as
            `keras_newton.paths.pack_path_targets` does, for the cost-based metrics) or
            ``"costs"`` (the vertex weights, float32).
        shuffle: shuffle the training split every epoch.
        seed: shuffling seed.

    Returns:
        `WarcraftData` (``train``, ``val``, ``test``, ``mean``, ``std``, ``arrays``).

    Raises:
        TypeError: ``batch_size`` or ``grid`` is not an integer.
        ValueError: an unknown ``targets``, ``batch_size`` or ``grid`` below 1, or files that
            `read_warcraft_arrays` rejects, the message naming the file and what was
            expected: a missing, truncated or unreadable ``.npy`` (garbage, pickled
            objects, an ``.npz``); a wrong shape; no training maps; vertex weights that
            are NaN, infinite or negative; shortest paths with a value other than 0 or 1.

    Example:

    ```python
    data = load_warcraft("warcraft_maps/", targets="paths_and_costs")
    model.fit(data.train, validation_data=data.val, epochs=50)
    ```
    """
    import tensorflow as tf  # tf.data pipelines (allowed here: data input only)

    if targets not in ("paths", "paths_and_costs", "costs"):
        raise ValueError(
            "targets must be 'paths', 'paths_and_costs' or 'costs'; received "
            f"{targets!r}."
        )
    batch_size = _checks.check_positive_int("batch_size", batch_size)
    arrays = read_warcraft_arrays(path, grid)
    mean, std = _channel_stats(arrays["train"]["maps"])

    def make(split):
        a = arrays[split]
        paths = np.asarray(a["paths"], np.float32)
        costs = np.asarray(a["weights"], np.float32)
        if targets == "paths":
            y = paths
        elif targets == "costs":
            y = costs
        else:
            y = np.stack([paths, costs], axis=-1)
        ds = tf.data.Dataset.from_tensor_slices((np.asarray(a["maps"]), y))
        if split == "train" and shuffle:
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        mean_t = tf.constant(mean)
        std_t = tf.constant(std)
        ds = ds.map(
            lambda x, t: ((tf.cast(x, tf.float32) - mean_t) / std_t, t),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return ds.prefetch(tf.data.AUTOTUNE)

    return WarcraftData(make("train"), make("val"), make("test"), mean, std, arrays)


# --- the procedural look-alike ------------------------------------------------------------


def _upsample_matrix(coarse, fine):
    """``(fine, coarse)`` bilinear interpolation weights from a coarse to a fine axis."""
    pos = np.linspace(0, coarse - 1, fine)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, coarse - 1)
    frac = pos - lo
    m = np.zeros((fine, coarse))
    m[np.arange(fine), lo] += 1 - frac
    m[np.arange(fine), hi] += frac
    return m


def _smooth_field(rng, n, grid, coarse):
    """Smooth random fields ``(n, grid, grid)``, standardised per map."""
    up = _upsample_matrix(coarse, grid)
    field = up @ rng.standard_normal((n, coarse, coarse)) @ up.T
    field = field + 0.15 * rng.standard_normal((n, grid, grid))
    field -= field.mean(axis=(1, 2), keepdims=True)
    field /= field.std(axis=(1, 2), keepdims=True) + 1e-9
    return field


def _quantile_mask(field, fraction):
    """Cells of each map whose value is below the map's ``fraction`` quantile."""
    n = field.shape[0]
    flat = field.reshape(n, -1)
    k = np.clip(np.round(fraction * flat.shape[1]).astype(int), 0, flat.shape[1])
    order = np.argsort(np.argsort(flat, axis=1), axis=1)  # rank of every cell
    return (order < k[:, None]).reshape(field.shape)


def _draw_roads(rng, terrain, max_roads):
    """Roads: wiggly lines between random points of two different grid borders."""
    n, grid, _ = terrain.shape
    n_roads = rng.integers(1, max_roads + 1, size=n)
    steps = 4 * grid
    t = np.linspace(0.0, 1.0, steps)
    for r in range(max_roads):
        active = n_roads > r
        side_a = rng.integers(0, 4, size=n)
        side_b = (side_a + rng.integers(1, 4, size=n)) % 4
        ends = []
        for side in (side_a, side_b):
            u = rng.uniform(0, grid - 1, size=n)
            y = np.select([side == 0, side == 1, side == 2], [0.0 * u, u, grid - 1.0], u)
            x = np.select([side == 0, side == 1, side == 2], [u, grid - 1.0, u], 0.0 * u)
            ends.append((y, x))
        (y0, x0), (y1, x1) = ends
        amp = rng.uniform(0.0, 2.0, size=n)
        phase = rng.uniform(0, 2 * np.pi, size=n)
        freq = rng.uniform(0.5, 2.0, size=n)
        dy, dx = y1 - y0, x1 - x0
        norm = np.sqrt(dy**2 + dx**2) + 1e-9
        wiggle = amp[:, None] * np.sin(2 * np.pi * freq[:, None] * t + phase[:, None])
        wiggle *= np.sin(np.pi * t)  # ends stay on the borders
        ys = y0[:, None] + dy[:, None] * t - dx[:, None] / norm[:, None] * wiggle
        xs = x0[:, None] + dx[:, None] * t + dy[:, None] / norm[:, None] * wiggle
        ys = np.clip(np.round(ys), 0, grid - 1).astype(int)
        xs = np.clip(np.round(xs), 0, grid - 1).astype(int)
        idx = np.nonzero(active)[0]
        maps = np.repeat(idx, steps)
        terrain[maps, ys[idx].ravel(), xs[idx].ravel()] = ROAD
    return terrain


def _terrain(rng, n, grid):
    """Terrain classes ``(n, grid, grid)`` with regions, lakes, rivers and roads."""
    elevation = _smooth_field(rng, n, grid, coarse=4)
    moisture = _smooth_field(rng, n, grid, coarse=5)
    terrain = np.full((n, grid, grid), GRASS, dtype=np.int64)
    # Forests where it is moist, mountains high up, lakes in the lowest cells.
    forest = _quantile_mask(-moisture, rng.uniform(0.1, 0.4, size=n))
    terrain[forest] = FOREST
    mountain = _quantile_mask(-elevation, rng.uniform(0.05, 0.25, size=n))
    terrain[mountain] = MOUNTAIN
    lake = _quantile_mask(elevation, rng.uniform(0.0, 0.18, size=n))
    terrain[lake] = WATER
    # A river on about half of the maps: a band along a level line of a third field.
    river_field = _smooth_field(rng, n, grid, coarse=3)
    level = rng.uniform(-0.5, 0.5, size=n)[:, None, None]
    width = rng.uniform(0.08, 0.2, size=n)[:, None, None]
    has_river = (rng.uniform(size=n) < 0.5)[:, None, None]
    terrain[has_river & (np.abs(river_field - level) < width)] = WATER
    return _draw_roads(rng, terrain, max_roads=3)


def _tileset(rng, variants):
    """Float textures ``(5, 2 variants, 8, 8, 3)`` around [0, 255], per terrain class."""
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    tiles = np.zeros((5, variants, TILE, TILE, 3))
    base = np.array([
        [168, 138, 96],   # road: packed dirt
        [86, 142, 62],    # grass
        [44, 96, 40],     # forest
        [128, 118, 108],  # mountain: grey rock
        [44, 84, 160],    # water
    ], dtype=np.float64)
    for v in range(variants):
        noise = rng.normal(0, 1, size=(5, TILE, TILE, 1))
        # road: ruts (two darker lines along a random axis) and gravel speckle
        ruts = (np.isin(yy, (2, 5)) if v % 2 else np.isin(xx, (2, 5)))[..., None]
        tiles[ROAD, v] = base[ROAD] - 28 * ruts + 10 * noise[ROAD]
        # grass: fine blades (bright speckle)
        blades = (rng.uniform(size=(TILE, TILE, 1)) < 0.18)
        tiles[GRASS, v] = base[GRASS] + 30 * blades * np.array([0.6, 1.0, 0.4]) + 8 * noise[GRASS]
        # forest: two or three round tree crowns with dark outlines and a brown trunk
        forest = np.tile(base[FOREST] * 0.7, (TILE, TILE, 1))
        for _ in range(rng.integers(2, 4)):
            cy, cx = rng.uniform(1.5, 5.5, size=2)
            r2 = (yy - cy) ** 2 + (xx - cx) ** 2
            crown = (r2 < 4.0)[..., None]
            highlight = (r2 < 1.2)[..., None]
            forest = np.where(crown, base[FOREST] + 12 * highlight, forest)
            trunk = ((yy == int(cy) + 2) & (xx == int(cx)))[..., None]
            forest = np.where(trunk, np.array([90, 62, 36]), forest)
        tiles[FOREST, v] = forest + 6 * noise[FOREST]
        # mountain: a bright peak triangle with a shaded flank
        apex = rng.uniform(2.5, 4.5)
        inside = (yy >= 1) & (np.abs(xx - apex) <= (yy - 1) * 0.75)
        shade = inside & (xx > apex)
        mountain = base[MOUNTAIN] + 60 * inside[..., None] - 45 * shade[..., None]
        tiles[MOUNTAIN, v] = mountain + 10 * noise[MOUNTAIN]
        # water: light wave crests on shifted rows
        shift = rng.integers(0, 4)
        crest = (((yy + shift) % 4 == 0) & ((xx + yy // 4 * 2) % 4 < 2))[..., None]
        tiles[WATER, v] = base[WATER] + 50 * crest * np.array([0.7, 0.9, 1.0]) + 6 * noise[WATER]
    # The mirrored variants (flipped left-right) follow the originals.
    return np.concatenate([tiles, tiles[:, :, :, ::-1]], axis=1).astype(np.float32)


def _render(rng, terrain, tileset):
    """uint8 images ``(n, 8 grid, 8 grid, 3)`` of terrain grids ``(n, grid, grid)``."""
    n, grid, _ = terrain.shape
    variants = tileset.shape[1] // 2  # the second half holds the mirrored tiles
    pick = rng.integers(0, variants, size=terrain.shape)
    flip = rng.uniform(size=terrain.shape) < 0.5
    tiles = tileset[terrain, pick + variants * flip]  # (n, g, g, 8, 8, 3), float32
    # Per-map variation: tint and brightness (season, lighting); per-tile brightness;
    # per-pixel noise, drawn per tile from a bank of noise tiles.
    tiles *= rng.uniform(0.85, 1.15, size=(n, 1, 1, 1, 1, 3)).astype(np.float32)
    offset = rng.uniform(-18, 18, size=(n, 1, 1)) + rng.normal(0, 5, size=(n, grid, grid))
    bank = 4 * rng.standard_normal((256, TILE, TILE, 3), dtype=np.float32)
    noise = bank[rng.integers(0, len(bank), size=terrain.shape)]
    noise += offset.astype(np.float32)[..., None, None, None]
    tiles += noise
    images = tiles.transpose(0, 1, 3, 2, 4, 5).reshape(n, grid * TILE, grid * TILE, 3)
    np.rint(images, out=images)
    np.clip(images, 0, 255, out=images)
    return images.astype(np.uint8)


def _generate_chunk(rng, n, grid, tileset):
    terrain = _terrain(rng, n, grid)
    weights = np.asarray(TERRAIN_COSTS, np.float16)[terrain]
    images = _render(rng, terrain, tileset)
    return images, weights


def _label(weights):
    """Exact shortest paths (uint8) of float16 weights, priced in float32."""
    from keras_newton.paths.exact import solve_shortest_paths

    return solve_shortest_paths(np.asarray(weights, np.float32)).astype(np.uint8)


def generate_warcraft(out_dir, n_train=10000, n_val=1000, n_test=1000, grid=12, seed=0,
                      verbose=False):
    """Writes a procedural Warcraft look-alike in the original file layout.

    Each map is a ``grid x grid`` terrain of five classes with the original costs
    {0.8, 1.2, 5.3, 7.7, 9.2} (road, grass, forest, mountain, water), with spatial
    structure: smooth elevation and moisture fields give forest regions, mountain ranges
    and lakes; about half of the maps get a river; one to three wiggly roads cross each
    map from border to border. Each cell is drawn as an 8x8 pixel tile from a fixed
    procedural tileset (several variants per class: ruts, grass blades, tree crowns,
    mountain peaks, wave crests), randomly flipped, under a per-map tint and brightness
    and per-tile and per-pixel noise, so that the costs must be learned from the pixels.
    Labels: `keras_newton.paths.shortest_path` on the stored float16 weights (read as
    float32): vertex-weighted, 8-neighbourhood, (0, 0) -> (g - 1, g - 1), start counted;
    among equal-cost paths the solver's deterministic choice.

    Files written to ``out_dir`` (created if needed): ``{split}_maps.npy`` (uint8
    ``(N, 8g, 8g, 3)``), ``{split}_vertex_weights.npy`` (float16 ``(N, g, g)``),
    ``{split}_shortest_paths.npy`` (uint8 ``(N, g, g)``) for train/val/test, and
    ``generator.json`` with the arguments. The same ``seed`` gives the same files. About
    10k 12x12 maps a minute on one CPU core.

    Args:
        out_dir: output folder.
        n_train, n_val, n_test: number of maps per split (``>= 0``; ``n_train >= 1``).
        grid: side of the terrain grid (images are ``8 * grid`` pixels wide).
        seed: random seed.
        verbose: print progress and timing.

    Returns:
        dict ``{split: number of maps}``, plus ``"seconds"``.

    Example:

    ```python
    generate_warcraft("data/warcraft", n_train=10000, seed=0)
    data = load_warcraft("data/warcraft")
    ```
    """
    counts = {"train": _checks.check_positive_int("n_train", n_train),
              "val": _checks.check_non_negative_int("n_val", n_val),
              "test": _checks.check_non_negative_int("n_test", n_test)}
    grid = _checks.check_int("grid", grid, 2)
    seed = _checks.check_non_negative_int("seed", seed)
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    root = np.random.SeedSequence(seed)
    tileset_seq, *split_seqs = root.spawn(1 + len(SPLITS))
    tileset = _tileset(np.random.default_rng(tileset_seq), variants=12)
    chunk = 250
    for split, seq in zip(SPLITS, split_seqs):
        n = counts[split]
        images = np.empty((n, grid * TILE, grid * TILE, 3), np.uint8)
        weights = np.empty((n, grid, grid), np.float16)
        for c, sub in enumerate(seq.spawn((n + chunk - 1) // chunk)):
            lo, hi = c * chunk, min(n, (c + 1) * chunk)
            images[lo:hi], weights[lo:hi] = _generate_chunk(
                np.random.default_rng(sub), hi - lo, grid, tileset
            )
        paths = _label(weights)
        np.save(os.path.join(out_dir, f"{split}_maps.npy"), images)
        np.save(os.path.join(out_dir, f"{split}_vertex_weights.npy"), weights)
        np.save(os.path.join(out_dir, f"{split}_shortest_paths.npy"), paths)
        if verbose:
            print(f"{split}: {n} maps ({time.perf_counter() - start:.1f} s)", flush=True)
    seconds = time.perf_counter() - start
    with open(os.path.join(out_dir, "generator.json"), "w") as f:
        json.dump(
            {"generator": "keras_newton.datasets.generate_warcraft", "seed": seed,
             "grid": grid, **{f"n_{k}": v for k, v in counts.items()},
             "terrain_costs": dict(zip(TERRAIN_NAMES, TERRAIN_COSTS))},
            f,
            indent=2,
        )
    return {**counts, "seconds": seconds}
