"""Optimisers and the jitted minibatch step that trains a network with optax."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..engine.losses import per_sample_loss

#: Optimisers by name; ``make_optimizer`` also takes any optax transformation.
OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd, "rmsprop": optax.rmsprop}


@functools.lru_cache(maxsize=32)
def make_optimizer(optimizer, learning_rate, weight_decay):
    """An optax ``GradientTransformation`` from a name of ``OPTIMIZERS``, or one passed through unchanged.

    Cached, so equal settings give the same object and the jitted training
    step (which takes the optimiser as a static argument) is compiled once
    per network structure and optimiser.
    """
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if optimizer == "adamw":
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    base = OPTIMIZERS[optimizer](learning_rate)
    return optax.chain(optax.add_decayed_weights(weight_decay), base) if weight_decay else base


@functools.partial(jax.jit, static_argnames=("loss", "optimizer"))
def train_step(network, params, opt_state, x, y, mask, *, loss, optimizer):
    """One optimiser step on the masked minibatch ``(x, y)``: ``(params, opt_state, network, loss)``.

    The loss is the mean of the per-sample losses over the rows where
    ``mask`` is 1. The network is an argument (its constants are leaves),
    returned with any state its layers update in training mode, so one
    compiled step serves every network of the same structure and optimiser.
    """

    def objective(p):
        out, updated = network.apply_train(p, x, mask)
        per = per_sample_loss(loss, out, y)
        return jnp.sum(per * mask) / jnp.maximum(jnp.sum(mask), 1.0), updated

    (value, network), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, network, value


def run_epoch(network, params, opt_state, x, y, batch_size, rng, *, loss, optimizer):
    """One shuffled pass over ``(x, y)`` in minibatches of ``batch_size`` rows (the last one padded and masked).

    Every minibatch has the same shape whatever the number of rows, so the
    step is compiled once. Returns the new ``(params, opt_state, network)``
    and the sample-weighted mean loss.
    """
    n = x.shape[0]
    order = rng.permutation(n)
    weighted = []
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        mask = np.ones(batch_size, dtype=np.float32)
        if idx.size < batch_size:
            mask[idx.size:] = 0.0
            idx = np.concatenate([idx, np.repeat(idx[:1], batch_size - idx.size)])
        params, opt_state, network, value = train_step(network, params, opt_state, x[idx], y[idx], mask,
                                                       loss=loss, optimizer=optimizer)
        weighted.append(value * mask.sum())
    return params, opt_state, network, float(np.sum(jax.device_get(weighted))) / n
