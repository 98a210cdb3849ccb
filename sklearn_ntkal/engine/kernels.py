"""`KernelSpec` and `empirical_ntk`: chunked, device-sharded empirical NTK of any JAX network.

The kernel of inputs ``x1`` (n1) and ``x2`` (n2) is computed in blocks whose
size is set by a memory budget, so memory does not grow with the pool. Per
chunk of inputs the engine computes features once (structured layer features
or Jacobians), then every block as a Gram of two chunks' features. Column
features are kept, least recently used first out, within half the budget,
and rows sweep the columns in alternating directions so that each row
starts on the columns the last one ended with. With several JAX processes
each computes a contiguous run of that sweep (:mod:`~.processes`) and every
process receives all blocks; a process dispatches its blocks round-robin to
its local devices and gathers them on its host.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections import OrderedDict, deque
from dataclasses import dataclass, fields
from numbers import Real

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ..validation import check_parameters, check_samples

from ..jax_compat import enable_x64
from . import autodiff, processes, structured, traced
from .backends import neural_tangents_fn
from .budget import DEFAULT_MEMORY_BUDGET, bucket, chunk_size, even_chunk_length, padded_chunks, rows_within
from .pairing import KINDS
from .pytrees import abstract, as_argument

IMPLEMENTATIONS = ("auto", "structured", "jacobian", "ntvp", "neural_tangents")


@dataclass(frozen=True)
class KernelSpec:
    """How to compute an empirical NTK: flavour, implementation, memory budget, precision, devices.

    Parameters
    ----------
    kind : {"full", "trace", "pntk"}, default="full"
        ``"full"``: blocks ``Theta(x, x') = J_theta f(x) J_theta f(x')^T`` of
        shape (n1, n2, C, C). ``"trace"``: ``sum_c Theta_cc / C`` (n1, n2).
        ``"pntk"``: the kernel of ``g(x) = sum_c f_c(x) / sqrt(C)`` (n1, n2),
        the pseudo-NTK of Mohamadi, Bae & Sutherland (NeurIPS 2022).
    implementation : {"auto", "structured", "jacobian", "ntvp", "neural_tangents"}, default="auto"
        ``"structured"`` (input Gram times cotangent Gram per linear layer;
        Novak et al., ICML 2022) reads its rules from the jaxpr of any
        ``apply_fn`` (:mod:`~sklearn_ntkal.engine.traced`): every
        ``dot_general`` and ``conv_general_dilated`` of a parameter, with its
        bias, and per-sample gradients for parameter leaves without a rule.
        ``"jacobian"`` (per-sample Jacobians) and ``"ntvp"`` (NTK-vector
        products) are the general autodiff paths; ``"neural_tangents"`` uses
        that package if it imports. ``"auto"`` is ``"structured"``.
    memory_budget : int, default=512 MiB
        Bytes of device memory a block may use; sets the chunk size.
    float64 : bool, default=False
        Compute in float64 inside a local ``jax.enable_x64`` context; the global
        JAX configuration is left untouched.
    devices : sequence of jax.Device or None
        Devices to spread blocks over; all local devices by default. With
        several JAX processes, each spreads its share of the blocks over its
        own local devices (:mod:`~sklearn_ntkal.engine.processes`).
    """

    kind: str = "full"
    implementation: str = "auto"
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    float64: bool = False
    devices: tuple | None = None

    _parameter_constraints = {
        "kind": [StrOptions(set(KINDS))],
        "implementation": [StrOptions(set(IMPLEMENTATIONS))],
        "memory_budget": [Interval(Real, 1, None, closed="left")],
        "float64": ["boolean"],
        "devices": ["array-like", None],
    }

    def check(self):
        """Raise an ``InvalidParameterError`` (a ValueError) naming a field out of range; return ``self``."""
        check_parameters(self._parameter_constraints, {f.name: getattr(self, f.name) for f in fields(self)},
                         type(self).__name__)
        return self

    def __call__(self, apply_fn, params, x1, x2=None, check_input=True):
        """Empirical NTK of ``apply_fn`` at ``params``; see :func:`empirical_ntk`.

        ``check_input=False`` skips the checks of the fields and inputs, for
        callers that pass float arrays they have checked.
        """
        network = as_argument(apply_fn)
        if check_input:
            self.check()
            x1, x2 = check_kernel_inputs(network, params, x1, x2, self.float64)
        return compute(self, network, params, x1, x2, {})


def empirical_ntk(apply_fn, params, x1, x2=None, *, kind="full", implementation="auto",
                  memory_budget=DEFAULT_MEMORY_BUDGET, float64=False, devices=None):
    """Empirical neural tangent kernel ``Theta(x1, x2) = J_theta f(x1) J_theta f(x2)^T``.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, x) -> (n, C)`` outputs, each sample's outputs a
        function of that sample alone (normalisation in inference mode).
    params : pytree
        Parameters at which the kernel is taken (all leaves are differentiated).
    x1 : array of shape (n1, ...)
    x2 : array of shape (n2, ...) or None
        ``None`` gives the symmetric kernel of ``x1``, each block computed once.
    kind, implementation, memory_budget, float64, devices
        See :class:`KernelSpec`.

    Returns
    -------
    numpy.ndarray
        (n1, n2, C, C) for ``kind="full"``, else (n1, n2).

    References
    ----------
    Jacot, Gabriel & Hongler, "Neural Tangent Kernel", NeurIPS 2018.
    Novak, Sohl-Dickstein & Schoenholz, "Fast Finite Width Neural Tangent Kernel", ICML 2022.
    """
    spec = KernelSpec(kind, implementation, memory_budget, float64, None if devices is None else tuple(devices))
    return spec(apply_fn, params, x1, x2)


def check_kernel_inputs(network, params, x1, x2, float64=False):
    """``x1`` and ``x2`` checked (:func:`~sklearn_ntkal.validation.check_samples`) and accepted by ``network``.

    ``network`` is tried on one sample's shape in the precision the kernel
    is computed in (``float64``), as :func:`compute` will call it, without
    computing anything.

    Raises
    ------
    ValueError
        If an input is not a finite float32 array of samples, if ``x2`` has
        another sample shape than ``x1``, or if ``network`` cannot take
        samples of that shape (e.g. rows of the wrong width).
    """
    x1 = check_samples(x1, "x1")
    if x2 is not None:
        x2 = check_samples(x2, "x2")
        if x2.shape[1:] != x1.shape[1:]:
            raise ValueError(f"x1 and x2 have different sample shapes: {x1.shape[1:]} vs {x2.shape[1:]}")
    dtype = jnp.float64 if float64 else jnp.float32
    try:
        with enable_x64(bool(float64)):
            jax.eval_shape(network, abstract(params, dtype), jax.ShapeDtypeStruct((1,) + x1.shape[1:], dtype))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"apply_fn does not take samples of shape {x1.shape[1:]} (x1 has shape {x1.shape}): "
                         f"{str(exc).splitlines()[0]}") from None
    return x1, x2


def compute(spec, network, params, x1, x2, facts):
    """The kernel of a checked ``spec`` on checked inputs; ``facts`` memoises what is learnt about the network.

    ``network`` is a pytree callable (:func:`~.pytrees.as_argument`), passed
    to the compiled functions as an argument; ``facts`` is a dict kept by
    the caller. The public shells, :func:`empirical_ntk` and
    :meth:`KernelSpec.__call__`, check ``x1`` and ``x2``
    (:func:`check_kernel_inputs`).
    """
    with enable_x64(bool(spec.float64)):
        dtype = jnp.float64 if spec.float64 else jnp.float32
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
        x1 = x1.astype(dtype)
        x2 = None if x2 is None else x2.astype(dtype)
        return _assemble(spec, network, params, x1, x2, facts)


def _memo(facts, key, compute_fact):
    if key not in facts:
        facts[key] = compute_fact()
    return facts[key]


def _n_outputs(network, params, sample_shape, dtype):
    out = jax.eval_shape(network, params, jax.ShapeDtypeStruct((1,) + tuple(sample_shape), dtype))
    if len(out.shape) != 2:
        raise ValueError(f"apply_fn must return outputs of shape (n, C); got shape {out.shape} for one sample")
    return out.shape[1]


def _resolve(spec, network, params, sample_shape, n_outputs, dtype, facts):
    """``features(params, x)`` and ``gram(f1, f2, params)``, and the bytes that size the chunks.

    Returns ``(features, gram, sample_bytes, pair_bytes)``: the bytes per
    sample of the features kept for the Grams, and per pair of a kernel
    block. Features are computed in sub-batches whose temporaries stay
    within half the budget. Both functions are module-level compiled
    programs with the network as an argument, so every network of the same
    structure shares them.
    """
    impl, kind = spec.implementation, spec.kind
    itemsize = np.dtype(dtype).itemsize
    n_dirs = 1 if kind == "pntk" else n_outputs
    pair_bytes = itemsize * 4 * (n_dirs**2 if kind == "full" else 1)
    jac_bytes = itemsize * 3 * n_dirs * autodiff.n_parameters(params)
    if impl in ("auto", "structured"):
        tape = _memo(facts, ("tape", tuple(sample_shape), np.dtype(dtype).name),
                     lambda: traced.trace(network, params, sample_shape, dtype))
        kept, transient = (itemsize * e for e in structured.sample_elements(tape, n_dirs))
        features = functools.partial(_structured_features, network, tape=tape, kind=kind, n_outputs=n_outputs)
        return _in_sub_batches(features, rows_within(spec.memory_budget // 2, transient)), \
            lambda f1, f2, params: _structured_gram(f1, f2, rules=tape.rules, kind=kind), kept, pair_bytes
    if impl == "jacobian":
        features = functools.partial(_jacobian_features, network, kind=kind, n_outputs=n_outputs)
        return _in_sub_batches(features, rows_within(spec.memory_budget // 2, jac_bytes)), \
            lambda f1, f2, params: _jacobian_gram(f1, f2, kind=kind), jac_bytes, pair_bytes
    if impl == "ntvp":
        gram = functools.partial(_ntvp_gram, network, kind=kind, n_outputs=n_outputs)
        return _identity_features, lambda f1, f2, params: gram(params, f1, f2), jac_bytes, pair_bytes
    nt_gram = jax.jit(neural_tangents_fn(network, kind, n_outputs))
    return _identity_features, lambda f1, f2, params: nt_gram(params, f1, f2), jac_bytes, pair_bytes


def _identity_features(params, x):
    return x


def _in_sub_batches(features, max_batch):
    """``features(params, x)`` (jitted) called on sub-batches of at most ``max_batch`` samples, joined on the device.

    The feature pytree has the sample axis first. ``x`` is a chunk of a
    bucketed length, cut into the fewest sub-batches of one equal length
    (the last padded with copies of the last input, whose rows are
    dropped), so one compiled program serves them all and the padding is
    less than one row per sub-batch. A Python loop
    rather than ``lax.map``: XLA's CPU runtime runs the loop body of a
    ``lax.map`` several times slower than the same program called directly.
    """

    def run(params, x):
        n = x.shape[0]
        count = -(-n // max(1, int(max_batch)))
        if count == 1:
            return features(params, x)
        size = -(-n // count)
        padded = jnp.concatenate([x, jnp.repeat(x[-1:], count * size - n, axis=0)])
        parts = [features(params, padded[i * size:(i + 1) * size]) for i in range(count)]
        return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a)[:n], *parts)

    return run


@functools.partial(jax.jit, static_argnames=("tape", "kind", "n_outputs"))
def _structured_features(network, params, x, *, tape, kind, n_outputs):
    return structured.features(tape, network, params, x, kind, n_outputs)


@functools.partial(jax.jit, static_argnames=("rules", "kind"))
def _structured_gram(f1, f2, *, rules, kind):
    return structured.gram(rules, f1, f2, kind)


@functools.partial(jax.jit, static_argnames=("kind", "n_outputs"))
def _jacobian_features(network, params, x, *, kind, n_outputs):
    return autodiff.jacobian_features(network, params, x, kind, n_outputs)


@functools.partial(jax.jit, static_argnames=("kind",))
def _jacobian_gram(f1, f2, *, kind):
    return autodiff.jacobian_gram(f1, f2, kind)


@functools.partial(jax.jit, static_argnames=("kind", "n_outputs"))
def _ntvp_gram(network, params, x1, x2, *, kind, n_outputs):
    return autodiff.ntvp_gram(network, params, x1, x2, kind, n_outputs)


def _chunks(x, limit):
    """``(start, stop, padded_chunk)`` triples of the rows of ``x``, in chunks of at most ``limit`` rows.

    Chunks of one even length (:func:`~.budget.even_chunk_length`), since a
    kernel block's cost grows with the square of its chunks; see
    :func:`~.budget.padded_chunks`.
    """
    return [(start, stop, chunk)
            for start, stop, (chunk,) in padded_chunks([x], even_chunk_length(x.shape[0], limit))]


def _assemble(spec, network, params, x1, x2, facts):
    sample_shape, dtype = x1.shape[1:], x1.dtype
    n_outputs = _memo(facts, ("n_outputs", sample_shape, dtype.name),
                      lambda: _n_outputs(network, params, sample_shape, dtype))
    features, gram, sample_bytes, pair_bytes = _resolve(spec, network, params, sample_shape, n_outputs, dtype, facts)
    symmetric = x2 is None
    n2 = x1.shape[0] if symmetric else x2.shape[0]
    size = chunk_size(bucket(max(x1.shape[0], n2)), sample_bytes, pair_bytes, spec.memory_budget)
    size = processes.spread(size, x1.shape[0])
    rows = _chunks(x1, size)
    cols = rows if symmetric else _chunks(x2, size)
    schedule = _schedule(len(rows), len(cols), symmetric)
    start, stop, length = processes.share(len(schedule), "blocks")
    devices = list(spec.devices or jax.local_devices())
    params_on = {d: jax.device_put(params, d) for d in devices}
    capacity = (spec.memory_budget // 2) // (cols[0][2].shape[0] * sample_bytes)
    cached = OrderedDict()

    def column_features(j, device):
        if j in cached:
            cached.move_to_end(j)
            return jax.device_put(cached[j], device)
        f = features(params_on[device], jax.device_put(cols[j][2], device))
        if capacity:
            cached[j] = f
            if len(cached) > capacity:
                cached.popitem(last=False)
        return f

    shape = (x1.shape[0], n2) + ((n_outputs, n_outputs) if spec.kind == "full" else ())
    out = np.empty(shape, dtype=x1.dtype)
    pending = deque()
    counter = 0
    for i, row in itertools.groupby(schedule[start:stop], key=operator.itemgetter(0)):
        r0, r1, xa = rows[i]
        row_features = {}
        for _, j in row:
            device = devices[counter % len(devices)]
            counter += 1
            if device not in row_features:
                row_features[device] = (
                    column_features(i, device) if symmetric else features(params_on[device], jax.device_put(xa, device))
                )
            block = gram(row_features[device], column_features(j, device), params_on[device])
            pending.append((r0, r1, cols[j][0], cols[j][1], block, symmetric and j != i))
            if len(pending) > 2 * len(devices):
                _write(out, *pending.popleft())
    while pending:
        _write(out, *pending.popleft())
    if jax.process_count() > 1:
        _exchange(out, schedule, (start, stop, length), rows, cols, symmetric)
    return out


def _schedule(n_rows, n_cols, symmetric):
    """Blocks ``(i, j)`` in sweep order: row chunks in turn, each sweeping the column chunks in alternating directions.

    A symmetric kernel has the blocks ``j >= i`` only. Each row starts on the
    columns the last one ended with, so their kept features are reused.
    """
    blocks = []
    for i in range(n_rows):
        order = range(i if symmetric else 0, n_cols)
        blocks += [(i, j) for j in (order if i % 2 == 0 else reversed(order))]
    return blocks


def _exchange(out, schedule, share, rows, cols, symmetric):
    """Write the other processes' blocks into ``out``, which holds this process's share of ``schedule``.

    Each process packs its blocks, padded to one tile shape, into an array of
    :func:`~.processes.share`'s ``length`` tiles; every process receives all
    of them (:func:`~.processes.gather`) and writes those it did not compute.
    """
    start, stop, length = share
    tiles = np.zeros((length, rows[0][2].shape[0], cols[0][2].shape[0]) + out.shape[2:], out.dtype)
    for tile, (i, j) in zip(tiles, schedule[start:stop]):
        (r0, r1, _), (c0, c1, _) = rows[i], cols[j]
        tile[: r1 - r0, : c1 - c0] = out[r0:r1, c0:c1]
    for b, tile in enumerate(processes.gather(tiles, len(schedule))):
        if not start <= b < stop:
            (i, j) = schedule[b]
            _write(out, rows[i][0], rows[i][1], cols[j][0], cols[j][1], tile, symmetric and j != i)


def _write(out, r0, r1, c0, c1, block, mirror):
    block = np.asarray(block)[: r1 - r0, : c1 - c0]
    out[r0:r1, c0:c1] = block
    if mirror:
        out[c0:c1, r0:r1] = block.transpose((1, 0, 3, 2)[: block.ndim])
