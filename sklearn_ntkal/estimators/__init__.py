"""Estimators: the JAX network classifier and the linearised (kernel-regression) model around it."""

from .classifier import JaxNetClassifier
from .linearized import LinearizedClassifier

__all__ = ["JaxNetClassifier", "LinearizedClassifier"]
