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

from keras_newton.app.common import UsageError


def register(subparsers):
    p = subparsers.add_parser("ranker", help="a ranking model as a TF-Serving SavedModel",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the trained ranker, a .keras file")
    p.add_argument("--out", required=True,
                   help="MODEL_BASE/NAME/VERSION, e.g. models/ranker/1 (must not exist)")
    p.set_defaults(func=run)


def run(args):
    if not os.path.isfile(args.model):
        raise UsageError(f"--model must be a saved .keras file; {args.model!r} does not "
                         "exist.")
    if os.path.exists(args.out):
        raise UsageError(f"--out {args.out!r} exists: give a new MODEL_BASE/NAME/VERSION "
                         "folder.")
    import keras

    from keras_newton import serving

    try:
        model = keras.saving.load_model(args.model, compile=False)
    except (ValueError, OSError) as e:
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
