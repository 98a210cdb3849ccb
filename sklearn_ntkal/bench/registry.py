"""Names the benchmark runner and the command line accept: query strategies and networks, and how to build them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..estimators import JaxNetClassifier
from ..strategies.baselines import RandomQuery, UncertaintyQuery
from ..strategies.diversity import BADGEQuery, CoresetQuery
from ..strategies.dynamical import DynamicALQuery
from ..strategies.lookahead import NTKLookAheadQuery
from ..strategies.retrain import RetrainLookAheadQuery


class ConfigError(ValueError):
    """An invalid benchmark setting: an unknown name or a value out of range; the message says what is valid."""


@dataclass(frozen=True)
class StrategyEntry:
    """A named strategy of the benchmark.

    Attributes
    ----------
    build : callable
        ``build(random_state) -> QueryStrategy``, a fresh unfitted strategy.
    description : str
        One line shown by ``sklearn-ntkal strategies``.
    oracle : bool, default=False
        The loop gives the strategy the true label of each pick
        (``run_active_learning(..., oracle=True)``); its ``query`` must take an ``oracle``.
    """

    build: Callable
    description: str
    oracle: bool = False


STRATEGIES = {
    "random": StrategyEntry(lambda seed: RandomQuery(random_state=seed),
                            "uniform random sampling, the reference"),
    "entropy": StrategyEntry(lambda seed: UncertaintyQuery(measure="entropy"),
                             "predictive entropy (uncertainty sampling)"),
    "margin": StrategyEntry(lambda seed: UncertaintyQuery(measure="margin"),
                            "smallest gap between the two most probable classes"),
    "least_confidence": StrategyEntry(lambda seed: UncertaintyQuery(measure="least_confidence"),
                                      "one minus the largest class probability"),
    "badge": StrategyEntry(lambda seed: BADGEQuery(random_state=seed),
                           "BADGE: k-means++ on last-layer gradient embeddings (Ash et al., 2020)"),
    "coreset": StrategyEntry(lambda seed: CoresetQuery(),
                             "Coreset: k-center greedy on penultimate features (Sener & Savarese, 2018)"),
    "ntk_lookahead": StrategyEntry(
        lambda seed: NTKLookAheadQuery(kernel="pntk", objective="mlmoc", mode="batch", random_state=seed),
        "NTK look-ahead, batch mode, pNTK, MLMOC, 4000 random candidates (Mohamadi et al., 2022)"),
    "ntk_lookahead_seq": StrategyEntry(
        lambda seed: NTKLookAheadQuery(kernel="pntk", objective="mlmoc", mode="sequential", n_candidates=1000,
                                       random_state=seed),
        "NTK look-ahead, sequential mode (rank-one updates between picks), 1000 random candidates"),
    "ntk_lookahead_seq_oracle": StrategyEntry(
        lambda seed: NTKLookAheadQuery(kernel="pntk", objective="mlmoc", mode="sequential", n_candidates=1000,
                                       random_state=seed),
        "NTK look-ahead, sequential mode conditioned on the true label of each pick (the authors' default), "
        "1000 random candidates", oracle=True),
    "ntk_lookahead_hybrid_oracle": StrategyEntry(
        lambda seed: NTKLookAheadQuery(kernel="pntk", objective="mlmoc", mode="hybrid", hybrid_round_size=10,
                                       n_candidates=1000, random_state=seed),
        "NTK look-ahead, hybrid mode (top 10 per step, then rank-one updates with their true labels), "
        "1000 random candidates", oracle=True),
    "ntk_prefilter": StrategyEntry(
        lambda seed: NTKLookAheadQuery(kernel="pntk", objective="mlmoc", mode="sequential", prefilter=2,
                                       n_candidates=1000, random_state=seed),
        "margin pre-filter (2 x batch smallest margins), then sequential MLMOC look-ahead among them"),
    "ntk_influence": StrategyEntry(
        lambda seed: NTKLookAheadQuery(random_state=seed),
        "label-free influence: margin-weighted posterior variance removed, sequential covariance updates "
        "(the default NTKLookAheadQuery), 4000 random candidates"),
    "ntk_eer": StrategyEntry(
        lambda seed: NTKLookAheadQuery(kernel="pntk", objective="eer_calibrated", mode="sequential",
                                       n_candidates=1000, random_state=seed),
        "calibrated expected error reduction over every label, sequential"),
    "dynamical": StrategyEntry(
        lambda seed: DynamicALQuery(loss="network", selection="topk", random_state=seed),
        "dynamicAL: top-k training-dynamics scores of the network's own loss (Wang et al., 2022)"),
    "dynamical_deinfluence": StrategyEntry(
        lambda seed: DynamicALQuery(loss="network", selection="deinfluence", random_state=seed),
        "dynamicAL with the authors' de-influence diversity sequence (the default DynamicALQuery)"),
    "dynamical_ce": StrategyEntry(
        lambda seed: DynamicALQuery(loss="cross_entropy", selection="topk", random_state=seed),
        "dynamicAL, top-k, cross-entropy gradients whatever the network's loss"),
    "dynamical_greedy": StrategyEntry(lambda seed: DynamicALQuery(selection="greedy", random_state=seed),
                                      "dynamicAL, greedy with the cross terms kept (picks near-duplicates: a negative result)"),
    "retrain_lookahead": StrategyEntry(
        lambda seed: RetrainLookAheadQuery(n_candidates=200, random_state=seed),
        "look-ahead by SGD retraining per candidate, 200 random candidates (the slow reference)"),
}

DEFAULT_STRATEGIES = ("random", "entropy", "margin", "badge", "coreset", "ntk_lookahead", "ntk_influence", "dynamical",
                      "dynamical_deinfluence")

NETWORKS = {
    "mlp": {"network": "mlp", "network_kwargs": {"hidden_layer_sizes": (256, 256)}},
    "cnn": {"network": "cnn", "network_kwargs": {"channels": (16, 32), "dense_width": 64}},
}


def check_name(kind, name, valid):
    """Raise a :class:`ConfigError` listing the valid names unless ``name`` is one of ``valid``.

    Parameters
    ----------
    kind : str
        What is being named, e.g. ``"strategy"``.
    name : str
    valid : iterable of str
    """
    valid = tuple(valid)
    if name not in valid:
        raise ConfigError(f"unknown {kind} {name!r}; valid names are: {', '.join(valid)}")


def make_strategy(name, random_state=None):
    """A fresh query strategy from its benchmark name.

    Parameters
    ----------
    name : str
        A key of :data:`STRATEGIES`.
    random_state : int or None
        Seeds the strategy's random choices (strategies without any ignore it).

    Returns
    -------
    QueryStrategy
    """
    check_name("strategy", name, STRATEGIES)
    return STRATEGIES[name].build(random_state)


def make_network(name, image_shape, *, loss="mse", epochs=100, batch_size=64, learning_rate=1e-3,
                 random_state=None):
    """An unfitted :class:`~sklearn_ntkal.JaxNetClassifier` from a benchmark network name.

    ``"mlp"`` is a 256-256 ReLU perceptron; ``"cnn"`` the small convolutional
    preset with 16 and 32 channels and a 64-unit dense layer, reading flat
    rows as images of ``image_shape``. Training has no early stopping, so
    accuracy is always that of the network at the end of training.

    Tabular inputs are standardised per feature by the network, images with
    one global mean and scale: standardising each pixel blows up the rare
    non-zero values of near-constant border pixels (MNIST-5k, MSE, 220
    labels, MLP: 40 % test accuracy per pixel, 77 % on one common scale).

    Parameters
    ----------
    name : {"mlp", "cnn"}
    image_shape : tuple of int (H, W, C) or None
        Shape of one image of the dataset; ``None`` (tabular data) only for ``"mlp"``.
    loss : {"cross_entropy", "mse"}, default="mse"
    epochs : int, default=100
    batch_size : int, default=64
        Minibatch size of the network's training.
    learning_rate : float, default=1e-3
    random_state : int or None

    Returns
    -------
    JaxNetClassifier
    """
    check_name("network", name, NETWORKS)
    config = NETWORKS[name]
    if config["network"] == "cnn" and image_shape is None:
        raise ConfigError(f"network {name!r} needs an image dataset; this dataset is tabular, use 'mlp'")
    return JaxNetClassifier(
        network=config["network"], network_kwargs=dict(config["network_kwargs"]),
        input_shape=None if config["network"] == "mlp" else tuple(image_shape), loss=loss, epochs=epochs,
        standardize="feature" if image_shape is None else "global", batch_size=batch_size, learning_rate=learning_rate,
        random_state=random_state)
