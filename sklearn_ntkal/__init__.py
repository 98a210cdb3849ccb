"""Neural-tangent-kernel active learning for scikit-learn and modAL, on JAX."""

from .compat import patch_modal
from .estimators import JaxNetClassifier
from .ntk import KernelSpec, empirical_ntk
from .strategies import QueryStrategy

patch_modal()

__version__ = "0.1.0"
__all__ = ["JaxNetClassifier", "KernelSpec", "QueryStrategy", "empirical_ntk", "patch_modal"]
