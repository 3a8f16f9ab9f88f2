"""`multi_digit_cnn`: the four-digit MNIST ranking CNN of NeuralSort and diffsort."""

import keras
from keras import layers

from keras_newton import _checks


def digit_scorer(image_shape=(28, 112), name="digit_scorer", score_dtype=None):
    """The per-image CNN: one real score for one ``28 x 112`` four-digit image.

    Conv 5x5, 32, same + ReLU; MaxPool 2; Conv 5x5, 64, same + ReLU; MaxPool 2;
    Dense 64 + ReLU; Dense 1 (docs/conventions.md, "Models": Grover et al. ICLR 2019,
    Petersen et al. ICML 2021).

    ``score_dtype`` (default ``None``: the global dtype policy) is the dtype policy of the
    last Dense layer: ``"float32"`` keeps the scores in float32 under a mixed-precision
    global policy (``"mixed_bfloat16"``), so that the loss sees float32 scores.

    Returns:
        `keras.Sequential` from ``image_shape + (1,)`` to ``(1,)``.
    """
    return keras.Sequential(
        [
            keras.Input(shape=tuple(image_shape) + (1,)),
            layers.Conv2D(32, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(1, dtype=score_dtype),
        ],
        name=name,
    )


def multi_digit_cnn(n, image_shape=(28, 112), name="multi_digit_cnn", score_dtype=None):
    """Ranking model: the same CNN scores each of the ``n`` images of a set.

    Input ``(B, n, 28, 112)`` (pixels in ``[0, 1]``, as `keras_newton.datasets` yields
    them); output ``(B, n)`` scores, to be ordered like the four-digit numbers. The CNN
    (`digit_scorer`) is shared by the items through `keras.layers.TimeDistributed`, which
    runs it once on the ``B * n`` images.

    Args:
        n: items per set, ``>= 2``.
        image_shape: ``(height, width)`` of an item, ``(28, 112)`` for four digits.
        name: model name.
        score_dtype: dtype policy of the scoring head (the CNN's last Dense layer and the
            output reshape); ``"float32"`` keeps the scores float32 when the model is
            built under a mixed-precision global policy. Default: the global policy.

    Returns:
        A functional `keras.Model`.

    Example:

    ```python
    model = keras_newton.models.multi_digit_cnn(5)
    base = keras_newton.losses.RankingLoss(keras_newton.layers.DiffSort(steepness=10.0))
    model.compile(keras.optimizers.Adam(10**-3.5),
                  loss=keras_newton.NewtonLoss(base, curvature="hessian"),
                  metrics=[keras_newton.metrics.ExactMatchAccuracy()])
    model.fit(train_sets, steps_per_epoch=1000, epochs=10)
    ```
    """
    n = _checks.check_int("n", n, 2, note="items per set")
    image_shape = tuple(int(d) for d in image_shape)
    inputs = keras.Input(shape=(n,) + image_shape, name="images")
    x = layers.Reshape((n,) + image_shape + (1,))(inputs)
    x = layers.TimeDistributed(digit_scorer(image_shape, score_dtype=score_dtype),
                               name="score_each", dtype=score_dtype)(x)
    scores = layers.Reshape((n,), name="scores", dtype=score_dtype)(x)
    return keras.Model(inputs, scores, name=name)
