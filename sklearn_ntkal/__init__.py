"""Neural-tangent-kernel active learning for scikit-learn and modAL, on JAX."""

from .ntk import KernelSpec, empirical_ntk

__version__ = "0.1.0"
__all__ = ["KernelSpec", "empirical_ntk"]
