"""General empirical NTK for any ``apply_fn``: Jacobian contraction and NTK-vector products.

These are the fallbacks for networks without structured rules (Novak et al.,
ICML 2022, implementations 1 and 2), written on public JAX APIs only:

- ``"jacobian"``: per-sample Jacobians ``J`` (n, K, P), ``vmap`` over samples
  of K reverse-mode passes of that sample alone (one gradient per sample for
  the pseudo-NTK), then ``Theta = J J'^T`` as one Gram;
- ``"ntvp"``: columns ``J (J'^T e)`` by one VJP and one JVP per basis
  cotangent ``e`` of the second input; nothing parameter-sized per pair is kept.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .pairing import directions, finish, pair


def directed(apply_fn, kind, n_outputs):
    """``x -> M f(x)^T``: outputs along the K directions of ``kind``, shape (n, K)."""

    def fn(params, x):
        out = apply_fn(params, x)
        return out @ directions(kind, n_outputs, out.dtype).T

    return fn


def jacobian_features(apply_fn, params, x, kind, n_outputs):
    """Flattened per-sample Jacobians ``d (M f(x_i)) / d theta``, shape (n, K, P).

    ``vmap`` over samples of the Jacobian of one sample's K directed outputs:
    K vector-Jacobian products per sample, so the cost grows with n, where
    the Jacobian of the whole batch's outputs would take n K backward passes
    through the whole batch.
    """
    fn = directed(apply_fn, kind, n_outputs)

    def one(xi):
        jac = jax.jacrev(lambda p: fn(p, xi[None])[0])(params)
        return jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in jax.tree_util.tree_leaves(jac)], axis=-1)

    return jax.vmap(one)(x)


def jacobian_gram(f1, f2, kind):
    """``J1 J2^T`` paired as ``kind`` asks."""
    return finish(pair(f1, f2, kind))


def ntvp_gram(apply_fn, params, x1, x2, kind, n_outputs):
    """Kernel block by NTK-vector products: one VJP at ``x2`` and one JVP at ``x1`` per basis cotangent."""
    fn = directed(apply_fn, kind, n_outputs)
    out2, vjp2 = jax.vjp(lambda p: fn(p, x2), params)
    n2, k = out2.shape

    def column(cotangent):
        (tangent,) = vjp2(cotangent)
        return jax.jvp(lambda p: fn(p, x1), (params,), (tangent,))[1]

    basis = jnp.eye(n2 * k, dtype=out2.dtype).reshape(n2 * k, n2, k)
    cols = jax.vmap(column)(basis).reshape(n2, k, x1.shape[0], k)
    full = cols.transpose(2, 0, 3, 1)
    if kind == "full":
        return full
    return jnp.trace(full, axis1=2, axis2=3) / k


def n_parameters(params):
    """Number of scalar parameters in a pytree."""
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
