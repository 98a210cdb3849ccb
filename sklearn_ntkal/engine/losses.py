"""Losses of a network's outputs against one-hot targets, their output gradients and pseudo-labels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

LOSSES = ("cross_entropy", "mse")


def per_sample_loss(loss, outputs, targets):
    """Per-sample loss of ``outputs`` (n, C) against one-hot ``targets`` (n, C).

    ``"cross_entropy"``: ``-sum_c y_c log softmax(f)_c``;
    ``"mse"``: ``0.5 * sum_c (f_c - y_c)^2`` (the look-ahead paper's choice).
    """
    if loss == "cross_entropy":
        return optax.softmax_cross_entropy(outputs, targets)
    if loss == "mse":
        return 0.5 * jnp.sum((outputs - targets) ** 2, axis=-1)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def output_gradient(loss, outputs, targets):
    """``r = d l / d f`` per sample: ``softmax(f) - y`` for cross-entropy, ``f - y`` for MSE."""
    if loss == "cross_entropy":
        return jax.nn.softmax(outputs, axis=-1) - targets
    if loss == "mse":
        return outputs - targets
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def pseudo_labels(outputs):
    """Hard pseudo-labels ``one_hot(argmax_c f_c)`` of outputs (n, C)."""
    return jax.nn.one_hot(jnp.argmax(outputs, axis=-1), outputs.shape[-1], dtype=outputs.dtype)


def residuals(loss, outputs, targets=None):
    """``r = dl/df`` against one-hot ``targets``, or against :func:`pseudo_labels` when ``targets`` is None."""
    return output_gradient(loss, outputs, pseudo_labels(outputs) if targets is None else targets)
