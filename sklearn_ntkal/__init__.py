"""Neural-tangent-kernel active learning for scikit-learn and modAL, on JAX."""

from .estimators import JaxNetClassifier, LinearizedClassifier
from .engine import KernelSpec, empirical_ntk
from .loop import ActiveLearningClassifier, area_under_budget_curve, aubc_scorer, run_active_learning
from .modal_compat import patch_modal
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
