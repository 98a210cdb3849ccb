"""Diversity baselines on the network's own features: BADGE (gradient embeddings) and Coreset (k-center)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.budget import DEFAULT_MEMORY_BUDGET, bucket, rows_within
from ..engine.forward import FORWARD_ROWS, map_rows
from ..engine.losses import output_gradient, pseudo_labels
from ..engine.pytrees import as_argument
from .base import QueryStrategy


@jax.jit
def _outputs_and_features(network, params, x):
    """Network outputs ``f(x)`` and the inputs ``h`` of its last linear layer (one traced pass)."""
    return network(params, x), network.last_linear(params, x)[0]


def last_layer(clf, X):
    """Width ``d`` of the inputs of the fitted network's last linear layer, and whether that layer has a bias.

    Raises
    ------
    ValueError
        If the layer sees non-flat inputs: feature-based strategies need a
        dense output layer on flat features.
    """
    features, layer_params = jax.eval_shape(clf.network_.last_linear, clf.params_, X[:1])
    if len(features.shape) != 2:
        raise ValueError(
            f"the last linear layer of the network sees inputs of shape {features.shape[1:]}; "
            "feature-based strategies need a dense output layer on flat features"
        )
    return features.shape[1], len(layer_params) == 2


def penultimate_features(clf, X):
    """Outputs (n, C) and penultimate features (n, d) of a fitted JAX network, in chunks of rows.

    The features are the inputs of the last linear layer
    (:meth:`~sklearn_ntkal.networks.Network.last_linear`); the third value says
    whether that layer has a bias.
    """
    has_bias = last_layer(clf, X)[1]
    outputs, features = map_rows(functools.partial(_outputs_and_features, as_argument(clf.network_), clf.params_),
                                 [X])
    return outputs, features, has_bias


@functools.partial(jax.jit, static_argnums=1)
def _badge_rows(network, bias, params, temperature, x):
    """Factors ``r`` (m, C) and ``h`` (m, d) of the embeddings ``g = r ⊗ [h, 1]``, and ``||g||^2``.

    ``r = (softmax(f / T) - onehot(argmax f)) / T``, the gradient of the
    cross-entropy of the calibrated probabilities with respect to ``f`` at the
    network's own prediction. The bias' ``1`` is not stored: ``bias`` (1 or
    0) adds it to ``||[h, 1]||^2 = ||h||^2 + 1``.
    """
    outputs, features = _outputs_and_features(network, params, x)
    r = output_gradient("cross_entropy", outputs / temperature, pseudo_labels(outputs)) / temperature
    return r, features, jnp.sum(r * r, axis=1) * (jnp.sum(features * features, axis=1) + bias)


def _badge_distances(r, h, norms, bias, j):
    """``||g_x - g_j||^2`` for every row ``x`` with ``g = r ⊗ [h, 1]`` never formed: two matrix-vector products.

    ``<g_x, g_j> = <r_x, r_j> (<h_x, h_j> + bias)``, so ``||g_x - g_j||^2 =
    ||g_x||^2 + ||g_j||^2 - 2 <r_x, r_j> (<h_x, h_j> + bias)``, clipped at 0.
    """
    cross = (r @ r[j]) * (h @ h[j] + bias)
    return np.maximum(norms + norms[j] - 2.0 * cross, 0.0)


@jax.jit
def _coreset_rows(network, params, centres, x):
    """Penultimate features ``h`` (m, d), ``||h||^2`` and the squared distance of each row to its nearest centre."""
    h = network.last_linear(params, x)[0]
    sq = jnp.sum(h * h, axis=1)
    cross = jnp.dot(h, centres.T, precision=jax.lax.Precision.HIGHEST)
    block = sq[:, None] + jnp.sum(centres * centres, axis=1)[None, :] - 2.0 * cross
    return h, sq, jnp.maximum(jnp.min(block, axis=1), 0.0)


def _coreset_distances(h, sq, j):
    """``||h_x - h_j||^2`` for every row ``x`` (one matrix-vector product), clipped at 0."""
    return np.maximum(sq + sq[j] - 2.0 * (h @ h[j]), 0.0)


class BADGEQuery(QueryStrategy):
    """BADGE: k-means++ seeding on last-layer gradient embeddings (Ash et al., ICLR 2020).

    For a candidate ``x`` with penultimate features ``h_x`` (inputs of the last
    linear layer ``f = h W + b``) and hypothetical label ``y_hat =
    argmax_c f_c(x)``, the embedding is the gradient of the cross-entropy of
    the calibrated probabilities ``p = softmax(f / T)`` with respect to
    ``(W, b)``:

        g_x = r_x ⊗ [h_x, 1],     r_x = (p(x) - onehot(y_hat)) / T

    with ``T`` the classifier's fitted ``temperature_`` (1 when it has none).
    The ``1`` is the bias' share and is absent when the layer has no bias. The
    norm of ``g`` measures uncertainty, its direction diversity. The batch is
    chosen by k-means++ seeding: the first point is the one with the largest
    ``||g_x||`` (as in the authors' code), every next one is drawn with
    probability proportional to ``D(x)^2``, the squared distance to the
    nearest point already chosen.

    The paper's embedding is this cross-entropy gradient, and it is used
    whatever loss the network was trained with: a network fitted with MSE has
    logits near the one-hot targets, whose plain softmax is nearly uniform
    (at most ``e / (e + C - 1)``) and whose MSE residual ``f - onehot`` is no
    probability at all; its fitted temperature makes ``p`` meaningful, so one
    formula serves both losses.

    The ``m x (C d)`` embedding matrix is never formed: ``<g_x, g_y> =
    <r_x, r_y> (<h_x, h_y> + 1)``. One chunked forward pass gives ``r``, ``h``
    and ``||g||^2``; with ``D^2`` that is ``m (C + d + 2)`` float32 held.
    Each pick costs two matrix-vector products over them, ``O(m (C + d))``,
    so a batch of ``k`` costs ``O(k m (C + d))`` after the forward pass:
    memory and time linear in the pool. scikit-activeml's ``Badge`` uses
    ``r ⊗ h`` without the bias term; the authors' code does the same.
    Utilities returned are ``D(x)^2`` at the time each point was picked
    (``||g_x||^2`` for the first). If every remaining candidate coincides with
    a chosen one (all ``D^2 = 0``), the next pick is uniform among the
    unchosen.

    Parameters
    ----------
    random_state : int, RandomState or None
        Seeds the ``D^2`` draws.
    """

    requires_network = True
    requires_labeled = False
    _parameter_constraints = {"random_state": ["random_state"]}

    def __init__(self, random_state=None):
        self.random_state = random_state

    def _select(self, clf, X_labeled, y_labeled, X_candidates, n_instances, random_state):
        bias = float(last_layer(clf, X_candidates)[1])
        temperature = jnp.float32(getattr(clf, "temperature_", 1.0))
        r, h, norms = map_rows(functools.partial(_badge_rows, as_argument(clf.network_), bias, clf.params_,
                                                 temperature),
                               [X_candidates])
        return _kmeans_pp(functools.partial(_badge_distances, r, h, norms, np.float32(bias)), norms,
                          n_instances, random_state)


class CoresetQuery(QueryStrategy):
    """Coreset: k-center greedy on penultimate features (Sener & Savarese, ICLR 2018).

    With ``h`` the inputs of the network's last linear layer and the labelled
    points as initial centres, repeat ``k`` times

        x* = argmax_{x in U} min_{c in centres} ||h_x - h_c||,   centres <- centres ∪ {x*}

    the 2-approximation of the k-center problem the paper uses (its robust
    MIP refinement is not implemented). Utilities are the distances
    ``min_c ||h_x* - h_c||`` at the time of each pick, non-increasing along
    the batch. Ties go to the earlier candidate. Deterministic.

    One chunked forward pass gives, per candidate, ``h`` (``d`` floats),
    ``||h||^2`` and the squared distance to the nearest labelled point (a
    chunk of candidates against every labelled row is one GEMM, the chunk
    sized so that block fits the engine's memory budget; never a pool x
    labelled matrix). The ``m (d + 2)`` float32 held are updated by one
    matrix-vector product per pick: time ``O(m d (n_L + k))`` for ``n_L``
    labelled rows, memory linear in the pool.
    """

    requires_network = True
    requires_labeled = True

    def _select(self, clf, X_labeled, y_labeled, X_candidates, n_instances, random_state):
        width = last_layer(clf, X_candidates)[0]
        centres = penultimate_features(clf, X_labeled)[1]
        # Repeats of the first centre pad the centres to their bucket: nearest distances are unchanged.
        centres = jax.device_put(centres[np.minimum(np.arange(bucket(len(centres))), len(centres) - 1)])
        limit = min(FORWARD_ROWS, rows_within(DEFAULT_MEMORY_BUDGET, 4 * (centres.shape[0] + width)))
        h, sq, nearest = map_rows(functools.partial(_coreset_rows, as_argument(clf.network_), clf.params_, centres),
                                  [X_candidates], limit)
        positions, picked = _greedy_farthest(functools.partial(_coreset_distances, h, sq), nearest, n_instances)
        return positions, np.sqrt(picked)


def _greedy_farthest(distances, d, k):
    """``k`` times: take the row with the largest ``d`` (the first on ties), then ``d <- min(d, distances(j))``."""
    positions, picked = [], []
    for _ in range(k):
        j = int(np.argmax(d))
        positions.append(j)
        picked.append(float(d[j]))
        np.minimum(d, distances(j), out=d)
        d[j] = -np.inf
    return np.array(positions), np.array(picked)


def _kmeans_pp(distances, norms, k, rng):
    """k-means++ seeding: the largest ``norms`` first, then ``D^2`` sampling, ``D^2 <- min(D^2, distances(j))``."""
    j = int(np.argmax(norms))
    positions, picked = [j], [float(norms[j])]
    d = distances(j)
    for _ in range(k - 1):
        j, weight = _d2_draw(d.astype(np.float64), positions, rng)
        positions.append(j)
        picked.append(weight)
        np.minimum(d, distances(j), out=d)
    return np.array(positions), np.array(picked)


def _d2_draw(weights, chosen, rng):
    """A row drawn with probability proportional to ``weights`` (zeroed at the ``chosen`` rows), and its weight.

    Uniform among the unchosen rows when every weight is zero.
    """
    weights[chosen] = 0.0
    total = weights.sum()
    if total > 0:
        weights /= total
    else:
        weights[:] = 1.0 / (weights.shape[0] - len(chosen))
        weights[chosen] = 0.0
    j = int(rng.choice(weights.shape[0], p=weights))
    return j, weights[j] * total
