"""Stax-style layers whose dense and convolution layers report to a tape for structured NTKs.

Every layer is a small picklable object with ``init(key, input_shape) ->
(output_shape, params)`` and ``apply(params, x, tape=None)``, the convention of
``jax.example_libraries.stax``. Dense and convolution layers pass their input
and output through ``tape.linear`` when a tape is given; that is all the
structured kernel engine (``sklearn_ntkal.engine``) needs to build each layer's
share of the empirical NTK from an input Gram and an output-cotangent Gram
(Novak et al., "Fast Finite Width Neural Tangent Kernel", ICML 2022).

Every layer is also a JAX pytree: its configuration (widths, strides, the
functions of a wrapped network) is static, and the arrays it holds that are
not trained parameters (standardisation constants, running statistics) are
its leaves. Jitted code takes a network as an argument, so a network fitted
again with new constants reuses the compiled programs of the last one.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_CONV_DIMS = ("NHWC", "HWIO", "NHWC")


_flat_normal = jax.jit(jax.random.normal, static_argnums=1)


def scaled_normal(key, shape, scale):
    """``jax.random.normal(key, shape) * scale``, compiled once per power-of-two size instead of once per shape.

    The draw is the first entries of a flat draw whose length is the next
    power of two, made with JAX's partitionable threefry (the default since
    JAX 0.5), in which every entry depends only on the key and its index: so
    these are the values of ``jax.random.normal(key, shape)`` there, and the
    same on every JAX version. Compiling a random-number program for each
    weight shape takes seconds per shape on a CPU (half a minute to
    initialise a ResNet-18).
    """
    size = math.prod(shape)
    with jax.threefry_partitionable(True):
        flat = _flat_normal(key, (1 << max(size - 1, 0).bit_length(),))
    return flat[:size].reshape(shape) * scale


class Tape:
    """Record the inputs of linear layers and perturb their outputs.

    Parameters
    ----------
    perturbations : list of arrays or None
        Added, in call order, to the output of each linear layer. Zeros whose
        vector-Jacobian product gives the output cotangents of every layer.
    """

    def __init__(self, perturbations=None):
        self.perturbations = perturbations
        self.records = []

    def linear(self, layer, params, inputs, outputs):
        """Record ``(layer, params, inputs, outputs)`` and return the (perturbed) ``outputs``."""
        position = len(self.records)
        self.records.append((layer, params, inputs, outputs))
        if self.perturbations is not None:
            outputs = outputs + self.perturbations[position]
        return outputs


class Layer:
    """Base class: a parameter-free layer that maps ``x`` to ``self.fn(x)``.

    Subclasses are registered as pytrees: the attributes named in
    ``_children`` (arrays or sub-layers) are children, every other attribute
    is static configuration, compared by value.
    """

    structured = True
    _children = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, _flatten_layer, functools.partial(_unflatten_layer, cls))

    def init(self, key, input_shape):
        return input_shape, ()

    def initialize(self, key, input_shape):
        """``(output_shape, params, layer)``: :meth:`init`, and the layer with any state it starts with."""
        out_shape, params = self.init(key, input_shape)
        return out_shape, params, self

    def apply(self, params, x, tape=None):
        return self.fn(x)

    def apply_train(self, params, x, mask):
        """Training-mode outputs and the layer with its state updated from the rows where ``mask`` is 1."""
        return self.apply(params, x), self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _flatten_layer(layer):
    names = type(layer)._children
    static = tuple(sorted((k, _frozen(v)) for k, v in vars(layer).items() if k not in names))
    return tuple(getattr(layer, name) for name in names), static


def _unflatten_layer(cls, static, children):
    layer = object.__new__(cls)
    for name, value in static:
        setattr(layer, name, value)
    for name, child in zip(cls._children, children):
        setattr(layer, name, child)
    return layer


def _frozen(value):
    """``value`` with lists as tuples, so that static configuration is hashable and compared by value."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


class Dense(Layer):
    """Fully connected layer ``y = x W + b``; He-normal weights times ``scale`` (standard parametrisation)."""

    def __init__(self, out_dim, use_bias=True, scale=1.0):
        self.out_dim = int(out_dim)
        self.use_bias = bool(use_bias)
        self.scale = float(scale)

    def init(self, key, input_shape):
        in_dim = input_shape[-1]
        w = scaled_normal(key, (in_dim, self.out_dim), self.scale * math.sqrt(2.0 / in_dim))
        params = (w, jnp.zeros(self.out_dim)) if self.use_bias else (w,)
        return input_shape[:-1] + (self.out_dim,), params

    def apply(self, params, x, tape=None):
        y = x @ params[0]
        if self.use_bias:
            y = y + params[1]
        return y if tape is None else tape.linear(self, params, x, y)

    def patches(self, x):
        """Per-sample, per-position inputs (n, S, in_dim): every leading position of ``x`` sees the same weights."""
        return x.reshape(x.shape[0], -1, x.shape[-1])


class Conv(Layer):
    """2-D convolution over NHWC inputs with HWIO kernels, He-normal initialised."""

    def __init__(self, out_channels, kernel_size=(3, 3), strides=(1, 1), padding="SAME", use_bias=True):
        self.out_channels = int(out_channels)
        self.kernel_size = tuple(kernel_size)
        self.strides = tuple(strides)
        self.padding = padding if isinstance(padding, str) else _frozen(padding)
        self.use_bias = bool(use_bias)

    def init(self, key, input_shape):
        in_channels = input_shape[-1]
        fan_in = in_channels * math.prod(self.kernel_size)
        w_shape = self.kernel_size + (in_channels, self.out_channels)
        w = scaled_normal(key, w_shape, math.sqrt(2.0 / fan_in))
        params = (w, jnp.zeros(self.out_channels)) if self.use_bias else (w,)
        out = jax.eval_shape(lambda z: self.convolve(w, z), jax.ShapeDtypeStruct((1,) + tuple(input_shape[1:]), w.dtype))
        return (input_shape[0],) + out.shape[1:], params

    def convolve(self, w, x):
        """The bias-free convolution, linear in ``w``."""
        return jax.lax.conv_general_dilated(x, w, self.strides, self.padding, dimension_numbers=_CONV_DIMS)

    def apply(self, params, x, tape=None):
        y = self.convolve(params[0], x)
        if self.use_bias:
            y = y + params[1]
        return y if tape is None else tape.linear(self, params, x, y)

    def patches(self, x):
        """Per-sample, per-position inputs (n, S, P): the input patch under the kernel at every output position.

        Patches are strided slices of the padded input, one per kernel
        offset, joined along channels: entries ordered (kernel row, kernel
        column, input channel) like the rows of the HWIO kernel. Slices are
        memory moves, where a patch-extracting convolution would spend ``P``
        multiply-adds per patch entry.
        """
        spatial = x.shape[1:-1]
        pads = self.padding
        if isinstance(pads, str):
            pads = lax.padtype_to_pads(spatial, self.kernel_size, self.strides, pads)
        x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)])
        out = [(size - k) // s + 1 for size, k, s in zip(x.shape[1:-1], self.kernel_size, self.strides)]
        span = [(m - 1) * s + 1 for m, s in zip(out, self.strides)]
        strides = (1, *self.strides, 1)
        slices = [lax.slice(x, (0, *offset, 0), (x.shape[0], *map(sum, zip(offset, span)), x.shape[-1]), strides)
                  for offset in itertools.product(*map(range, self.kernel_size))]
        joined = jnp.concatenate(slices, axis=-1)
        return joined.reshape(joined.shape[0], -1, joined.shape[-1])


class Relu(Layer):
    """Rectified linear unit."""

    fn = staticmethod(jax.nn.relu)


class Tanh(Layer):
    """Hyperbolic tangent."""

    fn = staticmethod(jnp.tanh)


class Gelu(Layer):
    """Gaussian error linear unit."""

    fn = staticmethod(jax.nn.gelu)


class Flatten(Layer):
    """Flatten everything but the batch axis."""

    def init(self, key, input_shape):
        return (input_shape[0], math.prod(input_shape[1:])), ()

    def fn(self, x):
        return x.reshape(x.shape[0], -1)


class Reshape(Layer):
    """Reshape flat rows to ``shape`` per sample (e.g. flat pixels to NHWC images)."""

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)

    def init(self, key, input_shape):
        if math.prod(input_shape[1:]) != math.prod(self.shape):
            raise ValueError(f"cannot reshape inputs of shape {tuple(input_shape[1:])} to {self.shape}")
        return (input_shape[0],) + self.shape, ()

    def fn(self, x):
        return x.reshape((x.shape[0],) + self.shape)


class Standardize(Layer):
    """Fixed affine input scaling ``(x - mean) / scale``; constants (pytree leaves), not parameters."""

    _children = ("mean", "scale")

    def __init__(self, mean, scale):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.scale = np.asarray(scale, dtype=np.float32)

    def fn(self, x):
        return (x - self.mean.astype(x.dtype)) / self.scale.astype(x.dtype)


class BatchNorm(Layer):
    """Batch normalisation over the last (channel) axis (Ioffe & Szegedy, ICML 2015).

    ``y = (x - mu) / sqrt(var + epsilon) * gamma + beta`` with parameters
    ``(gamma, beta)``. In training mode (:meth:`apply_train`) ``mu, var`` are
    the statistics of the minibatch, over every axis but the channels and the
    rows where the mask is 1, and the running statistics move towards them by
    ``1 - momentum``; in inference mode (:meth:`apply`, which predictions,
    kernels and gradients use) they are the running statistics, which are
    pytree leaves of the layer, never parameters: only ``gamma`` and ``beta``
    are differentiated (differentiating the statistics as if they were
    parameters is a known trap of BatchNorm networks' kernels).

    For the tape it is linear in its parameters with its own rule: per
    sample, ``d <delta, y> / d gamma = sum_s x^_s * delta_s`` and
    ``d <delta, y> / d beta = sum_s delta_s`` over positions ``s``, with
    ``x^`` the normalised input.

    Parameters
    ----------
    momentum : float, default=0.9
    epsilon : float, default=1e-5
    """

    _children = ("mean", "var")

    def __init__(self, momentum=0.9, epsilon=1e-5):
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.mean = None
        self.var = None

    def init(self, key, input_shape):
        channels = input_shape[-1]
        return input_shape, (jnp.ones(channels), jnp.zeros(channels))

    def initialize(self, key, input_shape):
        out_shape, params = self.init(key, input_shape)
        layer = _unflatten_layer(BatchNorm, _flatten_layer(self)[1],
                                 (np.zeros(input_shape[-1], np.float32), np.ones(input_shape[-1], np.float32)))
        return out_shape, params, layer

    def _normalise(self, x, mean, var):
        return (x - mean.astype(x.dtype)) * jax.lax.rsqrt(var.astype(x.dtype) + self.epsilon)

    def apply(self, params, x, tape=None):
        if self.mean is None:
            raise ValueError("this BatchNorm has no running statistics yet: initialise the network with "
                             "initialize() (which returns the network with them), not init_fn()")
        normalised = self._normalise(x, self.mean, self.var)
        y = normalised * params[0] + params[1]
        return y if tape is None else tape.linear(self, params, normalised, y)

    def apply_train(self, params, x, mask):
        axes = tuple(range(x.ndim - 1))
        weights = jnp.broadcast_to(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape[:-1] + (1,))
        count = jnp.maximum(jnp.sum(weights), 1.0)
        mean = jnp.sum(x * weights, axis=axes) / count
        var = jnp.sum(jnp.square(x - mean) * weights, axis=axes) / count
        updated = _unflatten_layer(BatchNorm, _flatten_layer(self)[1], (
            self.momentum * self.mean + (1.0 - self.momentum) * jax.lax.stop_gradient(mean),
            self.momentum * self.var + (1.0 - self.momentum) * jax.lax.stop_gradient(var)))
        return self._normalise(x, mean, var) * params[0] + params[1], updated

    def per_sample_gradients(self, normalised, deltas):
        """Per-sample gradients ``[sum_s x^_s delta_s, sum_s delta_s]`` (n, K, 2 C) for K output directions.

        ``deltas`` are the output cotangents with a direction axis second, (n, K, ..., C).
        """
        positions = tuple(range(2, deltas.ndim - 1))
        scale = jnp.sum(deltas * normalised[:, None], axis=positions)
        return jnp.concatenate([scale, jnp.sum(deltas, axis=positions)], axis=-1)


class AvgPool(Layer):
    """Average pooling over non-overlapping ``window`` patches of NHWC inputs (trailing rows and columns dropped).

    Written as a reshape and a mean, whose derivative is a broadcast: on CPU
    its backward pass is about twice as fast as that of ``lax.reduce_window``.
    """

    def __init__(self, window=(2, 2)):
        self.window = tuple(window)

    def init(self, key, input_shape):
        n, h, w, c = input_shape
        return (n, h // self.window[0], w // self.window[1], c), ()

    def fn(self, x):
        (a, b), (n, h, w, c) = self.window, x.shape
        return x[:, : h // a * a, : w // b * b].reshape(n, h // a, a, w // b, b, c).mean(axis=(2, 4))


class GlobalAvgPool(Layer):
    """Mean over the spatial axes of NHWC inputs."""

    def init(self, key, input_shape):
        return (input_shape[0], input_shape[-1]), ()

    def fn(self, x):
        return x.mean(axis=(1, 2))


class _Composite(Layer):
    """A layer made of layers: :meth:`initialize` does the work, :meth:`init` drops the initialised layer."""

    def init(self, key, input_shape):
        return self.initialize(key, input_shape)[:2]


class Serial(_Composite):
    """Layers applied one after the other; the parameters are a tuple, one entry per layer."""

    _children = ("layers",)

    def __init__(self, *layers):
        self.layers = tuple(layers)

    @property
    def structured(self):
        return all(layer.structured for layer in self.layers)

    def initialize(self, key, input_shape):
        params, layers = [], []
        for layer, layer_key in zip(self.layers, jax.random.split(key, max(len(self.layers), 1))):
            input_shape, p, layer = layer.initialize(layer_key, input_shape)
            params.append(p)
            layers.append(layer)
        return input_shape, tuple(params), Serial(*layers)

    def apply(self, params, x, tape=None):
        for layer, p in zip(self.layers, params):
            x = layer.apply(p, x, tape)
        return x

    def apply_train(self, params, x, mask):
        layers = []
        for layer, p in zip(self.layers, params):
            x, layer = layer.apply_train(p, x, mask)
            layers.append(layer)
        return x, Serial(*layers)


class Residual(_Composite):
    """``branch(x) + shortcut(x)``, with the identity as the default shortcut."""

    _children = ("branch", "shortcut")

    def __init__(self, branch, shortcut=None):
        self.branch = branch
        self.shortcut = shortcut if shortcut is not None else Serial()

    @property
    def structured(self):
        return self.branch.structured and self.shortcut.structured

    def initialize(self, key, input_shape):
        k1, k2 = jax.random.split(key)
        out_shape, branch_params, branch = self.branch.initialize(k1, input_shape)
        short_shape, short_params, shortcut = self.shortcut.initialize(k2, input_shape)
        if tuple(out_shape[1:]) != tuple(short_shape[1:]):
            raise ValueError(f"residual branch gives {out_shape[1:]} but shortcut gives {short_shape[1:]}")
        return out_shape, (branch_params, short_params), Residual(branch, shortcut)

    def apply(self, params, x, tape=None):
        return self.branch.apply(params[0], x, tape) + self.shortcut.apply(params[1], x, tape)

    def apply_train(self, params, x, mask):
        y, branch = self.branch.apply_train(params[0], x, mask)
        z, shortcut = self.shortcut.apply_train(params[1], x, mask)
        return y + z, Residual(branch, shortcut)


class External(Layer):
    """Wrap any ``(init_fn, apply_fn)`` pair of pure functions; no structured rule, so autodiff kernels."""

    structured = False

    def __init__(self, init_fn, apply_fn):
        self.init_fn = init_fn
        self.apply_fn = apply_fn

    def init(self, key, input_shape):
        out_shape, params = self.init_fn(key, tuple(input_shape))
        return tuple(out_shape), params

    def apply(self, params, x, tape=None):
        return self.apply_fn(params, x)
