"""
Title: Serving a trained ranker with TF-Serving
Author: keras-newton developers
Description: Export a four-digit-MNIST ranker as a SavedModel with a per-image and a
per-set signature, check it, and query it over TF-Serving's REST API.
Accelerator: None (CPU, a minute; `--quick`: seconds)

## Introduction

A ranker trained with a Newton loss (see `examples/ranking.py`) is a plain Keras model:
the Newton loss only shapes training. For serving, `keras_newton.serving.export_ranker`
writes a SavedModel with two signatures:

- `serving_default`: `images` `(B, 28, 112, 1)` -> `scores` `(B,)`, one per image;
- `rank_sets`: `sets` `(B, n, 28, 112)`, any `n` -> `scores` `(B, n)` and `order`
  `(B, n)`, the items in ascending order of their scores.

The command line does the same: `keras-newton export ranker --model ranker.keras --out
models/ranker/1`. This script exports, reloads the SavedModel, compares it with the Keras
model, and prints (or, with `--server`, sends) a REST request.

Run: `python examples/serving.py [--model results/examples/ranking/ranker.keras]`
(or `--quick`). With a server running
(`docker run -p 8501:8501 -v "$PWD/results/examples/serving/models/ranker:/models/ranker"
-e MODEL_NAME=ranker tensorflow/serving`), add `--server http://localhost:8501`.
"""

import argparse
import json
import os
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402  (SavedModels are TensorFlow's)

import keras_newton  # noqa: E402
from keras_newton.datasets import four_digit_datasets, load_mnist  # noqa: E402
from keras_newton.models import multi_digit_cnn  # noqa: E402
from keras_newton.serving import export_ranker  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="a tiny, briefly trained model")
    parser.add_argument("--model", help="a trained ranker (.keras); default: train one")
    parser.add_argument("--steps", type=int, default=300, help="training steps without --model")
    parser.add_argument("--server", help="TF-Serving REST address, e.g. http://localhost:8501")
    parser.add_argument("--out", default="results/examples/serving")
    return parser.parse_args(argv)


def train_ranker(mnist, n, steps):
    """A NeuralSort ranker trained with a Newton loss (see examples/ranking.py)."""
    train, _, _ = four_digit_datasets(mnist, n, batch_size=20, num_validation_sets=1,
                                      num_test_sets=1, seed=0)
    base = keras_newton.losses.RankingLoss(keras_newton.layers.NeuralSort(tau=1.0))
    model = multi_digit_cnn(n)
    model.compile(keras.optimizers.Adam(1e-3),
                  loss=keras_newton.NewtonLoss(base, curvature="hessian", tikhonov=0.1))
    model.fit(train, steps_per_epoch=steps, epochs=1, verbose=0)
    return model


def next_version(base):
    """TF-Serving serves the highest integer version folder: use the next one."""
    versions = [int(d) for d in os.listdir(base) if d.isdigit()] if os.path.isdir(base) else []
    return max(versions, default=0) + 1


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(0)
    mnist = load_mnist("bundled" if args.quick else "auto")
    n = 5
    """
    ## A trained ranker
    """
    if args.model:
        model = keras.saving.load_model(args.model, compile=False)
        n = model.output_shape[-1]
    else:
        model = train_ranker(mnist, n, 2 if args.quick else args.steps)

    """
    ## Export

    TF-Serving expects `MODEL_BASE/NAME/VERSION` with an integer version.
    """
    base = os.path.join(args.out, "models", "ranker")
    path = export_ranker(model, os.path.join(base, str(next_version(base))))
    print(f"exported {path}")

    """
    ## Check the SavedModel against the Keras model
    """
    _, _, test = four_digit_datasets(mnist, n, batch_size=4, num_validation_sets=1,
                                     num_test_sets=4, seed=0)
    sets, numbers = next(iter(test.as_numpy_iterator()))
    served = tf.saved_model.load(path)
    out = served.signatures["rank_sets"](sets=tf.constant(sets))
    scores = model.predict(sets, verbose=0)
    match = np.allclose(out["scores"].numpy(), scores, rtol=1e-5, atol=1e-5)
    print(f"SavedModel scores equal the Keras model's: {bool(match)}")
    print(f"predicted order of set 0: {out['order'].numpy()[0].tolist()}; "
          f"true order: {np.argsort(numbers[0], kind='stable').tolist()}")

    """
    ## Query TF-Serving over REST

    The columnar "inputs" form names the signature's input; the answer holds "outputs".
    """
    request = {"signature_name": "rank_sets", "inputs": {"sets": sets[:1].tolist()}}
    print("REST: POST /v1/models/ranker:predict with "
          f"{json.dumps(request)[:90]}...")
    if args.server:
        req = urllib.request.Request(f"{args.server}/v1/models/ranker:predict",
                                     data=json.dumps(request).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as response:
            answer = json.load(response)["outputs"]
        print(f"server order of set 0: {answer['order'][0]}")
    return {"path": path, "match": bool(match)}


if __name__ == "__main__":
    main()
