"""CombResNet18: the Warcraft cost network of Vlastelica et al. (ICLR 2020)."""

import keras
from keras import layers

from keras_newton import _checks

__all__ = ["ChannelMean", "comb_resnet18"]


@keras.saving.register_keras_serializable(package="keras_newton")
class ChannelMean(layers.Layer):
    """Mean over the last (channel) axis: ``(B, H, W, C) -> (B, H, W)``.

    The last step of CombResNet18 (Vlastelica et al., ICLR 2020); a layer rather than a
    ``Lambda`` so that saved models load in safe mode.

    Example:

    ```python
    costs = ChannelMean()(feature_maps)          # (B, 12, 12, 64) -> (B, 12, 12)
    ```
    """

    def call(self, inputs):
        return keras.ops.mean(inputs, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])


def _basic_block(x, filters, name):
    """ResNet basic block (He et al., 2016): two 3x3 convs with BN, identity shortcut."""
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([x, y])
    return layers.ReLU(name=f"{name}_relu2")(y)


def comb_resnet18(grid=12, input_shape=(96, 96, 3), name="comb_resnet18"):
    """The CombResNet18 cost model of the Warcraft benchmark: map image -> grid costs.

    Vlastelica et al. (ICLR 2020), used by AlgoVision and the Newton losses paper
    (Tables 2-3): the stem and first stage of ResNet18, pooled to the grid:

        conv 7x7/2, 64 (no bias) -> BN -> ReLU -> max-pool 3x3/2
        -> layer1 = 2 basic blocks of 64 channels (3x3 convs, BN, identity shortcut)
        -> adaptive max-pool to (grid, grid) -> mean over the 64 channels

    Padding follows PyTorch's ResNet (3 pixels around the 7x7 conv, 1 around the max-pool),
    so a 96x96 image gives 48x48, then 24x24 feature maps, max-pooled 2x2 to 12x12.
    BatchNorm uses PyTorch's defaults (momentum 0.1 there, 0.9 in Keras; epsilon 1e-5).

    Non-negativity: the last operation of a basic block is a ReLU, and max-pooling and
    channel means of non-negative values are non-negative, so every predicted cost is
    ``>= 0`` by construction, without a final activation (as in the original model).
    Costs can be exactly 0; `keras_newton.paths.shortest_path` handles zero costs.

    Args:
        grid: side of the cost grid; the feature maps (``input/4``) are adaptively
            max-pooled to it (a plain 2x2 max-pool for 96x96 inputs and grid 12).
        input_shape: image shape ``(height, width, channels)``.
        name: model name.

    Returns:
        A functional `keras.Model` mapping ``(B, *input_shape)`` images to ``(B, grid,
        grid)`` costs.

    Example:

    ```python
    model = comb_resnet18()
    model.compile(
        keras.optimizers.Adam(5e-4),
        loss=keras_newton.losses.PathLoss("l1", relaxation=RelaxedBellmanFord()),
        metrics=[keras_newton.metrics.PerfectMatch()],
    )
    ```
    """
    grid = _checks.check_positive_int("grid", grid)
    if len(tuple(input_shape)) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels); received {input_shape!r}."
        )
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn1")(x)
    x = layers.ReLU(name="relu")(x)
    # Zero padding equals PyTorch's -inf padding here: the inputs are >= 0 after the ReLU.
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    x = _basic_block(x, 64, "layer1_0")
    x = _basic_block(x, 64, "layer1_1")
    height, width = x.shape[1], x.shape[2]
    if height is not None and width is not None and height % grid == 0 and width % grid == 0:
        x = layers.MaxPooling2D((height // grid, width // grid), name="adaptive_maxpool")(x)
    else:
        x = layers.AdaptiveMaxPooling2D((grid, grid), name="adaptive_maxpool")(x)
    costs = ChannelMean(name="channel_mean")(x)
    return keras.Model(inputs, costs, name=name)
