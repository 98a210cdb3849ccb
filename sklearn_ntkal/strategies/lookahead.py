"""`NTKLookAheadQuery`: look-ahead active learning with the empirical NTK (batch, sequential and hybrid)."""

from __future__ import annotations

import contextlib
import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from .. import kernel_regression as kr
from ..engine import DEFAULT_MEMORY_BUDGET, KINDS
from ..estimators.linearized import OUTPUT_SPACES, LinearizedClassifier, to_probabilities
from ..jax_compat import enable_x64
from .base import QueryStrategy, _labeled_mask

OBJECTIVES = ("mlmoc", "output_change", "emoc", "eer")
MODES = ("batch", "sequential", "hybrid")
BASELINES = ("network", "linearized")


def draw_candidates(n_pool, n_candidates, rng):
    """Sorted positions of a random subset of ``n_candidates`` pool rows (all rows if ``None`` or larger)."""
    if n_candidates is None or n_candidates >= n_pool:
        return np.arange(n_pool)
    return np.sort(rng.choice(n_pool, n_candidates, replace=False))


def lookahead_scores(objective, after, base_probs, weights, output_space):
    """Primary and secondary scores of look-ahead outputs (higher is better for both).

    Parameters
    ----------
    objective : {"mlmoc", "output_change", "emoc", "eer"}
    after : array of shape (b, Y, m, C)
        Outputs on U after adding each of ``b`` candidates with each of ``Y``
        hypothetical labels (``Y = 1``: the most likely label ``y^(x)``).
    base_probs : array of shape (m, C)
        Class probabilities of the baseline ``b(U)``.
    weights : array of shape (b, Y)
        Label weights: ``p(y | x)`` for ``"emoc"``, ones otherwise.
    output_space : {"logits", "probabilities"}

    Returns
    -------
    primary : array of shape (b,)
        ``"mlmoc"``: ``(1/|U|) sum_u 1[argmax f~_{L+(x,y^)}(u) != argmax b(u)]``;
        ``"output_change"``: ``||p~_{L+(x,y^)}(U) - p_b(U)||_F``;
        ``"emoc"``: ``sum_y p(y|x) ||p~_{L+(x,y)}(U) - p_b(U)||_F``;
        ``"eer"``: ``-(1/|U|) sum_u (1 - max_c p~_{L+(x,y^)}(u)_c)``.
    change : array of shape (b,)
        The (expected) output change, the tie-breaker of the discrete MLMOC score.
    """
    probs = to_probabilities(after, output_space)
    change = jnp.sum(weights * jnp.sqrt(jnp.sum((probs - base_probs) ** 2, axis=(-2, -1))), axis=1)
    if objective == "mlmoc":
        flips = jnp.argmax(after[:, 0], axis=-1) != jnp.argmax(base_probs, axis=-1)
        return jnp.mean(flips, axis=-1, dtype=change.dtype), change
    if objective == "eer":
        return -jnp.mean(1.0 - jnp.max(probs[:, 0], axis=-1), axis=-1), change
    return change, change


def rank(primary, secondary, tiebreak):
    """Positions ordered by ``primary`` (descending), then ``secondary``, then a random ``tiebreak`` key.

    Never by array order: exact ties in both scores fall to ``tiebreak``, a
    permutation drawn from the strategy's ``random_state``.
    """
    return np.lexsort((tiebreak, -np.asarray(secondary), -np.asarray(primary)))


def check_choice(name, value, choices):
    """Raise a ValueError naming the valid ``choices`` if ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_n_candidates(n_candidates, n_instances):
    """Raise a ValueError unless ``n_candidates`` is None or a positive integer of at least ``n_instances``."""
    if n_candidates is None:
        return
    if not isinstance(n_candidates, numbers.Integral) or n_candidates < 1:
        raise ValueError(f"n_candidates must be a positive integer or None, got {n_candidates!r}")
    if n_instances > n_candidates:
        raise ValueError(f"n_instances={n_instances} is larger than n_candidates={n_candidates}")


class NTKLookAheadQuery(QueryStrategy):
    """NTK look-ahead query strategy (Mohamadi, Bae & Sutherland, NeurIPS 2022).

    Approximates "retrain the network with candidate x and its most likely
    label added, and see how much its predictions change" by the network
    linearised at its weights and trained to convergence with MSE, i.e.
    kernel regression with the empirical NTK. On the labelled
    set L and candidates U (a random subset of the pool)::

        f~_L(U)         = f(U) + Theta(U, L) K^-1 (Y_L - f(X_L)),   K = Theta(L, L) + lambda I
        Delta           = Theta(U, U) - Theta(U, L) K^-1 Theta(L, U)
        f~_{L+(x,y)}(u) = f~_L(u) + Delta[u, x] (Delta[x, x] + lambda)^-1 (y - f~_L(x))

    and scores every candidate by how the look-ahead predictions on U differ
    from the baseline ``b(U)``. The m x m x C tensor of look-ahead outputs is
    computed in chunks of candidates (sized by ``memory_budget``) and reduced
    to scores on the fly, never held whole; ``Delta`` itself ((m q)^2 floats,
    ``q = C`` for block kernels) is held.

    Parameters
    ----------
    kernel : {"pntk", "full", "trace"}, default="pntk"
        Empirical NTK flavour. ``"pntk"`` (the kernel of ``sum_c f_c / sqrt(C)``)
        and ``"trace"`` are scalar kernels used as ``Theta (x) I_C``; ``"full"``
        has C x C blocks and costs C^2 times the memory.
    objective : {"mlmoc", "output_change", "emoc", "eer"}, default="mlmoc"
        ``"mlmoc"`` (the paper's default): fraction of U whose argmax flips
        after adding ``(x, y^(x))`` with ``y^(x) = argmax_c f(x)``, ties broken
        by the output change, never by array order. ``"output_change"``:
        ``||p~_{L+(x,y^)}(U) - p_b(U)||_F`` with ``p`` the softmax (or the
        linearised probabilities). ``"emoc"``: that change averaged over all
        labels with weights ``p(y | x)`` from the network. ``"eer"``: smallest
        ``sum_u (1 - max_c p~_{L+(x,y^)}(u)_c)`` first.
    mode : {"batch", "sequential", "hybrid"}, default="batch"
        ``"batch"``: top-k of one scoring against L. ``"sequential"``: pick
        the best, add it to the kernel model with its pseudo-label (or the
        oracle's label), update ``f~`` and ``Delta`` by the rank-one formulas
        in O(m^2) (no refactorisation, no SGD), rescore, k times.
        ``"hybrid"``: the same in rounds of ``hybrid_round_size`` points.
    hybrid_round_size : int, default=10
    baseline : {"network", "linearized"}, default="network"
        ``b(U)``: the network's own predictions ``f(U)``, or the linearised
        model's ``f~_L(U)`` (updated after every sequential step).
    n_candidates : int or None, default=4000
        Size of the random subset of the pool scored per query (drawn from
        ``random_state``), as in the paper; ``None`` scores the whole pool.
        Cost: O(n^3 + m n^2 + m^2 C) for batch mode, with n = |L| and m the
        number of candidates (times C^3 for block kernels).
    ridge : float, default=1e-5
        Relative ridge: ``lambda = ridge * trace(K) / dim(K)``.
    float64 : bool, default=True
        Kernel algebra in float64 (the Schur complement cancels badly in float32).
    memory_budget : int or None
        Bytes for one chunk of kernel blocks and of look-ahead outputs;
        ``None`` for the kernel engine's default (512 MiB).
    output_space : {"auto", "logits", "probabilities"}, default="auto"
        Space the network is linearised in; ``"auto"``: logits for a network
        trained with MSE (the paper's setting), softmax probabilities for one
        trained with cross-entropy, whose logits are far from the one-hot
        targets. See :class:`~sklearn_ntkal.estimators.linearized.LinearizedClassifier`.
    random_state : int, RandomState or None
        Seeds the candidate subset and the final tie-break.

    Notes
    -----
    Sequential and hybrid modes accept ``oracle``, a callable mapping an array
    of row indices (of ``X_pool`` for modAL, of ``X`` for :meth:`query`) to
    their labels; the true labels then replace the pseudo-labels in the updates.
    """

    requires_network = True
    requires_labeled = True

    def __init__(self, kernel="pntk", objective="mlmoc", mode="batch", hybrid_round_size=10, baseline="network",
                 n_candidates=4000, ridge=1e-5, float64=True, memory_budget=None, output_space="auto",
                 random_state=None):
        self.kernel = kernel
        self.objective = objective
        self.mode = mode
        self.hybrid_round_size = hybrid_round_size
        self.baseline = baseline
        self.n_candidates = n_candidates
        self.ridge = ridge
        self.float64 = float64
        self.memory_budget = memory_budget
        self.output_space = output_space
        self.random_state = random_state

    def __call__(self, learner, X_pool, n_instances=1, oracle=None, **kwargs):
        """modAL strategy; ``oracle(indices) -> labels`` (rows of ``X_pool``) is optional."""
        with self._oracle(oracle):
            return super().__call__(learner, X_pool, n_instances, **kwargs)

    def query(self, X, y, clf, batch_size=1, candidates=None, return_utilities=False, oracle=None):
        """scikit-activeml style query; ``oracle(indices) -> labels`` (rows of ``X``) is optional.

        See :meth:`QueryStrategy.query`.
        """
        if oracle is not None:
            rows = (np.flatnonzero(~_labeled_mask(y, np.shape(X)[0])) if candidates is None
                    else np.asarray(candidates, dtype=int).ravel())
            oracle = functools.partial(_map_oracle, oracle, rows)
        with self._oracle(oracle):
            return super().query(X, y, clf, batch_size, candidates, return_utilities)

    @contextlib.contextmanager
    def _oracle(self, oracle):
        if oracle is not None and not callable(oracle):
            raise TypeError(f"oracle must be a callable mapping row indices to labels, got {type(oracle).__name__}")
        self._active_oracle = oracle
        try:
            yield
        finally:
            del self._active_oracle

    def _check_params(self, n_instances):
        check_choice("kernel", self.kernel, KINDS)
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("mode", self.mode, MODES)
        check_choice("baseline", self.baseline, BASELINES)
        check_choice("output_space", self.output_space, OUTPUT_SPACES)
        if not isinstance(self.hybrid_round_size, numbers.Integral) or self.hybrid_round_size < 1:
            raise ValueError(f"hybrid_round_size must be a positive integer, got {self.hybrid_round_size!r}")
        check_n_candidates(self.n_candidates, n_instances)
        return {"batch": n_instances, "sequential": 1, "hybrid": self.hybrid_round_size}[self.mode]

    def _select(self, clf, X_labeled, y_labeled, X_candidates, n_instances, random_state):
        round_size = self._check_params(n_instances)
        pool_positions = draw_candidates(X_candidates.shape[0], self.n_candidates, random_state)
        tiebreak = random_state.permutation(pool_positions.size)
        linear = LinearizedClassifier(clf, kernel=self.kernel, output_space=self.output_space, ridge=self.ridge,
                                      float64=self.float64, memory_budget=self.memory_budget)
        posterior = linear.fit(X_labeled, y_labeled).posterior(X_candidates[pool_positions])
        oracle = getattr(self, "_active_oracle", None)
        with enable_x64(bool(self.float64)):
            selected, scores = self._greedy(posterior, n_instances, round_size, tiebreak, clf, pool_positions, oracle)
        return pool_positions[selected], scores

    def _greedy(self, posterior, n_instances, round_size, tiebreak, clf, pool_positions, oracle):
        """Rounds of scoring, top-``round_size`` picks and rank-one updates until ``n_instances`` are chosen."""
        q, n_outputs = posterior.q, posterior.mean.shape[1]
        mean, delta = jnp.asarray(kr.to_rows(posterior.mean, q)), jnp.asarray(posterior.covariance)
        outputs = jnp.asarray(posterior.outputs)
        network_probs = to_probabilities(outputs, posterior.output_space)
        pseudo = np.asarray(jnp.argmax(outputs, axis=1))
        available = np.ones(outputs.shape[0], dtype=bool)
        selected, scores = [], []
        while len(selected) < n_instances:
            if self.baseline == "network":
                base = network_probs
            else:
                base = to_probabilities(kr.from_rows(mean, n_outputs), posterior.output_space)
            primary, secondary = self._score(mean, delta, base, network_probs, pseudo, posterior)
            order = [i for i in rank(primary, secondary, tiebreak) if available[i]]
            picks = order[:min(round_size, n_instances - len(selected))]
            selected += picks
            scores += [float(primary[i]) for i in picks]
            available[picks] = False
            if len(selected) < n_instances:
                labels = pseudo[picks] if oracle is None else _oracle_labels(oracle, pool_positions[picks], clf)
                for pick, label in zip(picks, labels):
                    mean, delta = _condition(mean, delta, pick, jnp.eye(n_outputs, dtype=mean.dtype)[label],
                                             posterior.ridge, q)
        return np.asarray(selected, dtype=int), np.asarray(scores)

    def _score(self, mean, delta, base, network_probs, pseudo, posterior):
        """Scores of every candidate, streamed over chunks of candidates."""
        m, n_outputs = network_probs.shape
        eye = jnp.eye(n_outputs, dtype=mean.dtype)
        if self.objective == "emoc":
            targets, weights = jnp.broadcast_to(eye, (m, n_outputs, n_outputs)), network_probs
        else:
            targets, weights = eye[pseudo][:, None], jnp.ones((m, 1), mean.dtype)
        n_labels, q = targets.shape[1], posterior.q
        budget = DEFAULT_MEMORY_BUDGET if self.memory_budget is None else int(self.memory_budget)
        size = int(max(1, min(m, budget // (mean.dtype.itemsize * (4 * n_labels * m * n_outputs + m * q * q)))))
        primary, secondary = [], []
        for start in range(0, m, size):
            index = np.arange(start, start + size).clip(max=m - 1)
            p, s = _chunk_scores(mean, delta, jnp.asarray(index), targets[index], weights[index], base,
                                 posterior.ridge, q=q, objective=self.objective, output_space=posterior.output_space)
            primary.append(np.asarray(p)[: m - start])
            secondary.append(np.asarray(s)[: m - start])
        return np.concatenate(primary)[:m], np.concatenate(secondary)[:m]


def _map_oracle(oracle, rows, positions):
    return oracle(rows[np.asarray(positions)])


def _oracle_labels(oracle, positions, clf):
    """Class indices of the labels ``oracle`` gives for pool rows ``positions``."""
    labels = np.asarray(oracle(positions)).ravel()
    if labels.shape != positions.shape:
        raise ValueError(f"the oracle returned {labels.size} labels for {positions.size} indices")
    unknown = [label for label in labels if label not in set(clf.classes_)]
    if unknown:
        raise ValueError(f"the oracle returned labels {unknown} unknown to the estimator "
                         f"(classes_={list(clf.classes_)})")
    return np.searchsorted(clf.classes_, labels)


@functools.partial(jax.jit, static_argnames=("q", "objective", "output_space"))
def _chunk_scores(mean, delta, index, targets, weights, base, ridge, *, q, objective, output_space):
    after = kr.lookahead(mean, delta, index, targets, ridge, q)
    return lookahead_scores(objective, after, base, weights, output_space)


_condition = jax.jit(kr.condition, static_argnames=("q",))
