"""Diversity baselines on the network's own features: BADGE (gradient embeddings) and Coreset (k-center)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.forward import map_rows
from ..engine.losses import output_gradient
from .base import QueryStrategy

_BLOCK = 2**24  # entries of a distance block held at once


@functools.partial(jax.jit, static_argnums=0)
def _outputs_and_features(network, params, x):
    """Network outputs ``f(x)`` and the inputs ``h`` of its last linear layer (one traced pass)."""
    return network(params, x), network.last_linear(params, x)[0]


def penultimate_features(clf, X):
    """Outputs (n, C) and penultimate features (n, d) of a fitted JAX network, in chunks of rows.

    The features are the inputs of the last linear layer
    (:meth:`~sklearn_ntkal.networks.Network.last_linear`); the third value says
    whether that layer has a bias.
    """
    outputs, features = map_rows(functools.partial(_outputs_and_features, clf.network_, clf.params_), [X])
    if features.ndim != 2:
        raise ValueError(
            f"the last linear layer of the network sees inputs of shape {features.shape[1:]}; "
            "feature-based strategies need a dense output layer on flat features"
        )
    layer_params = jax.eval_shape(clf.network_.last_linear, clf.params_, X[:1])[1]
    return outputs, features, len(layer_params) == 2


@jax.jit
def _sq_dists(a, b):
    """Squared Euclidean distances between the rows of ``a`` (m, d) and ``b`` (n, d), clipped at 0."""
    sq = jnp.sum(a * a, axis=1)[:, None] + jnp.sum(b * b, axis=1)[None, :] - 2.0 * a @ b.T
    return jnp.maximum(sq, 0.0)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _gradient_factors(loss, has_bias, outputs, features):
    """Factors ``r`` (m, C) and ``[h, 1]`` (m, d + 1) of the embeddings ``g = r ⊗ [h, 1]``, and ``||g||^2``.

    ``r = dl/df`` at the network's own prediction ``onehot(argmax f)``; the
    column of ones (the bias' share) only when the layer has a bias.
    """
    r = output_gradient(loss, outputs, jax.nn.one_hot(jnp.argmax(outputs, axis=1), outputs.shape[1]))
    h = jnp.concatenate([features, jnp.ones((features.shape[0], 1), features.dtype)], axis=1) if has_bias else features
    return r, h, jnp.sum(r * r, axis=1) * jnp.sum(h * h, axis=1)


@jax.jit
def _embedding_sq_dists(r, h, norms, j):
    """``||g_x - g_j||^2`` for every row ``x``, with ``g = r ⊗ h`` never formed.

    ``<g_x, g_j> = <r_x, r_j> <h_x, h_j>``, so ``||g_x - g_j||^2 =
    ||g_x||^2 + ||g_j||^2 - 2 <r_x, r_j> <h_x, h_j>``.
    """
    cross = (r @ r[j]) * (h @ h[j])
    return jnp.maximum(norms + norms[j] - 2.0 * cross, 0.0)


class BADGEQuery(QueryStrategy):
    """BADGE: k-means++ seeding on last-layer gradient embeddings (Ash et al., ICLR 2020).

    For a candidate ``x`` with penultimate features ``h_x`` (inputs of the last
    linear layer ``f = h W + b``) and hypothetical label ``y_hat =
    argmax_c f_c(x)``, the gradient of the training loss with respect to
    ``(W, b)`` is

        g_x = r_x ⊗ [h_x, 1],     r_x = dl/df (f(x), onehot(y_hat))

    (``r = softmax(f) - onehot`` for cross-entropy, ``f - onehot`` for MSE; the
    ``1`` is the bias' share and is absent when the layer has no bias). Its
    norm measures uncertainty, its direction diversity. The batch is chosen
    by k-means++ seeding: the first point is the one with the largest
    ``||g_x||`` (as in the authors' code), every next one is drawn with
    probability proportional to ``D(x)^2``, the squared distance to the
    nearest point already chosen.

    The ``m x (C d)`` embedding matrix is never formed: distances use
    ``<g_x, g_y> = <r_x, r_y> (<h_x, h_y> + 1)``, so a pick costs
    ``O(m (C + d))``. scikit-activeml's ``Badge`` uses ``r ⊗ h`` without the
    bias term; the authors' code does the same. Utilities returned are
    ``D(x)^2`` at the time each point was picked (``||g_x||^2`` for the first).
    If every remaining candidate coincides with a chosen one (all ``D^2 = 0``),
    the next pick is uniform among the unchosen.

    Parameters
    ----------
    random_state : int, RandomState or None
        Seeds the ``D^2`` draws.
    """

    requires_network = True
    requires_labeled = False

    def __init__(self, random_state=None):
        self.random_state = random_state

    def _select(self, clf, X_labeled, y_labeled, X_candidates, n_instances, random_state):
        outputs, features, has_bias = penultimate_features(clf, X_candidates)
        r, h, norms = _gradient_factors(getattr(clf, "loss", "cross_entropy"), has_bias, outputs, features)
        return _kmeans_pp(lambda j, d: jnp.minimum(d, _embedding_sq_dists(r, h, norms, j)),
                          np.asarray(norms, dtype=np.float64), n_instances, random_state)


class CoresetQuery(QueryStrategy):
    """Coreset: k-center greedy on penultimate features (Sener & Savarese, ICLR 2018).

    With ``h`` the inputs of the network's last linear layer and the labelled
    points as initial centres, repeat ``k`` times

        x* = argmax_{x in U} min_{c in centres} ||h_x - h_c||,   centres <- centres ∪ {x*}

    the 2-approximation of the k-center problem the paper uses (its robust
    MIP refinement is not implemented). Utilities are the distances
    ``min_c ||h_x* - h_c||`` at the time of each pick, non-increasing along
    the batch. Ties go to the earlier candidate. Deterministic.
    """

    requires_network = True
    requires_labeled = True

    def _select(self, clf, X_labeled, y_labeled, X_candidates, n_instances, random_state):
        h = jnp.asarray(penultimate_features(clf, X_candidates)[1])
        centres = jnp.asarray(penultimate_features(clf, X_labeled)[1])
        step = max(1, _BLOCK // h.shape[0])
        nearest = functools.reduce(
            jnp.minimum,
            (jnp.min(_sq_dists(h, centres[i:i + step]), axis=1) for i in range(0, centres.shape[0], step)),
        )
        positions, sq = _greedy_farthest(
            lambda j, d: jnp.minimum(d, _sq_dists(h, h[j][None])[:, 0]), nearest, n_instances)
        return positions, np.sqrt(sq)


def _greedy_farthest(update, d, k):
    """``k`` times: take the row with the largest ``d``, then ``d <- update(j, d)``."""
    positions, picked = [], []
    for _ in range(k):
        j = int(jnp.argmax(d))
        positions.append(j)
        picked.append(float(d[j]))
        d = update(j, d).at[j].set(-jnp.inf)
    return np.array(positions), np.array(picked)


def _kmeans_pp(update, norms, k, rng):
    """k-means++ seeding: the largest ``norms`` first, then ``D^2`` sampling; ``update(j, d)`` adds centre ``j``."""
    j = int(np.argmax(norms))
    positions, picked = [j], [norms[j]]
    d = update(j, jnp.full(norms.shape, jnp.inf))
    chosen = np.zeros(norms.shape[0], dtype=bool)
    chosen[j] = True
    for _ in range(k - 1):
        weights = np.where(chosen, 0.0, np.asarray(d, dtype=np.float64))
        total = weights.sum()
        weights = weights / total if total > 0 else (~chosen) / np.count_nonzero(~chosen)
        j = int(rng.choice(weights.shape[0], p=weights))
        positions.append(j)
        picked.append(weights[j] * total)
        chosen[j] = True
        d = update(j, d)
    return np.array(positions), np.array(picked)
