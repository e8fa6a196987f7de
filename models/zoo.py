"""Reference CNN definitions that edgecnn is developed and tested against.

Each builder reproduces the layer structure of its source, takes keyword-only arguments, and builds
with Keras 3 by default or with any module that has the same layer API (``keras_module=tf_keras``).
Every layer has an explicit, unique name, so two builds of one builder have the same layer names
(weights can be copied by name, saved files are reproducible).

Example:
    >>> from models.zoo import REFERENCE_MODELS
    >>> model = REFERENCE_MODELS["cifar_cnn"]()
    >>> model.count_params(), model.get_layer("dense1").count_params()
    (703594, 590848)
"""
from __future__ import annotations

from typing import Callable

__all__ = [
    "mnist_cnn",
    "mnist_separable",
    "cifar_cnn",
    "cifar_cnn_gmp",
    "minimodel",
    "minimodel_mobile",
    "minimodel_bottleneck",
    "se_block",
    "se_cnn",
    "REFERENCE_MODELS",
]

MINIMODEL_UNITS = ("standard", "mobile", "bottleneck")


def _keras(keras_module):
    if keras_module is None:
        import keras

        return keras
    return keras_module


# --------------------------------------------------------------------------------------- MNIST CNN


def mnist_cnn(*, input_shape=(28, 28, 1), num_classes=10, width=32, dense_units=256, keras_module=None):
    """The MNIST CNN of the Keras depthwise-separable convolution tutorial (seed model).

    Conv2D(w, 3x3, relu) -> MaxPool 2 -> Conv2D(2w, 3x3, relu) -> MaxPool 2 -> Dropout 0.25 ->
    Flatten -> Dense(256, relu) -> Dense(num_classes, softmax). 431,242 parameters at the defaults.

    Args:
        input_shape: ``(H, W, C)``; the source uses ``(28, 28, 1)``.
        num_classes: units of the softmax layer.
        width: filters of the first conv; the second has ``2 * width``.
        dense_units: units of the hidden Dense layer.
        keras_module: ``keras`` (default, Keras 3) or ``tf_keras``.

    Returns:
        An uncompiled functional model named ``"mnist_cnn"``.

    Example:
        >>> mnist_cnn().count_params()
        431242
    """
    return _mnist(separable=False, input_shape=input_shape, num_classes=num_classes, width=width,
                  dense_units=dense_units, keras_module=keras_module, name="mnist_cnn")


def mnist_separable(*, input_shape=(28, 28, 1), num_classes=10, width=32, dense_units=256, keras_module=None):
    """:func:`mnist_cnn` with SeparableConv2D in place of both Conv2D (the same tutorial's variant).

    Example:
        >>> mnist_separable().count_params()
        414899
    """
    return _mnist(separable=True, input_shape=input_shape, num_classes=num_classes, width=width,
                  dense_units=dense_units, keras_module=keras_module, name="mnist_separable")


def _mnist(*, separable, input_shape, num_classes, width, dense_units, keras_module, name):
    k = _keras(keras_module)
    L = k.layers
    Conv = L.SeparableConv2D if separable else L.Conv2D
    inputs = k.Input(shape=tuple(input_shape), name="input")
    x = Conv(width, 3, activation="relu", name="conv1")(inputs)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = Conv(2 * width, 3, activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(2, name="pool2")(x)
    x = L.Dropout(0.25, name="dropout")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(dense_units, activation="relu", name="dense1")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return k.Model(inputs, outputs, name=name)


# --------------------------------------------------------------------------------------- CIFAR CNN


def cifar_cnn(*, input_shape=(32, 32, 3), num_classes=10, width=32, dense_units=1024, keras_module=None):
    """The seed notebook's CIFAR-10 CNN: a large Flatten -> Dense head (84% of the parameters).

    Conv2D w, w (3x3, valid, relu) -> MaxPool 2 -> Conv2D 2w, 2w -> MaxPool 2 -> Conv2D 2w ->
    Flatten -> Dense(1024, relu) -> Dense(num_classes, softmax). Exactly 703,594 parameters at the
    defaults, 590,848 of them in ``dense1``. Shipped untrained (2.8 MB of float32 weights).

    Args:
        input_shape: ``(H, W, C)``; the source uses ``(32, 32, 3)``.
        num_classes: units of the softmax layer.
        width: filters of the first two convs; the next three have ``2 * width``.
        dense_units: units of the hidden Dense layer.
        keras_module: ``keras`` (default, Keras 3) or ``tf_keras``.

    Returns:
        An uncompiled functional model named ``"cifar_cnn"``.
    """
    return _cifar(head="flatten", input_shape=input_shape, num_classes=num_classes, width=width,
                  dense_units=dense_units, keras_module=keras_module, name="cifar_cnn")


def cifar_cnn_gmp(*, input_shape=(32, 32, 3), num_classes=10, width=32, dense_units=1024, keras_module=None):
    """:func:`cifar_cnn` with GlobalMaxPooling2D in place of Flatten (the notebook's smaller head).

    Exactly 179,306 parameters at the defaults.

    Example:
        >>> cifar_cnn_gmp().count_params()
        179306
    """
    return _cifar(head="gmp", input_shape=input_shape, num_classes=num_classes, width=width,
                  dense_units=dense_units, keras_module=keras_module, name="cifar_cnn_gmp")


def _cifar(*, head, input_shape, num_classes, width, dense_units, keras_module, name):
    k = _keras(keras_module)
    L = k.layers
    inputs = k.Input(shape=tuple(input_shape), name="input")
    x = L.Conv2D(width, 3, activation="relu", name="conv1")(inputs)
    x = L.Conv2D(width, 3, activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(2 * width, 3, activation="relu", name="conv3")(x)
    x = L.Conv2D(2 * width, 3, activation="relu", name="conv4")(x)
    x = L.MaxPooling2D(2, name="pool2")(x)
    x = L.Conv2D(2 * width, 3, activation="relu", name="conv5")(x)
    if head == "gmp":
        x = L.GlobalMaxPooling2D(name="global_max_pool")(x)
    else:
        x = L.Flatten(name="flatten")(x)
    x = L.Dense(dense_units, activation="relu", name="dense1")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return k.Model(inputs, outputs, name=name)


# --------------------------------------------------------------------------------------- MiniModel


def minimodel(*, input_shape=(32, 32, 3), num_classes=10, width=32, keras_module=None):
    """The book's pre-activation residual MiniModel (Olafenwa, "Practical Deep Learning" ResNet).

    Stem Conv2D(w, 3x3, same); four stages of widths (w, 2w, 4w, 8w) with three residual units
    each; the first unit of stages 2-4 max-pools its main path and projects its shortcut with a
    strided 1x1 conv. A unit is BN -> ReLU -> Conv 3x3 -> BN -> ReLU -> Conv 3x3, added to the
    shortcut. Head: BN -> ReLU -> Dropout 0.25 -> AveragePooling2D 4 -> Flatten -> Dense softmax.
    4,374,538 parameters at ``width=32`` (shipped untrained: 17 MB); ``width=8`` is trained.

    Args:
        input_shape: ``(H, W, C)``; the source uses ``(32, 32, 3)``.
        num_classes: units of the softmax layer.
        width: filters of the stem and first stage.
        keras_module: ``keras`` (default, Keras 3) or ``tf_keras``.

    Returns:
        An uncompiled functional model named ``"minimodel"``.

    Example:
        >>> minimodel(width=8).count_params()
        276874
    """
    return _minimodel(unit="standard", input_shape=input_shape, num_classes=num_classes,
                      width=width, keras_module=keras_module, name="minimodel")


def minimodel_mobile(*, input_shape=(32, 32, 3), num_classes=10, width=32, keras_module=None):
    """:func:`minimodel` with each 3x3 conv of a unit replaced by a "mobile" depthwise unit.

    The mobile unit is DepthwiseConv2D 3x3 -> BN -> ReLU -> Conv2D 1x1 (MobileNet's separable block).
    """
    return _minimodel(unit="mobile", input_shape=input_shape, num_classes=num_classes,
                      width=width, keras_module=keras_module, name="minimodel_mobile")


def minimodel_bottleneck(*, input_shape=(32, 32, 3), num_classes=10, width=32, keras_module=None):
    """:func:`minimodel` with each 3x3 conv of a unit preceded by a 1x1 conv to half its input channels.

    The bottleneck unit is Conv2D 1x1 (in_channels // 2) -> BN -> ReLU -> Conv2D 3x3 (filters).
    """
    return _minimodel(unit="bottleneck", input_shape=input_shape, num_classes=num_classes,
                      width=width, keras_module=keras_module, name="minimodel_bottleneck")


def _minimodel(*, unit, input_shape, num_classes, width, keras_module, name):
    assert unit in MINIMODEL_UNITS, unit
    k = _keras(keras_module)
    L = k.layers
    inputs = k.Input(shape=tuple(input_shape), name="input")
    x = L.Conv2D(width, 3, padding="same", name="stem_conv")(inputs)
    for stage, filters in enumerate((width, 2 * width, 4 * width, 8 * width), start=1):
        for index in range(1, 4):
            pool = stage > 1 and index == 1
            x = _residual_unit(x, filters=filters, pool=pool, unit=unit, k=k, prefix=f"s{stage}u{index}")
    x = L.BatchNormalization(name="head_bn")(x)
    x = L.Activation("relu", name="head_relu")(x)
    x = L.Dropout(0.25, name="head_dropout")(x)
    x = L.AveragePooling2D(4, name="head_avgpool")(x)
    x = L.Flatten(name="head_flatten")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return k.Model(inputs, outputs, name=name)


def _residual_unit(inputs, *, filters, pool, unit, k, prefix):
    L = k.layers
    shortcut, x = inputs, inputs
    if pool:
        x = L.MaxPooling2D(2, name=f"{prefix}_pool")(x)
        shortcut = L.Conv2D(filters, 1, strides=2, padding="same", name=f"{prefix}_shortcut")(inputs)
    for i in (1, 2):
        x = L.BatchNormalization(name=f"{prefix}_bn{i}")(x)
        x = L.Activation("relu", name=f"{prefix}_relu{i}")(x)
        x = _conv3x3(x, filters=filters, unit=unit, k=k, name=f"{prefix}_conv{i}")
    return L.Add(name=f"{prefix}_add")([shortcut, x])


def _conv3x3(x, *, filters, unit, k, name):
    """One 3x3 conv of a residual unit, in the requested style."""
    L = k.layers
    if unit == "mobile":
        x = L.DepthwiseConv2D(3, padding="same", name=f"{name}_dw")(x)
        x = L.BatchNormalization(name=f"{name}_dw_bn")(x)
        x = L.Activation("relu", name=f"{name}_dw_relu")(x)
        return L.Conv2D(filters, 1, padding="same", name=f"{name}_pw")(x)
    if unit == "bottleneck":
        reduced = max(1, int(x.shape[-1]) // 2)
        x = L.Conv2D(reduced, 1, padding="same", name=f"{name}_reduce")(x)
        x = L.BatchNormalization(name=f"{name}_reduce_bn")(x)
        x = L.Activation("relu", name=f"{name}_reduce_relu")(x)
    return L.Conv2D(filters, 3, padding="same", name=name)(x)


# ---------------------------------------------------------------------------- squeeze-and-excitation


def se_block(x, *, ratio=16, keras_module=None, name="se"):
    """Squeeze-and-excitation block (Hu et al., 2018): reweight the channels of ``x``.

    GlobalAveragePooling2D -> Dense(c // ratio, relu) -> Dense(c, sigmoid) -> Reshape((1, 1, c)) ->
    Multiply([x, s]). The bottleneck has at least one unit.

    Args:
        x: a 4-D symbolic tensor ``(batch, H, W, c)``.
        ratio: channel reduction of the bottleneck Dense layer.
        keras_module: ``keras`` (default, Keras 3) or ``tf_keras``; must be the module ``x`` comes from.
        name: prefix of the block's layer names (must be unique within the model).

    Returns:
        A tensor of the same shape as ``x``.

    Example:
        >>> import keras
        >>> x = keras.Input(shape=(8, 8, 32))
        >>> keras.Model(x, se_block(x, ratio=16)).count_params()  # 32*2+2 + 2*32+32
        162
    """
    k = _keras(keras_module)
    L = k.layers
    channels = int(x.shape[-1])
    s = L.GlobalAveragePooling2D(name=f"{name}_squeeze")(x)
    s = L.Dense(max(1, channels // ratio), activation="relu", name=f"{name}_reduce")(s)
    s = L.Dense(channels, activation="sigmoid", name=f"{name}_expand")(s)
    s = L.Reshape((1, 1, channels), name=f"{name}_reshape")(s)
    return L.Multiply(name=f"{name}_scale")([x, s])


def se_cnn(*, input_shape=(32, 32, 3), num_classes=10, width=16, ratio=4, keras_module=None):
    """A small CNN with a squeeze-and-excitation block after each conv stage.

    Conv w -> SE -> MaxPool 2 -> Conv 2w -> SE -> MaxPool 2 -> Conv 4w -> SE -> GAP -> Dense softmax
    (all convs 3x3, same, relu). A test model for Multiply/Reshape/GAP in surgery, pruning and export.

    Args:
        input_shape: ``(H, W, C)``, e.g. ``(32, 32, 3)`` or ``(28, 28, 1)``.
        num_classes: units of the softmax layer.
        width: filters of the first conv; then ``2 * width`` and ``4 * width``.
        ratio: channel reduction inside each SE block.
        keras_module: ``keras`` (default, Keras 3) or ``tf_keras``.

    Returns:
        An uncompiled functional model named ``"se_cnn"``.
    """
    k = _keras(keras_module)
    L = k.layers
    inputs = k.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for stage, filters in enumerate((width, 2 * width, 4 * width), start=1):
        x = L.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{stage}")(x)
        x = se_block(x, ratio=ratio, keras_module=k, name=f"se{stage}")
        if stage < 3:
            x = L.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = L.GlobalAveragePooling2D(name="global_avg_pool")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return k.Model(inputs, outputs, name="se_cnn")


REFERENCE_MODELS: dict[str, Callable] = {
    "mnist_cnn": mnist_cnn,
    "mnist_separable": mnist_separable,
    "cifar_cnn": cifar_cnn,
    "cifar_cnn_gmp": cifar_cnn_gmp,
    "minimodel": minimodel,
    "minimodel_mobile": minimodel_mobile,
    "minimodel_bottleneck": minimodel_bottleneck,
    "se_cnn": se_cnn,
}
