"""`Network`: a network as a pair of pure functions over a params pytree (stax convention)."""

from __future__ import annotations

import jax

from .layers import Tape


class Network:
    """A network in the stax convention, callable as ``apply_fn(params, x)``.

    ``init_fn(key, input_shape) -> (output_shape, params)`` and
    ``apply_fn(params, x) -> outputs`` as in ``jax.example_libraries.stax`` and
    ``neural_tangents.stax``. An instance is itself an ``apply_fn``, so it can be
    handed to :func:`sklearn_ntkal.engine.empirical_ntk`, which then uses the
    structured kernel rules when every parametrised layer has one.

    A network is a pytree whose leaves are the constants of its layers (not
    its parameters): jitted code takes it as an argument.

    Parameters
    ----------
    layer : sklearn_ntkal.networks.layers.Layer
        The root layer, usually a :class:`~sklearn_ntkal.networks.layers.Serial`.
    """

    def __init__(self, layer):
        self.layer = layer

    @property
    def structured(self):
        """Whether the structured NTK rules cover every parametrised layer."""
        return self.layer.structured

    def init_fn(self, key, input_shape):
        """Initialise parameters for inputs of ``input_shape`` (batch axis first): ``(output_shape, params)``."""
        return self.layer.init(key, tuple(input_shape))

    def initialize(self, key, input_shape):
        """``(output_shape, params, network)``: :meth:`init_fn`, and the network with the state its layers start with."""
        out_shape, params, layer = self.layer.initialize(key, tuple(input_shape))
        return out_shape, params, Network(layer)

    def apply_train(self, params, x, mask):
        """Training-mode outputs, and the network with its state updated from the rows where ``mask`` is 1."""
        out, layer = self.layer.apply_train(params, x, mask)
        return out, Network(layer)

    def apply_fn(self, params, x):
        """Outputs of the network for inputs ``x``."""
        return self.layer.apply(params, x)

    __call__ = apply_fn

    def apply_tapped(self, params, x, perturbations=None):
        """Outputs and the ``(layer, params, inputs, outputs)`` records of every linear layer, in call order."""
        tape = Tape(perturbations)
        out = self.layer.apply(params, x, tape)
        return out, tape.records

    def last_linear(self, params, x):
        """Inputs (penultimate features) and parameters of the last linear layer called on ``x``.

        Used by strategies that need last-layer gradient embeddings (BADGE,
        last-layer dynamicAL) or penultimate features (Coreset): for an output
        layer ``f = h W + b`` the gradient of a loss with output residual ``r``
        is ``r h^T`` for ``W`` and ``r`` for ``b``.
        """
        _, records = self.apply_tapped(params, x)
        if not records:
            raise ValueError("the network has no linear layer the tape can see (Dense or Conv)")
        layer, layer_params, inputs, _ = records[-1]
        return inputs, layer_params

    def __repr__(self):
        return f"Network({self.layer!r})"


jax.tree_util.register_pytree_node(Network, lambda network: ((network.layer,), None),
                                   lambda _, children: Network(children[0]))
