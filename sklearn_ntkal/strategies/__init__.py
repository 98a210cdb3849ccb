"""Query strategies: NTK look-ahead, dynamicAL and the classical baselines, all modAL-callable."""

from .base import QueryStrategy
from .baselines import RandomQuery, UncertaintyQuery
from .diversity import BADGEQuery, CoresetQuery
from .dynamical import DynamicALQuery
from .lookahead import NTKLookAheadQuery
from .retrain import RetrainLookAheadQuery

__all__ = [
    "BADGEQuery",
    "CoresetQuery",
    "DynamicALQuery",
    "NTKLookAheadQuery",
    "QueryStrategy",
    "RandomQuery",
    "RetrainLookAheadQuery",
    "UncertaintyQuery",
]
