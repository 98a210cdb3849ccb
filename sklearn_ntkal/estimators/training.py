"""Optimisers and the jitted minibatch step that trains a network with optax."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..engine.losses import per_sample_loss

_OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd, "rmsprop": optax.rmsprop}


@functools.lru_cache(maxsize=32)
def make_optimizer(optimizer, learning_rate, weight_decay):
    """An optax ``GradientTransformation`` from a name, or one passed through unchanged.

    Cached, so equal settings give the same object and the jitted training
    step is compiled once per network and optimiser.
    """
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)} or an optax GradientTransformation")
    if optimizer == "adamw":
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    base = _OPTIMIZERS[optimizer](learning_rate)
    return optax.chain(optax.add_decayed_weights(weight_decay), base) if weight_decay else base


@functools.lru_cache(maxsize=32)
def jitted_apply(apply_fn):
    """``jax.jit(apply_fn)``, compiled once per network."""
    return jax.jit(apply_fn)


@functools.lru_cache(maxsize=32)
def train_step(apply_fn, loss, optimizer):
    """Jitted ``(params, opt_state, x, y, mask) -> (params, opt_state, loss)`` for masked minibatches."""

    def objective(params, x, y, mask):
        per = per_sample_loss(loss, apply_fn(params, x), y)
        return jnp.sum(per * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    @jax.jit
    def step(params, opt_state, x, y, mask):
        value, grads = jax.value_and_grad(objective)(params, x, y, mask)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def run_epoch(step, params, opt_state, x, y, batch_size, rng):
    """One shuffled pass over ``(x, y)`` in minibatches of a fixed shape (the last one masked).

    Returns the new ``(params, opt_state)`` and the sample-weighted mean loss.
    """
    n = x.shape[0]
    size = min(batch_size, n)
    order = rng.permutation(n)
    weighted = []
    for start in range(0, n, size):
        idx = order[start:start + size]
        mask = np.ones(size, dtype=np.float32)
        if idx.size < size:
            mask[idx.size:] = 0.0
            idx = np.concatenate([idx, np.repeat(idx[:1], size - idx.size)])
        params, opt_state, value = step(params, opt_state, x[idx], y[idx], mask)
        weighted.append(value * mask.sum())
    return params, opt_state, float(jnp.sum(jnp.stack(weighted))) / n
