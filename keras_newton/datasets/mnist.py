"""MNIST from wherever it is available: a file, the Keras cache, a download, or the bundle.

`load_mnist` returns ``(x_train, y_train), (x_test, y_test)`` exactly as
``keras.datasets.mnist.load_data()`` does (images ``(N, 28, 28)`` uint8 in 0..255, labels
``(N,)`` integer digits), so code written against Keras runs unchanged; offline machines
fall back to a class-balanced subset shipped inside the package (10 000 train + 2 000
test digits, cut by ``scripts/make_mnist_subset.py``).

MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, under CC BY-SA 3.0.
"""

import logging
import os
import zipfile

import numpy as np

logger = logging.getLogger(__name__)

#: Environment variable naming a full MNIST ``.npz`` (Keras' layout), tried first by "auto".
ENV_VAR = "KERAS_NEWTON_MNIST"
#: The bundled subset, relative to this package.
BUNDLED_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                            "mnist_subset.npz")
SOURCES = ("auto", "keras_cache", "download", "bundled")
_KEYS = ("x_train", "y_train", "x_test", "y_test")


def keras_cache_path():
    """``$KERAS_HOME/datasets/mnist.npz`` (``KERAS_HOME`` defaults to ``~/.keras``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets", "mnist.npz")


def _validate(arrays, origin):
    """Checks Keras' MNIST layout; raises ValueError naming ``origin`` and the problem."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(
                f"{origin}: x_{split} must have shape (N, 28, 28); got {x.shape}."
            )
        if x.shape[0] == 0:
            raise ValueError(
                f"{origin}: x_{split} holds no images; each of the train and test splits "
                "needs at least one."
            )
        if x.dtype != np.uint8:
            raise ValueError(
                f"{origin}: x_{split} must be uint8 pixel values 0..255; got dtype {x.dtype}."
            )
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{origin}: y_{split} must have shape ({x.shape[0]},) to match x_{split}; "
                f"got {y.shape}."
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"{origin}: y_{split} must hold integer labels; got dtype {y.dtype}."
            )
        if y.size and (y.min() < 0 or y.max() > 9):
            raise ValueError(
                f"{origin}: y_{split} must hold digits 0..9; got values in "
                f"[{y.min()}, {y.max()}]."
            )


def load_npz(path):
    """Loads an MNIST ``.npz`` in Keras' layout, validated, without unpickling anything.

    Args:
        path: file with arrays ``x_train`` (N, 28, 28) uint8, ``y_train`` (N,) integer,
            ``x_test``, ``y_test``; further arrays are ignored.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: (the message names the file) not a readable ``.npz`` (truncated,
            garbage, pickled object arrays, a single ``.npy`` array); a key missing; images
            not ``(N, 28, 28)`` uint8; an empty split (``N = 0`` training or test images);
            labels not ``(N,)`` integers in 0..9.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MNIST file not found: {path!r}.")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"MNIST file {path!r} is not a readable .npz archive of plain arrays: {e}"
        ) from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"MNIST file {path!r} holds a single array, not an .npz archive with the keys "
            f"{', '.join(_KEYS)}."
        )
    with archive:
        missing = [k for k in _KEYS if k not in archive.files]
        if missing:
            raise ValueError(
                f"MNIST file {path!r} lacks {', '.join(missing)}; expected the keys "
                f"{', '.join(_KEYS)} (Keras' mnist.npz layout), found "
                f"{', '.join(archive.files) or 'none'}."
            )
        try:
            arrays = {k: archive[k] for k in _KEYS}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(
                f"MNIST file {path!r}: cannot read its arrays as plain numeric data "
                f"(pickled object arrays are refused): {e}"
            ) from e
    _validate(arrays, f"MNIST file {path!r}")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _download():
    import keras  # deferred: loading from a file needs no Keras

    try:
        return keras.datasets.mnist.load_data()
    except Exception as e:  # urllib/HTTP/SSL errors vary by platform and Keras version
        raise RuntimeError(
            "Could not download MNIST through keras.datasets.mnist.load_data() "
            f"({type(e).__name__}: {e}). Offline, use source='bundled' (the subset shipped "
            f"with keras-newton), a path to an mnist.npz, or set ${ENV_VAR}."
        ) from e


def resolve_source(source="auto"):
    """Where `load_mnist` would read from: ``(kind, path)``, reading nothing.

    ``kind`` is ``"file"``, ``"env"``, ``"keras_cache"``, ``"download"`` or ``"bundled"``;
    ``path`` is the file (``None`` for a download).
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a path or one of {', '.join(map(repr, SOURCES))}; received "
            f"{type(source).__name__}."
        )
    source = os.fspath(source)
    if source == "auto":
        env = os.environ.get(ENV_VAR)
        if env:
            if not os.path.isfile(env):
                raise FileNotFoundError(
                    f"${ENV_VAR} is set to {env!r}, which is not a file; unset it or point it "
                    "at an mnist.npz."
                )
            return "env", env
        cache = keras_cache_path()
        if os.path.isfile(cache):
            return "keras_cache", cache
        return "bundled", BUNDLED_PATH
    if source == "keras_cache":
        cache = keras_cache_path()
        if not os.path.isfile(cache):
            raise FileNotFoundError(
                f"source='keras_cache': no MNIST in the Keras cache at {cache!r} "
                "(set KERAS_HOME, or run keras.datasets.mnist.load_data() once online)."
            )
        return "keras_cache", cache
    if source == "download":
        return "download", None
    if source == "bundled":
        return "bundled", BUNDLED_PATH
    if source.endswith(".npz") or os.path.sep in source or os.path.exists(source):
        return "file", source
    raise ValueError(
        f"source must be a path to an .npz or one of {', '.join(map(repr, SOURCES))}; "
        f"received {source!r}."
    )


def describe_source(kind, path):
    """A one-line human description of a resolved source."""
    if kind == "download":
        return "full MNIST (keras.datasets.mnist.load_data download)"
    if kind == "bundled":
        return f"bundled MNIST subset ({path})"
    where = {"env": f"${ENV_VAR}", "keras_cache": "Keras cache", "file": "file"}[kind]
    return f"MNIST from {where} ({path})"


def load_mnist(source="auto", verbose=True, return_source=False):
    """Loads MNIST as ``keras.datasets.mnist.load_data()`` returns it.

    Args:
        source: where from:
            - ``"auto"`` (default): the file named by ``$KERAS_NEWTON_MNIST``, else the Keras
              cache, else the bundled subset; never the network.
            - ``"keras_cache"``: ``$KERAS_HOME/datasets/mnist.npz`` (``~/.keras`` default).
            - ``"download"``: ``keras.datasets.mnist.load_data()``, online only.
            - ``"bundled"``: the 10 000 + 2 000 digit class-balanced subset in the package.
            - a path to an ``.npz`` in Keras' layout.
        verbose: print which source was used (it is logged at INFO level either way).
        return_source: also return a dict ``{"kind", "path", "description"}``.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: images ``(N, 28, 28)`` uint8, labels
        ``(N,)`` integers 0..9; with ``return_source``, ``(data, source_info)``.

    Raises:
        ValueError: unknown ``source``, or data `load_npz` rejects (the message names the
            file): an unreadable or truncated ``.npz``, a key missing, images not
            ``(N, 28, 28)`` uint8, an empty training or test split, labels not integers
            0..9 matching the images.
        FileNotFoundError: the named file, or the Keras cache, is missing.
        RuntimeError: ``"download"`` failed (e.g. offline).

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = load_mnist()        # best available, offline
    (x_train, y_train), _ = load_mnist("/data/mnist.npz")
    ```
    """
    kind, path = resolve_source(source)
    description = describe_source(kind, path)
    if kind == "download":
        (x_train, y_train), (x_test, y_test) = _download()
        _validate({"x_train": x_train, "y_train": y_train, "x_test": x_test,
                   "y_test": y_test}, "keras.datasets.mnist.load_data()")
        data = (x_train, y_train), (x_test, y_test)
    else:
        data = load_npz(path)
    (x_train, _), (x_test, _) = data
    message = (f"load_mnist: using {description}: {len(x_train)} train, "
               f"{len(x_test)} test images")
    logger.info(message)
    if verbose:
        print(message, flush=True)
    if return_source:
        return data, {"kind": kind, "path": path, "description": description}
    return data
