"""Turn what users pass as a network (preset name, stax pair, Flax or Equinox module) into a `Layer`."""

from __future__ import annotations

import copy
import inspect

import jax
import jax.numpy as jnp

from .layers import External, Layer
from .architectures import PRESETS


class _FlaxModule(External):
    """A Flax ``nn.Module``: its ``"params"`` collection is the parameters, every other collection is state.

    State (BatchNorm's ``"batch_stats"``) is a pytree leaf of the layer, never
    differentiated: updated in training mode (the module is applied with
    those collections mutable and ``train=True``) and used as it is for
    predictions, kernels and gradients (``train=False``). A module with
    state must take a ``train`` (or ``training``) argument to switch its
    BatchNorm between the two.
    """

    _children = ("state",)

    def __init__(self, module):
        self.module = module
        call = inspect.signature(type(module).__call__).parameters
        self.train_argument = next((name for name in ("train", "training") if name in call), None)
        self.state = None

    def _mode(self, train):
        return {} if self.train_argument is None else {self.train_argument: train}

    def init(self, key, input_shape):
        return self.initialize(key, input_shape)[:2]

    def initialize(self, key, input_shape):
        x = jnp.zeros((1,) + tuple(input_shape[1:]))
        variables = dict(self.module.init(key, x, **self._mode(False)))
        params = variables.pop("params", {})
        if variables and self.train_argument is None:
            raise ValueError(f"the Flax module has state ({sorted(variables)}) but its __call__ takes no 'train' "
                             "argument, so BatchNorm cannot be switched between training and inference")
        layer = self._with_state(variables)
        out = jax.eval_shape(layer.apply, params, x)
        return (input_shape[0],) + out.shape[1:], params, layer

    def _with_state(self, state):
        layer = copy.copy(self)
        layer.state = state
        return layer

    def apply(self, params, x, tape=None):
        return self.module.apply({"params": params, **(self.state or {})}, x, **self._mode(False))

    def apply_train(self, params, x, mask):
        if not self.state:
            return self.apply(params, x), self
        y, state = self.module.apply({"params": params, **self.state}, x, mutable=list(self.state),
                                     **self._mode(True))
        return y, self._with_state(dict(state))


class _EquinoxModule(External):
    """An Equinox module mapping one sample to outputs: arrays are parameters, the rest is static.

    The static part is compared by identity where it holds objects (an
    activation's ``custom_jvp``), so a deep copy of the module (as
    ``sklearn.base.clone`` makes) compiles its programs again; refits of one
    estimator, as in a modAL loop, do not.
    """

    _children = ("params0",)

    def __init__(self, model):
        import equinox as eqx

        self.params0, self.static = eqx.partition(model, eqx.is_inexact_array)

    def init(self, key, input_shape):
        out = jax.eval_shape(self.apply, self.params0, jnp.zeros((1,) + tuple(input_shape[1:])))
        return (input_shape[0],) + out.shape[1:], self.params0

    def apply(self, params, x, tape=None):
        import equinox as eqx

        return jax.vmap(eqx.combine(params, self.static))(x)


def _is_flax_module(obj):
    try:
        from flax import linen
    except ImportError:
        return False
    return isinstance(obj, linen.Module)


def _is_equinox_module(obj):
    try:
        import equinox as eqx
    except ImportError:
        return False
    return isinstance(obj, eqx.Module)


def resolve_layer(network, n_outputs, network_kwargs=None):
    """Build the root layer for ``network``.

    Parameters
    ----------
    network : str, Layer, tuple, Flax module or Equinox module
        A preset name (``"mlp"``, ``"cnn"``, ``"wide_resnet"``, ``"resnet18"``), a
        :class:`~sklearn_ntkal.networks.layers.Layer`, an ``(init_fn, apply_fn)``
        pair in the stax convention (a ``neural_tangents.stax`` triple works:
        its kernel function is ignored), a ``flax.linen.Module`` or an
        ``equinox.Module`` that maps one sample to its outputs. Equinox modules
        carry their own initial weights; the others are initialised from the
        classifier's ``random_state``.
    n_outputs : int
        Outputs a preset must have (ignored for user networks, which are checked
        by the caller).
    network_kwargs : dict or None
        Keyword arguments for a preset.

    Returns
    -------
    Layer
    """
    kwargs = dict(network_kwargs or {})
    if isinstance(network, str):
        if network not in PRESETS:
            raise ValueError(f"unknown network {network!r}; presets are {sorted(PRESETS)}")
        return PRESETS[network](n_outputs, **kwargs)
    if kwargs:
        raise ValueError("network_kwargs only applies to preset networks given by name")
    if isinstance(network, Layer):
        return network
    if _is_flax_module(network):
        return _FlaxModule(network)
    if _is_equinox_module(network):
        return _EquinoxModule(network)
    if isinstance(network, tuple) and len(network) in (2, 3) and all(callable(f) for f in network[:2]):
        return External(network[0], network[1])
    raise TypeError(
        "network must be a preset name, a Layer, an (init_fn, apply_fn) pair, a Flax or an Equinox "
        f"module; got {type(network).__name__}"
    )
