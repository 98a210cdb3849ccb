"""Structured empirical NTK: each linear layer's share from input and output-cotangent Grams.

For a dense layer ``z = a W + b`` the share of that layer in
``Theta(x, x') = J(x) J(x')^T`` is ``(a a'^T + 1) * (delta delta'^T)``, where
``delta = d f / d z`` are the output cotangents (Novak, Sohl-Dickstein &
Schoenholz, "Fast Finite Width Neural Tangent Kernel", ICML 2022), so no
parameter-sized Jacobian is formed for dense layers. Convolutions (and dense
layers applied to non-flat inputs) use per-sample weight gradients, one
batched GEMM of input patches and cotangents each, joined so that one Gram
covers all of them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .derivatives import is_product, linear_pullback, parameter_gradients
from .pairing import _HIGHEST, directions, finish, pair, scale_block


def plan(network, params, sample_shape, dtype):
    """Static description of the linear layers: one rule each, and per-sample sizes for chunking.

    Rules are hashable ``(rule, out_dim, use_bias)`` triples, in call order,
    so that they can be static arguments of compiled functions. The rule is
    ``"output"`` for a product layer (see :mod:`.derivatives`) on flat
    inputs whose output is the network's output (its cotangents are the
    output directions themselves, the same for every sample), ``"dense"``
    for other product layers on flat inputs (one position per sample: the
    gradient is an outer product) and ``"grad"`` for the rest.
    Sizes are ``(inputs, outputs, weights, input patches)`` in elements per
    sample.
    """
    captured = []

    def run(p, z):
        out, records = network.apply_tapped(p, z)
        captured[:] = [(r[3] is out, is_product(r[0]), getattr(r[0], "use_bias", False)) for r in records]
        return [(r[2], r[3], r[1][0], r[0].patches(r[2]) if is_product(r[0]) else r[2]) for r in records]

    one = jax.ShapeDtypeStruct((1,) + tuple(sample_shape), dtype)
    shapes = jax.eval_shape(run, params, one)
    rules = []
    for (is_output, product, use_bias), (a, out, _, _) in zip(captured, shapes):
        rule = ("output" if is_output else "dense") if product and a.ndim == 2 else "grad"
        rules.append((rule, out.shape[-1], bool(use_bias)))
    return tuple(rules), [(a.size, out.size, w.size, patches.size) for a, out, w, patches in shapes]


def features(network, rules, params, x, kind, n_outputs):
    """Array features of ``x``, sample axis first: ``(dense, grads)``.

    ``dense`` holds ``(inputs, deltas)`` per dense layer in the order of
    ``rules`` (deltas ``None`` for the output layer); ``grads`` joins the
    weight (and bias) gradients of every other layer into one (n, K, P)
    array, so that their Grams are one GEMM, or is ``None`` if there are
    none. Deltas and gradients carry a second axis over the K output
    directions of ``kind``.
    """
    _, records, taps, pullback = linear_pullback(network, params, x)
    m = directions(kind, n_outputs, x.dtype)
    deltas = jax.vmap(pullback, out_axes=1)(jnp.broadcast_to(m[:, None, :], (m.shape[0], x.shape[0], n_outputs)))
    dense, grads = [], []
    for (rule, _, _), (layer, *_), a, d in zip(rules, records, taps, deltas):
        if rule == "output":
            dense.append((a, None))
        elif rule == "dense":
            dense.append((a, d))
        else:
            grads.append(parameter_gradients(layer, a, d))
    return dense, (jnp.concatenate(grads, axis=-1) if grads else None)


def gram(rules, f1, f2, kind):
    """Kernel block from the :func:`features` of two chunks of inputs: (n1, n2, K, K) or (n1, n2).

    The output layer's cotangent Gram is ``M M^T`` for the directions ``M``:
    the identity for ``"full"`` and 1 after averaging (``"trace"``) or for
    the single ``"pntk"`` direction.
    """
    (dense1, grads1), (dense2, grads2) = f1, f2
    total = 0.0 if grads1 is None else pair(grads1, grads2, kind)
    dense_layers = [rule for rule in rules if rule[0] != "grad"]
    for (rule, out_dim, use_bias), (a1, d1), (a2, d2) in zip(dense_layers, dense1, dense2):
        inputs = jnp.matmul(a1, a2.T, precision=_HIGHEST) + (1.0 if use_bias else 0.0)
        if rule == "dense":
            total = total + scale_block(inputs, pair(d1, d2, kind))
        elif kind == "full":
            eye = jnp.eye(out_dim, dtype=inputs.dtype)
            total = total + inputs[:, None, :, None] * eye[None, :, None, :]
        else:
            total = total + inputs
    return finish(total)


def sample_elements(sizes, n_directions, rules):
    """Elements per sample of the features kept for Grams, and of the temporaries that build them.

    Returns ``(kept, transient)``: a dense layer keeps its input and K
    cotangents, a gradient layer K weight (and bias) gradients; building them
    takes every layer's input, output and K cotangents, and a gradient
    layer's input patches and gradients, twice (before and after they are
    joined; bias gradients, K per output channel, are left out as
    negligible).
    """
    kept = transient = 0
    for (a, out, w, patch_elements), (rule, _, _) in zip(sizes, rules):
        transient += a + 3 * n_directions * out
        if rule == "output":
            kept += a
        elif rule == "dense":
            kept += a + n_directions * out
        else:
            kept += n_directions * w
            transient += patch_elements + 2 * n_directions * w
    return kept, transient
