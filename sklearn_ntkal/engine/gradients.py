"""Per-sample loss gradients in chunks: squared norms, inner products and sums, never a pool x labelled kernel.

A loss gradient ``g_x = d l(f(x; theta), t) / d theta`` is handled through a
*gradient map*, a small frozen dataclass that says which parameters are
differentiated and how a chunk's per-sample gradients are represented:

- :class:`LayerGradients`: the linear layers of a
  :class:`~sklearn_ntkal.networks.Network`, read from its tape. For a dense
  layer ``z = a W + b`` the gradient is the outer product ``a~ delta^T`` with
  ``a~ = [a, 1]`` and the output cotangent ``delta = dl/dz``, so it is held as
  the factors ``(a~, delta)`` and ``||g||^2 = ||a~||^2 ||delta||^2``: no
  parameter-sized vector per sample (the rule of Goodfellow, "Efficient
  per-example gradient computations", 2015, and of the structured NTK of
  Novak et al., ICML 2022). Convolutions keep per-sample weight gradients,
  formed as input patches times output cotangents. With ``last_only`` it is
  the output layer alone, where ``delta = r = dl/df`` and
  ``||g_x||^2 = ||r||^2 (||h||^2 + 1)`` on the penultimate features ``h``.
- :class:`FlatGradients`: any ``apply_fn``; per-sample gradients as flat
  vectors (n, P), by ``vmap`` of a vector-Jacobian product.

The chunked passes (:func:`summed_gradient`, :func:`gradient_statistics`,
:func:`inner_products`) work with either map, jitted at the chunk boundary;
the passes over the pool split their rows over JAX processes
(:mod:`~.processes`), the summed gradient of the labelled set runs
replicated.
A map is a pytree whose leaves are its network's constants (its ``apply_fn``
must be a pytree argument: :func:`~.pytrees.as_argument`), so every network
of the same structure shares the compiled programs. Chunks have one padded
shape, so a pass compiles once per shape; their length comes from a memory
budget in bytes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from .budget import padded_chunks, rows_within
from .derivatives import is_product, linear_pullback, parameter_gradients
from .forward import activation_elements, map_rows
from .losses import per_sample_loss, pseudo_labels, residuals
from .processes import split_rows
from .pytrees import as_argument

_HIGHEST = lax.Precision.HIGHEST


@dataclass(frozen=True)
class FlatGradients:
    """Loss gradients with respect to every parameter as flat vectors (``ravel_pytree`` order); any network.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, x) -> (n, C)`` outputs.
    loss : {"cross_entropy", "mse"}
    """

    apply_fn: Callable
    loss: str = "cross_entropy"

    def __post_init__(self):
        object.__setattr__(self, "apply_fn", as_argument(self.apply_fn))

    def embed(self, params, x, targets=None):
        """Per-sample gradients (n, P) of ``l(f(x_i), t_i)``; pseudo-labels when ``targets`` is None."""

        def one(xi, ti):
            out, pullback = jax.vjp(lambda p: self.apply_fn(p, xi[None])[0], params)
            (grad,) = pullback(residuals(self.loss, out, ti))
            return ravel_pytree(grad)[0]

        return jax.vmap(one, in_axes=(0, None if targets is None else 0))(x, targets)

    def summed(self, params, x, targets, mask):
        """Flat gradient (P,) of ``sum_i mask_i l(f(x_i), t_i)`` by one backward pass."""

        def total(p):
            outputs = self.apply_fn(p, x)
            targets_ = pseudo_labels(outputs) if targets is None else targets
            return jnp.sum(per_sample_loss(self.loss, outputs, targets_) * mask)

        return ravel_pytree(jax.grad(total)(params))[0]

    def project(self, params, x, v):
        """``<v, g_x>`` with pseudo-labels by forward mode, ``r_x^T (J_x v)``: no per-sample gradient is formed."""
        tangent = ravel_pytree(params)[1](v)
        outputs, jv = jax.jvp(lambda p: self.apply_fn(p, x), (params,), (tangent,))
        return jnp.sum(residuals(self.loss, outputs) * jv, axis=-1)

    @staticmethod
    def sq_norms(rep):
        """``||g_i||^2`` per sample."""
        return jnp.sum(rep * rep, axis=-1)

    @staticmethod
    def inner(rep, v):
        """``<v, g_i>`` per sample."""
        return jnp.matmul(rep, v, precision=_HIGHEST)


@dataclass(frozen=True)
class LayerGradients:
    """Loss gradients of the linear layers of a :class:`~sklearn_ntkal.networks.Network`, layer by layer.

    A chunk's representation is a list with one entry per layer: the factors
    ``(a~, delta)`` of a dense layer on flat inputs (its gradient is
    ``a~ delta^T``), or ``(g,)`` per-sample weight-and-bias gradients of any
    other linear layer. A vector in this space (e.g. a summed gradient) is the
    matching list of matrices ``sum_i a~_i delta_i^T`` and flat vectors, so

    ``||g_x||^2 = sum_dense ||a~_x||^2 ||delta_x||^2 + sum_other ||g_x||^2``,
    ``<V, g_x> = sum_dense a~_x^T V delta_x + sum_other <v, g_x>``.

    Exact for all parameters when the tape sees every parameter once (see
    :func:`tape_covers_parameters`).

    Parameters
    ----------
    apply_fn : sklearn_ntkal.networks.Network
    loss : {"cross_entropy", "mse"}
    last_only : bool, default=False
        Only the last linear layer called (the output layer of the built-in
        networks): ``delta = r`` there, and ``a`` are the penultimate features
        of :meth:`~sklearn_ntkal.networks.Network.last_linear`.
    """

    apply_fn: Callable
    loss: str = "cross_entropy"
    last_only: bool = False

    def __post_init__(self):
        object.__setattr__(self, "apply_fn", as_argument(self.apply_fn))

    def embed(self, params, x, targets=None):
        """Per-layer factors of the per-sample gradients; pseudo-labels when ``targets`` is None."""
        out, records, inputs, pullback = linear_pullback(self.apply_fn, params, x)
        deltas = pullback(residuals(self.loss, out, targets))
        layers = list(zip(records, inputs, deltas))
        return [_layer_factors(layer, layer_params, a, d)
                for (layer, layer_params, _, _), a, d in (layers[-1:] if self.last_only else layers)]

    def summed(self, params, x, targets, mask):
        """Summed gradient ``sum_i mask_i g_i`` in the per-layer form."""
        return [jnp.matmul(f[0].T, f[1] * mask[:, None], precision=_HIGHEST) if len(f) == 2
                else jnp.matmul(mask, f[0], precision=_HIGHEST)
                for f in self.embed(params, x, targets)]

    def project(self, params, x, v):
        """``<V, g_x>`` with pseudo-labels."""
        return self.inner(self.embed(params, x), v)

    @staticmethod
    def sq_norms(rep):
        """``||g_i||^2`` per sample, summed over layers."""
        return sum(jnp.sum(f[0] * f[0], axis=-1) * (jnp.sum(f[1] * f[1], axis=-1) if len(f) == 2 else 1.0)
                   for f in rep)

    @staticmethod
    def inner(rep, v):
        """``<V, g_i>`` per sample, summed over layers."""
        return sum(jnp.sum(jnp.matmul(f[0], w, precision=_HIGHEST) * f[1], axis=-1) if len(f) == 2
                   else jnp.matmul(f[0], w, precision=_HIGHEST)
                   for f, w in zip(rep, v))


def _layer_factors(layer, layer_params, a, delta):
    """``(a~, delta)`` for a product layer on flat inputs (one position per sample), else ``(per-sample [weight, bias] gradients,)``."""
    has_bias = len(layer_params) > 1
    if a.ndim == 2 and is_product(layer):
        return (jnp.concatenate([a, jnp.ones_like(a[:, :1])], axis=1) if has_bias else a, delta)
    return (parameter_gradients(layer, a, delta[:, None])[:, 0],)


def tape_covers_parameters(network, params, sample_shape, dtype):
    """Whether ``network``'s tape records every parameter exactly once, in layers with a derivative rule.

    Then :class:`LayerGradients` covers all parameters; otherwise (layers
    without a tape, shared weights, non-Network ``apply_fn``) use
    :class:`FlatGradients`.
    """
    if not hasattr(network, "apply_tapped"):
        return False
    layers = []

    def taped(p, z):
        records = network.apply_tapped(p, z)[1]
        layers[:] = [record[0] for record in records]
        return [record[1] for record in records]

    seen = jax.eval_shape(taped, params, jax.ShapeDtypeStruct((1,) + tuple(sample_shape), dtype))
    leaves = jax.tree_util.tree_leaves
    return (all(is_product(layer) or hasattr(layer, "per_sample_gradients") for layer in layers)
            and sum(leaf.size for leaf in leaves(seen)) == sum(leaf.size for leaf in leaves(params)))


def stored_elements(gmap, params, sample_shape, dtype):
    """Numbers per sample in ``gmap``'s representation of a chunk's gradients."""
    rep = jax.eval_shape(gmap.embed, params, jax.ShapeDtypeStruct((1,) + tuple(sample_shape), dtype))
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(rep))


def chunk_rows(gmap, params, sample_shape, dtype, memory_budget):
    """Samples per chunk so that one chunk's pass fits ``memory_budget`` bytes (at least 1).

    A sample is charged ``itemsize * (2 A + 3 S)`` bytes with ``A`` its
    :func:`activation_elements` and ``S`` its :func:`stored_elements`
    (the representation plus cotangent temporaries).
    """
    elements = 2 * activation_elements(gmap.apply_fn, params, sample_shape, dtype)
    elements += 3 * stored_elements(gmap, params, sample_shape, dtype)
    return rows_within(memory_budget, np.dtype(dtype).itemsize * elements)


@jax.jit
def _summed(gmap, params, x, targets, mask):
    return gmap.summed(params, x, targets, mask)


@jax.jit
def _statistics(gmap, params, x, v):
    rep = gmap.embed(params, x)
    return gmap.sq_norms(rep), gmap.inner(rep, v), rep


@jax.jit
def _project(gmap, params, x, v):
    return gmap.project(params, x, v)


@jax.jit
def _inner(gmap, rep, v):
    return gmap.inner(rep, v)


def summed_gradient(gmap, params, X, targets, chunk):
    """``g = sum_i grad_theta l(f(x_i), t_i)`` over the rows of ``X`` in chunks.

    Parameters
    ----------
    gmap : LayerGradients or FlatGradients
    params : pytree
    X : ndarray of shape (n, ...)
    targets : ndarray of shape (n, C) or None
        One-hot targets; None uses the network's pseudo-labels.
    chunk : int
        Samples per chunk.

    Returns
    -------
    A vector in ``gmap``'s form: flat (P,) or a list of per-layer arrays.
    """
    total = None
    for start, stop, (x, t) in padded_chunks([X, targets], chunk):
        mask = (np.arange(x.shape[0]) < stop - start).astype(X.dtype)
        part = _summed(gmap, params, x, t, mask)
        total = part if total is None else jax.tree_util.tree_map(jnp.add, total, part)
    return total


def gradient_statistics(gmap, params, X, v, chunk, keep=False):
    """``||g_x||^2`` and ``<v, g_x>`` for every row of ``X`` with pseudo-labels, in one chunked pass.

    With several JAX processes each computes its share of the rows and
    receives the others' (:func:`~.processes.split_rows`); kept
    representations are those of its own share.

    Parameters
    ----------
    gmap : LayerGradients or FlatGradients
    params : pytree
    X : ndarray of shape (m, ...)
    v : vector in ``gmap``'s form
        E.g. a :func:`summed_gradient`.
    chunk : int
    keep : bool, default=False
        Also return the chunks' gradient representations for
        :func:`inner_products` (``m`` times :func:`stored_elements` numbers).

    Returns
    -------
    sq_norms : ndarray of shape (m,)
    inner : ndarray of shape (m,)
    kept : list of (start, stop, representation) or None
    """
    kept = [] if keep else None

    def local(x_rows):
        sq, dots = np.empty(x_rows.shape[0]), np.empty(x_rows.shape[0])
        for start, stop, (x,) in padded_chunks([x_rows], chunk):
            s, d, rep = _statistics(gmap, params, x, v)
            sq[start:stop], dots[start:stop] = np.asarray(s)[: stop - start], np.asarray(d)[: stop - start]
            if keep:
                kept.append((start, stop, rep))
        return sq, dots

    sq, dots = split_rows(local, [X])
    return sq, dots, kept


def inner_products(gmap, params, X, v, chunk, kept=None):
    """``<v, g_x>`` for every row of ``X`` with pseudo-labels.

    From ``kept`` representations (one product per chunk) when given, else by
    a chunked pass of ``gmap.project`` (forward mode for :class:`FlatGradients`);
    split over JAX processes as :func:`gradient_statistics` is.

    Returns
    -------
    ndarray of shape (m,)
    """
    def local(x_rows):
        out = np.empty(x_rows.shape[0])
        if kept is not None:
            for start, stop, rep in kept:
                out[start:stop] = np.asarray(_inner(gmap, rep, v))[: stop - start]
            return out
        for start, stop, (x,) in padded_chunks([x_rows], chunk):
            out[start:stop] = np.asarray(_project(gmap, params, x, v))[: stop - start]
        return out

    return split_rows(local, [X])


@functools.partial(jax.jit, static_argnames=("loss",))
def _residuals(apply_fn, params, x, targets, *, loss):
    return residuals(loss, apply_fn(params, x), targets)


def output_residuals(apply_fn, loss, params, X, targets, chunk):
    """``r = dl/df`` (n, C) for every row of ``X`` in chunks; pseudo-labels when ``targets`` is None."""
    return map_rows(functools.partial(_residuals, as_argument(apply_fn), params, loss=loss), [X, targets], chunk)


def _flatten_map(gmap):
    return (gmap.apply_fn,), tuple(vars(gmap).items())[1:]


def _unflatten_map(cls, static, children):
    gmap = object.__new__(cls)
    for name, value in (("apply_fn", children[0]),) + static:
        object.__setattr__(gmap, name, value)
    return gmap


for _map in (FlatGradients, LayerGradients):
    jax.tree_util.register_pytree_node(_map, _flatten_map, functools.partial(_unflatten_map, _map))
