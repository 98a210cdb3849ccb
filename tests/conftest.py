"""Shared fixtures: small real data (digits) and small fitted networks, all offline and seeded."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
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


@pytest.fixture(scope="session")
def tanh_stax_pair():
    """A user network as a stax-style ``(init_fn, apply_fn)`` pair: a 64-unit tanh layer and 10 outputs."""

    def init_fn(key, shape):
        k1, k2 = jax.random.split(key)
        return (shape[0], 10), (jax.random.normal(k1, (shape[-1], 64)) * 0.1, jax.random.normal(k2, (64, 10)) * 0.1)

    def apply_fn(params, x):
        return jnp.tanh(x @ params[0]) @ params[1]

    return init_fn, apply_fn
