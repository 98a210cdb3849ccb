"""Neural-tangent-kernel active learning for scikit-learn and modAL, on JAX."""

from .compat import patch_modal
from .estimators import JaxNetClassifier, LinearizedClassifier
from .loop import ActiveLearningClassifier, area_under_budget_curve, aubc_scorer, run_active_learning
from .ntk import KernelSpec, empirical_ntk
from .strategies import (
    BADGEQuery,
    CoresetQuery,
    DynamicALQuery,
    NTKLookAheadQuery,
    QueryStrategy,
    RandomQuery,
    RetrainLookAheadQuery,
    UncertaintyQuery,
)

patch_modal()

__version__ = "0.1.0"
__all__ = [
    "ActiveLearningClassifier",
    "BADGEQuery",
    "CoresetQuery",
    "DynamicALQuery",
    "JaxNetClassifier",
    "KernelSpec",
    "LinearizedClassifier",
    "NTKLookAheadQuery",
    "QueryStrategy",
    "RandomQuery",
    "RetrainLookAheadQuery",
    "UncertaintyQuery",
    "area_under_budget_curve",
    "aubc_scorer",
    "empirical_ntk",
    "patch_modal",
    "run_active_learning",
]
