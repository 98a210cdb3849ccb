"""Built-in networks: MLP, small CNN, a WideResNet-style net and a ResNet-18 with BatchNorm, all with structured NTK rules."""

from __future__ import annotations

from .layers import AvgPool, BatchNorm, Conv, Dense, Flatten, Gelu, GlobalAvgPool, Relu, Residual, Serial, Tanh

_ACTIVATIONS = {"relu": Relu, "tanh": Tanh, "gelu": Gelu}


def _activation(name):
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}") from None


OUTPUT_SCALE = 0.1


def mlp(n_outputs, hidden_layer_sizes=(512, 512), activation="relu", use_bias=True, output_scale=OUTPUT_SCALE):
    """Multi-layer perceptron on flat inputs.

    Parameters
    ----------
    n_outputs : int
        Number of outputs (classes).
    hidden_layer_sizes : tuple of int, default=(512, 512)
        Widths of the hidden layers.
    activation : {"relu", "tanh", "gelu"}, default="relu"
    use_bias : bool, default=True
    output_scale : float, default=0.1
        Factor on the He-normal initial weights of the output layer. A small
        output at initialisation matters with MSE: a network fitted to few
        labels keeps its initial random function away from them (kernel
        regression on the residuals), which at full scale costs about 30
        points of digits accuracy with 100 labels.

    Returns
    -------
    Serial
    """
    layers = [Flatten()]
    for width in hidden_layer_sizes:
        layers += [Dense(width, use_bias), _activation(activation)]
    return Serial(*layers, Dense(n_outputs, use_bias, output_scale))


def cnn(n_outputs, channels=(32, 64), dense_width=128, activation="relu", output_scale=OUTPUT_SCALE):
    """Small convolutional network: [conv 3x3, activation, 2x2 average pool] per channel count, then dense.

    Inputs are NHWC images (the classifier reshapes flat rows given ``input_shape``).

    Parameters
    ----------
    n_outputs : int
    channels : tuple of int, default=(32, 64)
    dense_width : int, default=128
    activation : {"relu", "tanh", "gelu"}, default="relu"
    output_scale : float, default=0.1
        Factor on the initial output-layer weights; see :func:`mlp`.

    Returns
    -------
    Serial
    """
    layers = []
    for c in channels:
        layers += [Conv(c, (3, 3)), _activation(activation), AvgPool((2, 2))]
    return Serial(*layers, Flatten(), Dense(dense_width), _activation(activation), Dense(n_outputs, True, output_scale))


def _wide_block(in_channels, channels, strides):
    branch = Serial(Relu(), Conv(channels, (3, 3), strides), Relu(), Conv(channels, (3, 3)))
    needs_projection = strides != (1, 1) or in_channels != channels
    return Residual(branch, Serial(Conv(channels, (1, 1), strides)) if needs_projection else None)


def wide_resnet(n_outputs, depth=10, width=2, base_channels=16, output_scale=OUTPUT_SCALE):
    """WideResNet-style network (Zagoruyko & Komodakis, 2016) without BatchNorm.

    Three groups of ``(depth - 4) // 6`` pre-activation residual blocks with
    ``base_channels * width * (1, 2, 4)`` channels; the second and third groups
    halve the resolution. BatchNorm is left out so the network is a pure
    function of its parameters; :func:`resnet18` has BatchNorm, its statistics kept
    as state, never differentiated.

    Parameters
    ----------
    n_outputs : int
    depth : int, default=10
        ``6 k + 4`` for ``k`` blocks per group.
    width : int, default=2
    base_channels : int, default=16
    output_scale : float, default=0.1
        Factor on the initial output-layer weights; see :func:`mlp`.

    Returns
    -------
    Serial
    """
    if (depth - 4) % 6 or depth < 10:
        raise ValueError(f"depth must be 6k + 4 with k >= 1, got {depth}")
    blocks_per_group = (depth - 4) // 6
    layers = [Conv(base_channels, (3, 3))]
    in_channels = base_channels
    for group, factor in enumerate((1, 2, 4)):
        channels = base_channels * width * factor
        for block in range(blocks_per_group):
            strides = (2, 2) if group > 0 and block == 0 else (1, 1)
            layers.append(_wide_block(in_channels, channels, strides))
            in_channels = channels
    return Serial(*layers, Relu(), GlobalAvgPool(), Dense(n_outputs, True, output_scale))


def _basic_block(in_channels, channels, strides):
    branch = Serial(Conv(channels, (3, 3), strides, use_bias=False), BatchNorm(), Relu(),
                    Conv(channels, (3, 3), use_bias=False), BatchNorm())
    needs_projection = strides != (1, 1) or in_channels != channels
    shortcut = Serial(Conv(channels, (1, 1), strides, use_bias=False), BatchNorm()) if needs_projection else None
    return Serial(Residual(branch, shortcut), Relu())


def resnet18(n_outputs, base_channels=64, output_scale=OUTPUT_SCALE):
    """ResNet-18 with BatchNorm (He et al., 2016) in the CIFAR form the NTK look-ahead paper trains.

    A 3x3 convolution, BatchNorm and ReLU, then four stages of two basic
    blocks (two 3x3 convolutions with BatchNorm, an identity or projected
    shortcut, ReLU after the sum) with ``base_channels * (1, 2, 4, 8)``
    channels, the last three halving the resolution; global average pooling
    and a dense output layer. BatchNorm uses minibatch statistics in
    training and its running statistics everywhere else (predictions,
    kernels, gradients); only its scale and offset are parameters.

    Parameters
    ----------
    n_outputs : int
    base_channels : int, default=64
        64 is the paper's network; 16 is a quarter-width version that trains
        in minutes on a CPU.
    output_scale : float, default=0.1
        Factor on the initial output-layer weights; see :func:`mlp`.

    Returns
    -------
    Serial
    """
    layers = [Conv(base_channels, (3, 3), use_bias=False), BatchNorm(), Relu()]
    in_channels = base_channels
    for stage, factor in enumerate((1, 2, 4, 8)):
        channels = base_channels * factor
        for block in range(2):
            strides = (2, 2) if stage > 0 and block == 0 else (1, 1)
            layers.append(_basic_block(in_channels, channels, strides))
            in_channels = channels
    return Serial(*layers, GlobalAvgPool(), Dense(n_outputs, True, output_scale))


PRESETS = {"mlp": mlp, "cnn": cnn, "wide_resnet": wide_resnet, "resnet18": resnet18}
