"""Shared fixtures: small real data (digits) and small fitted networks, all offline and seeded."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


@pytest.fixture(scope="session")
def digits():
    """Digits split 75/25, stratified, seed 0: (X_train, X_test, y_train, y_test), float32 X."""
    X, y = load_digits(return_X_y=True)
    return train_test_split(X.astype(np.float32), y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="session")
def small_mlp_factory():
    """Build a small fitted MLP classifier on given data (fast: 2 x 64 hidden units)."""
    from sklearn_ntkal import JaxNetClassifier

    def make(X, y, loss="cross_entropy", epochs=30, random_state=0, **kwargs):
        kwargs.setdefault("network_kwargs", {"hidden_layer_sizes": (64, 64)})
        return JaxNetClassifier(loss=loss, epochs=epochs, random_state=random_state, **kwargs).fit(X, y)

    return make


@pytest.fixture(scope="session")
def mse_net(digits, small_mlp_factory):
    """Small MLP fitted with MSE on 300 digits (the look-ahead paper's loss)."""
    X_train, _, y_train, _ = digits
    return small_mlp_factory(X_train[:300], y_train[:300], loss="mse", epochs=30)


@pytest.fixture(scope="session")
def ce_net(digits, small_mlp_factory):
    """Small MLP fitted with cross-entropy on 300 digits."""
    X_train, _, y_train, _ = digits
    return small_mlp_factory(X_train[:300], y_train[:300], loss="cross_entropy", epochs=30)
