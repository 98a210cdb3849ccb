"""Query strategies: NTK look-ahead, dynamicAL and the classical baselines, all modAL-callable."""

from .base import QueryStrategy

__all__ = ["QueryStrategy"]
