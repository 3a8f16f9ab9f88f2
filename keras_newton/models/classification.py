"""The MNIST classifiers of paper Table 4 (Petersen et al., NeurIPS 2024, Section 5.3).

- M1, M2, M3: fully connected ReLU networks with 5 hidden layers of width 100, 400 and
  1600 (`mlp`). The paper says "5-layer fully connected ReLU networks"; here that is read as
  five hidden ``Dense + ReLU`` layers followed by a linear ``Dense(10)`` output, so M1 has
  ``784*100+100 + 4*(100*100+100) + 100*10+10 = 119 910`` parameters.
- M4, M5: LeNet-5 (LeCun et al., 1998) with sigmoid (M4) or ReLU (M5) activations
  (`lenet5`): conv 5x5 "same" 6 -> avg-pool 2 -> conv 5x5 16 -> avg-pool 2 -> conv 5x5 120
  (a dense layer on the 5x5x16 maps) -> dense 84 -> dense 10; 61 706 parameters. The
  paper does not give its exact LeNet-5; this is the common modern form (average pooling
  without trainable subsampling coefficients, full C3 connectivity, no RBF output).

Every model maps ``(B, 28, 28)`` images to ``(B, 10)`` logits (no softmax: train with
``SparseCategoricalCrossentropy(from_logits=True)`` or a `NewtonLoss` of it). Inputs are
raw pixel values 0..255 (uint8 or float, as `keras_newton.datasets.load_mnist` returns
them): a ``Rescaling(1/255)`` layer inside the model scales them to [0, 1]. Pass
``rescale=False`` to feed images already scaled to [0, 1].
"""

import keras
from keras import layers

from keras_newton import _checks

MODELS = {
    "M1": ("mlp", 100),
    "M2": ("mlp", 400),
    "M3": ("mlp", 1600),
    "M4": ("lenet5", "sigmoid"),
    "M5": ("lenet5", "relu"),
}
NUM_CLASSES = 10
INPUT_SHAPE = (28, 28)


def _inputs(rescale):
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = inputs
    if rescale:
        x = layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    return inputs, x


def mlp(width, depth=5, num_classes=NUM_CLASSES, rescale=True, name=None):
    """Fully connected ReLU classifier: ``depth`` hidden layers of ``width`` units.

    ``Flatten -> depth x (Dense(width) + ReLU) -> Dense(num_classes)`` (logits); with the
    defaults and ``width`` 100 / 400 / 1600 these are Table 4's M1 / M2 / M3.

    Args:
        width: units per hidden layer.
        depth: number of hidden layers (5 in the paper).
        num_classes: number of output logits.
        rescale: include ``Rescaling(1/255)`` (inputs are raw pixels 0..255).
        name: model name, ``"mlp{depth}x{width}"`` by default.

    Returns:
        A functional `keras.Model` from ``(B, 28, 28)`` to ``(B, num_classes)`` logits.

    Example:

    ```python
    model = mlp(100)   # M1
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ```
    """
    width = _checks.check_positive_int("width", width)
    depth = _checks.check_positive_int("depth", depth)
    num_classes = _checks.check_positive_int("num_classes", num_classes)
    inputs, x = _inputs(rescale)
    x = layers.Flatten(name="flatten")(x)
    for i in range(depth):
        x = layers.Dense(width, activation="relu", name=f"dense_{i + 1}")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"mlp{depth}x{width}")


def lenet5(activation="relu", num_classes=NUM_CLASSES, rescale=True, name=None):
    """LeNet-5 for 28x28 digits with the given hidden activation (M4: sigmoid, M5: ReLU).

    ``Conv(6, 5x5, same) -> AvgPool(2) -> Conv(16, 5x5) -> AvgPool(2) -> Conv(120, 5x5)
    -> Flatten -> Dense(84) -> Dense(num_classes)`` (logits), every hidden layer followed
    by ``activation``. The first convolution pads 28x28 to LeNet's 32x32 field.

    Args:
        activation: ``"sigmoid"``, ``"relu"``, ``"tanh"`` (any Keras activation name).
        num_classes: number of output logits.
        rescale: include ``Rescaling(1/255)`` (inputs are raw pixels 0..255).
        name: model name, ``"lenet5_{activation}"`` by default.

    Returns:
        A functional `keras.Model` from ``(B, 28, 28)`` to ``(B, num_classes)`` logits.

    Example:

    ```python
    model = lenet5("sigmoid")   # M4
    ```
    """
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a Keras activation name; received "
                        f"{type(activation).__name__}.")
    keras.activations.get(activation)  # raises ValueError for unknown names
    num_classes = _checks.check_positive_int("num_classes", num_classes)
    inputs, x = _inputs(rescale)
    x = layers.Reshape((28, 28, 1), name="channels")(x)
    x = layers.Conv2D(6, 5, padding="same", activation=activation, name="c1")(x)
    x = layers.AveragePooling2D(2, name="s2")(x)
    x = layers.Conv2D(16, 5, activation=activation, name="c3")(x)
    x = layers.AveragePooling2D(2, name="s4")(x)
    x = layers.Conv2D(120, 5, activation=activation, name="c5")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(84, activation=activation, name="f6")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"lenet5_{activation}")


def classification_model(name, rescale=True):
    """Table 4's model ``"M1"`` .. ``"M5"`` (see the module docstring), uncompiled.

    Args:
        name: ``"M1"`` (MLP width 100), ``"M2"`` (400), ``"M3"`` (1600), ``"M4"`` (LeNet-5,
            sigmoid) or ``"M5"`` (LeNet-5, ReLU); case-insensitive.
        rescale: include ``Rescaling(1/255)`` (inputs are raw pixels 0..255).

    Example:

    ```python
    model = classification_model("M5")
    model.compile("adam", NewtonLoss(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True), "fisher"))
    ```
    """
    if not isinstance(name, str) or name.upper() not in MODELS:
        raise ValueError(
            f"name must be one of {', '.join(MODELS)} (paper Table 4); received {name!r}."
        )
    key = name.upper()
    kind, arg = MODELS[key]
    if kind == "mlp":
        return mlp(arg, rescale=rescale, name=key)
    return lenet5(arg, rescale=rescale, name=key)
