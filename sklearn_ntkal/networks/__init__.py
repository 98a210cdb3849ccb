"""JAX networks for the strategies: stax-style layers, built-in architectures, adapters and the `Network` wrapper."""

from .adapters import resolve_layer
from .layers import (
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    External,
    Flatten,
    Gelu,
    GlobalAvgPool,
    Layer,
    Relu,
    Reshape,
    Residual,
    Serial,
    Standardize,
    Tanh,
)
from .network import Network
from .architectures import PRESETS, cnn, mlp, resnet18, wide_resnet

__all__ = [
    "AvgPool", "BatchNorm", "Conv", "Dense", "External", "Flatten", "Gelu", "GlobalAvgPool", "Layer", "Network",
    "PRESETS", "Relu", "Reshape", "Residual", "Serial", "Standardize", "Tanh", "cnn", "mlp",
    "resnet18", "resolve_layer", "wide_resnet",
]
