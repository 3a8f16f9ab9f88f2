"""``keras-newton export ranker``: a trained ranker as a TF-Serving SavedModel.

    keras-newton export ranker --model ranker.keras --out models/ranker/1

Loads the ``.keras`` model (without its training configuration: the Newton loss is not
needed to serve) and writes a SavedModel with the signatures ``serving_default``
(``images`` ``(B, 28, 112, 1)`` -> ``scores`` ``(B,)``) and ``rank_sets`` (``sets``
``(B, n, 28, 112)`` -> ``scores`` and the ascending ``order``), see
`keras_newton.serving.export_ranker`. ``--out`` follows TF-Serving's
``MODEL_BASE/NAME/VERSION`` layout.
"""

import os
import zipfile

from keras_newton.app.common import UsageError


def register(subparsers):
    p = subparsers.add_parser("ranker", help="a ranking model as a TF-Serving SavedModel",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the trained ranker, a .keras file")
    p.add_argument("--out", required=True,
                   help="MODEL_BASE/NAME/VERSION, e.g. models/ranker/1 (must not exist)")
    p.set_defaults(func=run, check=check)


def check(args):
    """The checks of ``--model`` and ``--out`` that need no Keras (at parse time): the
    model is an existing ``.keras`` file (a zip archive), ``--out`` does not exist, can be
    created (no file on its way) and ends in an integer version folder. Raises
    `UsageError`."""
    model, out = args.model, args.out
    expected = "--model must be a saved .keras file"
    if os.path.isdir(model):
        raise UsageError(f"{expected}; {model!r} is a directory.")
    if not os.path.isfile(model):
        raise UsageError(f"{expected}; {model!r} does not exist.")
    if not model.endswith(".keras"):
        raise UsageError(f"{expected}; {model!r} does not end in .keras.")
    if not zipfile.is_zipfile(model):
        raise UsageError(f"{expected}; {model!r} is not one (not a zip archive: truncated "
                         "or another format?).")
    try:
        with zipfile.ZipFile(model) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise UsageError(f"{expected}; {model!r} is not a readable zip archive: {e}") from None
    if "config.json" not in names:
        raise UsageError(f"{expected}; {model!r} is a zip archive without the config.json "
                         "of one.")
    if os.path.exists(out):
        raise UsageError(f"--out {out!r} exists: give a new MODEL_BASE/NAME/VERSION "
                         "folder.")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"--out {out!r} cannot be created: {parent!r} is a file, not a "
                         "directory.")
    if not os.path.basename(os.path.normpath(out)).isdigit():
        raise UsageError(f"--out must end in an integer version folder, "
                         f"MODEL_BASE/NAME/VERSION (e.g. models/ranker/1); received {out!r}.")


def run(args):
    check(args)
    import keras

    from keras_newton import serving

    try:
        model = keras.saving.load_model(args.model, compile=False)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as e:
        # a damaged archive, or objects that are not registered (not keras-newton's)
        raise UsageError(f"--model {args.model!r} cannot be loaded: {e}") from None
    try:
        path = serving.export_ranker(model, args.out)
    except ValueError as e:  # not a ranker, a bad version folder, not TensorFlow
        raise UsageError(str(e)) from None
    base, version = os.path.split(os.path.normpath(os.path.abspath(path)))
    model_base, name = os.path.split(base)
    print(f"SavedModel written to {path} (model {name!r}, version {version}); signatures:")
    for signature, (input_name, outputs) in serving.SIGNATURES.items():
        print(f"  {signature}: {input_name} -> {', '.join(outputs)}")
    print(f"Serve it: docker run -p 8501:8501 -v {model_base}/{name}:/models/{name} "
          f"-e MODEL_NAME={name} tensorflow/serving")
    return 0
