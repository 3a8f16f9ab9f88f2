"""TF-Serving export of trained rankers: a SavedModel with two signatures.

A ranking model of `keras_newton.models.multi_digit_cnn` scores every item of a set with
one shared CNN (its ``score_each`` `keras.layers.TimeDistributed` layer) and is trained on
sets; at serving time one wants to score single items and to order whole sets.
`export_ranker` writes a SavedModel (Keras `keras.export.ExportArchive`) with

- ``serving_default``: input ``images``, float32 ``(B, H, W, 1)`` (``28 x 112 x 1`` for
  four-digit MNIST, pixels in ``[0, 1]`` as `keras_newton.datasets` yields them) ->
  output ``scores``, float32 ``(B,)``: one score per item;
- ``rank_sets``: input ``sets``, float32 ``(B, n, H, W)``, any ``n`` -> outputs
  ``scores`` ``(B, n)`` and ``order`` int32 ``(B, n)`` with
  ``order[b] = argsort(scores[b])``, ascending: ``order[b, r]`` is the item at rank ``r``,
  the convention of `keras_newton.metrics.ExactMatchAccuracy` (docs/conventions.md,
  "Ranking metrics").

TF-Serving wants ``MODEL_BASE/NAME/VERSION`` with an integer version folder, so the
export path must end in one (``models/ranker/1``). The SavedModel format is TensorFlow's:
this module needs the TensorFlow backend.

Serving it (TF-Serving's Docker image, REST on port 8501):

```bash
docker run -p 8501:8501 -v "$PWD/models/ranker:/models/ranker" \
    -e MODEL_NAME=ranker tensorflow/serving
curl -d '{"signature_name": "rank_sets", "inputs": {"sets": [...]}}' \
    http://localhost:8501/v1/models/ranker:predict
```

Example:

```python
model = keras.saving.load_model("ranker.keras")
keras_newton.serving.export_ranker(model, "models/ranker/1")
served = tf.saved_model.load("models/ranker/1")
out = served.signatures["rank_sets"](sets=tf.constant(sets))   # {"scores", "order"}
```
"""

import os

import keras
from keras import ops

__all__ = ["SIGNATURES", "export_ranker", "find_scorer"]

#: The signatures `export_ranker` writes: name -> (input name, output names).
SIGNATURES = {
    "serving_default": ("images", ("scores",)),
    "rank_sets": ("sets", ("scores", "order")),
}


def find_scorer(model):
    """The per-item scoring model inside a ranking model.

    Args:
        model: a ranking model mapping ``(B, n, H, W)`` sets to ``(B, n)`` scores whose
            item scorer is a `keras.layers.TimeDistributed` layer (as in
            `keras_newton.models.multi_digit_cnn`), or the scorer itself, a model from
            ``(B, H, W, 1)`` images to ``(B, 1)`` or ``(B,)`` scores.

    Returns:
        ``(scorer, image_shape)``: the scorer and ``(H, W)``.

    Raises:
        TypeError: ``model`` is not a Keras model.
        ValueError: no item scorer can be found.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model; received {type(model).__name__}.")
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is not None and len(shape) == 4 and shape[-1] == 1:
        out = tuple(model.output_shape)
        if out[1:] in ((1,), ()):
            return model, tuple(shape[1:3])
    for layer in model.layers:
        if isinstance(layer, keras.layers.TimeDistributed):
            inner = layer.layer
            inner_shape = tuple(inner.input_shape) if isinstance(inner, keras.Model) else None
            if inner_shape and len(inner_shape) == 4 and inner_shape[-1] == 1:
                return inner, tuple(inner_shape[1:3])
    raise ValueError(
        "model must be a ranking model whose item scorer is a TimeDistributed layer over a "
        "model of (H, W, 1) images (keras_newton.models.multi_digit_cnn), or such a scorer; "
        f"received {model.name!r} with input shape {model.input_shape}."
    )


def _check_export_dir(path, require_version):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"export_dir must be a path; received {path!r}.")
    path = os.fspath(path)
    version = os.path.basename(os.path.normpath(path))
    if require_version and not version.isdigit():
        raise ValueError(
            "export_dir must end in an integer version folder, MODEL_BASE/NAME/VERSION "
            f"(TF-Serving's layout, e.g. models/ranker/1); received {path!r}."
        )
    if os.path.exists(path) and os.listdir(path):
        raise ValueError(f"export_dir {path!r} exists and is not empty; choose a new "
                         "version number or remove it.")
    return path


def export_ranker(model, export_dir, require_version=True, verbose=False):
    """Writes a TF-Serving SavedModel of a ranking model (see the module docstring).

    Signatures: ``serving_default`` (``images`` ``(B, H, W, 1)`` -> ``scores`` ``(B,)``)
    and ``rank_sets`` (``sets`` ``(B, n, H, W)`` -> ``scores`` ``(B, n)`` and ``order``
    ``(B, n)``, ``order[b] = argsort(scores[b])`` ascending). Both run the model's shared
    item scorer (`find_scorer`), so ``rank_sets`` takes sets of any size ``n``.

    Args:
        model: a ranking model or item scorer (see `find_scorer`), e.g. loaded with
            ``keras.saving.load_model(path, compile=False)``.
        export_dir: ``MODEL_BASE/NAME/VERSION``; must not exist or be empty.
        require_version: require the last folder to be an integer (TF-Serving).
        verbose: print the archive's endpoints.

    Returns:
        The export directory.

    Example:

    ```python
    export_ranker(keras_newton.models.multi_digit_cnn(5), "models/ranker/1")
    ```
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError("export_ranker writes a TensorFlow SavedModel and needs the "
                         f"TensorFlow backend; the backend is {keras.backend.backend()!r}.")
    scorer, (height, width) = find_scorer(model)
    export_dir = _check_export_dir(export_dir, require_version)

    def score_images(images):
        scores = scorer(images, training=False)
        scores = ops.reshape(scores, (ops.shape(images)[0],))
        return ops.cast(scores, "float32")

    def serve(images):
        return {"scores": score_images(images)}

    def rank_sets(sets):
        batch, n = ops.shape(sets)[0], ops.shape(sets)[1]
        images = ops.reshape(sets, (batch * n, height, width, 1))
        scores = ops.reshape(score_images(images), (batch, n))
        order = ops.cast(ops.argsort(scores, axis=-1), "int32")
        return {"scores": scores, "order": order}

    archive = keras.export.ExportArchive()
    archive.track(scorer)
    archive.add_endpoint("serving_default", serve, input_signature=[
        keras.InputSpec(shape=(None, height, width, 1), dtype="float32", name="images")])
    archive.add_endpoint("rank_sets", rank_sets, input_signature=[
        keras.InputSpec(shape=(None, None, height, width), dtype="float32", name="sets")])
    archive.write_out(export_dir, verbose=verbose)
    return export_dir
