"""Estimators: the JAX network classifier and the linearised (kernel-regression) model around it."""

from .classifier import JaxNetClassifier

__all__ = ["JaxNetClassifier"]
