"""Structured empirical NTK: each linear layer's share from input and output-cotangent Grams.

For a dense layer ``z = a W + b`` the share of that layer in
``Theta(x, x') = J(x) J(x')^T`` is ``(a a'^T + 1) * (delta delta'^T)``, where
``delta = d f / d z`` are the output cotangents (Novak, Sohl-Dickstein &
Schoenholz, "Fast Finite Width Neural Tangent Kernel", ICML 2022), so no
parameter-sized Jacobian is formed for dense layers. Convolutions (and dense
layers applied to non-flat inputs) use per-sample weight gradients, one
batched GEMM of input patches and cotangents each, joined so that one Gram
covers all of them, together with the per-sample gradients of any parameter
outside the linear layers.

The layers come from a *tape*: an object with ``rules`` (``(layer, rule,
out_dim)`` per linear layer in call order), ``sizes()`` and
``cotangents(network, params, x, directions)`` giving every layer's input and
output cotangents; :class:`~sklearn_ntkal.engine.traced.TracedNetwork` reads one
from the jaxpr of any ``apply_fn``.
"""

from __future__ import annotations

import jax.numpy as jnp

from .derivatives import parameter_gradients
from .pairing import _HIGHEST, directions, finish, pair, scale_block


def features(tape, network, params, x, kind, n_outputs):
    """Array features of ``x``, sample axis first: ``(dense, grads)``.

    ``dense`` holds ``(inputs, deltas)`` per dense layer in the order of
    ``tape.rules`` (deltas ``None`` for the output layer); ``grads`` joins
    the weight (and bias) gradients of every other layer, and the gradients
    of parameters outside the linear layers, into one (n, K, P) array, so
    that their Grams are one GEMM, or is ``None`` if there are none. Deltas
    and gradients carry a second axis over the K output directions of
    ``kind``.

    Rules are ``"output"`` for a layer on flat inputs whose output is the
    network's output (its cotangents are the output directions themselves,
    the same for every sample), ``"dense"`` for other layers on flat inputs
    (one position per sample: the gradient is an outer product) and
    ``"grad"`` for the rest.
    """
    m = directions(kind, n_outputs, x.dtype)
    taps, deltas, own = tape.cotangents(network, params, x, m)
    dense, grads = [], []
    for (layer, rule, _), a, d in zip(tape.rules, taps, deltas):
        if rule == "output":
            dense.append((a, None))
        elif rule == "dense":
            dense.append((a, d))
        else:
            grads.append(parameter_gradients(layer, a, d))
    grads += own
    return dense, (jnp.concatenate(grads, axis=-1) if grads else None)


def gram(rules, f1, f2, kind):
    """Kernel block from the :func:`features` of two chunks of inputs: (n1, n2, K, K) or (n1, n2).

    The output layer's cotangent Gram is ``M M^T`` for the directions ``M``:
    the identity for ``"full"`` and 1 after averaging (``"trace"``) or for
    the single ``"pntk"`` direction.
    """
    (dense1, grads1), (dense2, grads2) = f1, f2
    total = 0.0 if grads1 is None else pair(grads1, grads2, kind)
    dense_layers = [(layer, rule, out_dim) for layer, rule, out_dim in rules if rule != "grad"]
    for (layer, rule, out_dim), (a1, d1), (a2, d2) in zip(dense_layers, dense1, dense2):
        inputs = jnp.matmul(a1, a2.T, precision=_HIGHEST) + (1.0 if layer.use_bias else 0.0)
        if rule == "dense":
            total = total + scale_block(inputs, pair(d1, d2, kind))
        elif kind == "full":
            eye = jnp.eye(out_dim, dtype=inputs.dtype)
            total = total + inputs[:, None, :, None] * eye[None, :, None, :]
        else:
            total = total + inputs
    return finish(total)


def sample_elements(tape, n_directions):
    """Elements per sample of the features kept for Grams, and of the temporaries that build them.

    Returns ``(kept, transient)``: a dense layer keeps its input and K
    cotangents, a gradient layer K weight (and bias) gradients, a parameter
    outside the layers K gradients; building them takes every layer's input,
    output and K cotangents, and a gradient layer's input patches and
    gradients, twice (before and after they are joined; bias gradients, K per
    output channel, are left out as negligible).
    """
    layers, own = tape.sizes()
    kept = transient = 0
    for (a, out, w, patch_elements), (_, rule, _) in zip(layers, tape.rules):
        transient += a + 3 * n_directions * out
        if rule == "output":
            kept += a
        elif rule == "dense":
            kept += a + n_directions * out
        else:
            kept += n_directions * w
            transient += patch_elements + 2 * n_directions * w
    kept += n_directions * sum(own)
    transient += 2 * n_directions * sum(own)
    return kept, transient
