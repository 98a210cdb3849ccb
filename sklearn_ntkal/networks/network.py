"""`Network`: a network as a pair of pure functions over a params pytree (stax convention)."""

from __future__ import annotations

from .layers import Tape


class Network:
    """A network in the stax convention, callable as ``apply_fn(params, x)``.

    ``init_fn(key, input_shape) -> (output_shape, params)`` and
    ``apply_fn(params, x) -> outputs`` as in ``jax.example_libraries.stax`` and
    ``neural_tangents.stax``. An instance is itself an ``apply_fn``, so it can be
    handed to :func:`sklearn_ntkal.ntk.empirical_ntk`, which then uses the
    structured kernel rules when every parametrised layer has one.

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
        """Initialise parameters for inputs of ``input_shape`` (batch axis first)."""
        return self.layer.init(key, tuple(input_shape))

    def apply_fn(self, params, x):
        """Outputs of the network for inputs ``x``."""
        return self.layer.apply(params, x)

    __call__ = apply_fn

    def apply_tapped(self, params, x, perturbations=None):
        """Outputs and the ``(layer, params, inputs, outputs)`` records of every linear layer, in call order."""
        tape = Tape(perturbations)
        out = self.layer.apply(params, x, tape)
        return out, tape.records

    def __repr__(self):
        return f"Network({self.layer!r})"
