"""Structured-derivative rules read from a jaxpr: any ``apply_fn(params, x)`` as a tape of its linear primitives.

``jax.make_jaxpr`` traces the network on one sample. Every ``dot_general``
and ``conv_general_dilated`` whose one operand is a one-to-one view of a
parameter leaf (reshapes, transposes, casts, scalar factors) and whose other
operand depends on the input is a linear layer ``z = a W``; an ``add`` of a
parameter view that is broadcast over positions only, right after it, is its
bias. Everything else between them (nonlinearities, pooling, reshapes,
normalisation in inference mode, residual additions) is part of the function
and reaches the kernel through the cotangents, as in the built-in layers:
each linear layer's share of ``Theta(x, x') = J(x) J(x')^T`` is
``(a a'^T + 1) * (delta delta'^T)`` on flat inputs, else the Gram of
per-sample weight gradients ``sum_s patch_s^T delta_s`` (Novak,
Sohl-Dickstein & Schoenholz, "Fast Finite Width Neural Tangent Kernel", ICML
2022). A parameter that multiplies or is added to an input-dependent value
elementwise (BatchNorm's scale and offset, a bias that does not follow a
linear primitive) gets per-sample gradients of its own, ``vmap`` of a
vector-Jacobian product: its gradient ``sum_s a_s * delta_s`` costs no more
than the cotangent it is read from, so this is its structured rule. A leaf
used otherwise (a gather, a weight used twice, inside a nonlinearity) falls
back to the same per-sample gradients with a warning that names the
primitive, since its gradient may be as large as the leaf.

The jaxpr is evaluated equation by equation, per sample under ``jax.vmap``,
with a zero perturbation added to the output of every linear layer; the VJP
with respect to the perturbations gives the cotangents ``delta``.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .pytrees import as_argument

#: Call primitives whose sub-jaxpr is evaluated in line (their derivative is that of their body).
_CALLS = frozenset({"pjit", "jit", "closed_call", "core_call", "checkpoint", "remat"})
#: Linear maps of one operand that move its entries one-to-one (reshapes, transposes, casts).
_PERMUTING = frozenset({"reshape", "transpose", "squeeze", "expand_dims", "convert_element_type", "copy", "copy_p",
                        "rev", "reduce_precision"})
#: Linear maps of one operand that are not one-to-one.
_LINEAR = frozenset({"broadcast_in_dim", "reduce_sum", "slice", "pad", "concatenate", "dynamic_slice", "gather"})
#: Pure layout changes between a linear primitive and its bias.
_LAYOUT = frozenset({"reshape", "transpose", "squeeze", "expand_dims", "broadcast_in_dim", "copy", "copy_p"})
_LINEAR_PRIMITIVES = frozenset({"dot_general", "conv_general_dilated"})


@dataclass(frozen=True)
class TracedLinear:
    """A parametrised ``dot_general`` or ``conv_general_dilated`` found in a jaxpr, seen as a tapped layer.

    Its tape records hold the input-dependent operand in a canonical layout
    (positions first, then the contracted entries; channels last for a
    convolution) and the output as (positions, output entries), so the
    engine's layer rules apply unchanged.

    Parameters
    ----------
    use_bias : bool
        Whether a bias added right after the primitive is part of the layer.
    geometry : tuple or None
        For a convolution, ``(window, strides, padding, lhs_dilation,
        rhs_dilation, out_spatial)`` over its spatial axes; None for
        ``dot_general``, whose recorded inputs are already (n, S, P) patches.
    """

    use_bias: bool
    geometry: tuple | None = None

    def patches(self, inputs):
        """Per-sample, per-position inputs (n, S, P); for a convolution, strided slices of the padded input."""
        if self.geometry is None:
            return inputs.reshape(inputs.shape[0], -1, inputs.shape[-1])
        window, strides, padding, lhs_dilation, rhs_dilation, out_spatial = self.geometry
        n = inputs.shape[0]
        x = inputs.reshape((-1,) + inputs.shape[2:])
        config = [(0, 0, 0), *((lo, hi, d - 1) for (lo, hi), d in zip(padding, lhs_dilation)), (0, 0, 0)]
        x = lax.pad(x, jnp.zeros((), x.dtype), config)
        channels = x.shape[-1]
        slices = []
        for offset in itertools.product(*map(range, window)):
            start = [o * d for o, d in zip(offset, rhs_dilation)]
            stop = [s + (m - 1) * t + 1 for s, m, t in zip(start, out_spatial, strides)]
            slices.append(lax.slice(x, (0, *start, 0), (x.shape[0], *stop, channels), (1, *strides, 1)))
        joined = jnp.concatenate(slices, axis=-1)
        return joined.reshape(n, -1, joined.shape[-1])


@dataclass(frozen=True)
class _Step:
    """One equation of the flattened jaxpr: a primitive, its parameters and the ids of its operands and results."""

    primitive: object
    params: dict
    ins: tuple
    outs: tuple


@dataclass(frozen=True)
class _View:
    """A value that is an affine function of one parameter leaf alone: ``scale * P(leaf) + c``.

    ``scale`` is None when the linear part is not one-to-one (``P`` not a
    permutation); ``via`` then names the primitive that made it so.
    """

    leaf: int
    scale: float | None
    via: str | None = None


@dataclass(frozen=True)
class _Tap:
    """Where the evaluator reads a linear layer's input and perturbs its output, and how it lays them out."""

    step: int
    operand: int
    input_axes: tuple
    input_shape: tuple
    scale: float
    point: int
    output_axes: tuple
    output_shape: tuple


class _Program:
    """A jaxpr flattened to primitive steps on integer ids; call primitives are inlined.

    Its inputs are the network's own arrays (constants of the function that
    are not parameters: standardisation, running statistics), then the
    parameter leaves, then the input.
    """

    def __init__(self, closed, n_state, n_leaves):
        self.steps, self.shapes, self.dtypes, self.consts = [], {}, {}, {}
        self._ids = itertools.count()
        inputs = [self._fresh(v.aval) for v in closed.jaxpr.invars]
        self.state_ids = inputs[:n_state]
        self.leaf_ids, (self.x_id,) = inputs[n_state:n_state + n_leaves], inputs[n_state + n_leaves:]
        (self.out_id,) = self._walk(closed.jaxpr, closed.consts, inputs)

    def _fresh(self, aval):
        i = next(self._ids)
        self.shapes[i], self.dtypes[i] = tuple(aval.shape), aval.dtype
        return i

    def _atom(self, atom, env):
        if hasattr(atom, "val"):  # a literal
            i = self._fresh(atom.aval)
            self.consts[i] = atom.val
            return i
        return env[atom]

    def _walk(self, jaxpr, consts, ins):
        env = dict(zip(jaxpr.invars, ins))
        for var, value in zip(jaxpr.constvars, consts):
            env[var] = self._fresh(var.aval)
            self.consts[env[var]] = value
        for eqn in jaxpr.eqns:
            args = [self._atom(a, env) for a in eqn.invars]
            body = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr")) if eqn.primitive.name in _CALLS else None
            if body is not None:
                inner, inner_consts = (body.jaxpr, body.consts) if hasattr(body, "consts") else (body, ())
                outs = self._walk(inner, inner_consts, args)
            else:
                outs = [self._fresh(v.aval) for v in eqn.outvars]
                self.steps.append(_Step(eqn.primitive, eqn.params, tuple(args), tuple(outs)))
            env.update(zip(eqn.outvars, outs))
        return [self._atom(a, env) for a in jaxpr.outvars]


def _caller_level():
    """``stacklevel`` of the first frame outside this package, so that a warning points at the caller's line."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frames = inspect.stack(context=0)
    return next((i for i, frame in enumerate(frames) if not os.path.abspath(frame.filename).startswith(package)),
                len(frames))


def _bind(step, args):
    """Apply a step's primitive to ``args`` (``get_bind_params`` gives ``(subfuns, params)`` on older JAX)."""
    bound = step.primitive.get_bind_params(step.params)
    subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
    out = step.primitive.bind(*subfuns, *args, **params)
    return out if step.primitive.multiple_results else [out]


def _scalar(value):
    """``value`` as a Python float if it is a known scalar, else None."""
    if value is None or np.size(value) != 1:
        return None
    return float(np.asarray(value).reshape(()))


def _extend(step, position, view, values, sizes):
    """The :class:`_View` that ``step`` makes of ``view`` (its operand ``position``; the others constant), or None.

    ``sizes`` are the numbers of entries of the operand and the result.
    """
    name = step.primitive.name
    other = _scalar(values.get(step.ins[1 - position])) if len(step.ins) == 2 else None
    if name in _PERMUTING or name == "add" or (name == "sub" and position == 0):
        return view
    if name == "neg" or (name == "sub" and position == 1):
        return _View(view.leaf, None if view.scale is None else -view.scale, view.via)
    if name == "broadcast_in_dim" and sizes[0] == sizes[1]:
        return view
    if name in ("mul", "div") and not (name == "div" and position == 1):
        if other is None or view.scale is None:
            return _View(view.leaf, None, view.via or name)
        return _View(view.leaf, view.scale * other if name == "mul" else view.scale / other)
    if name in _LINEAR:
        return _View(view.leaf, None, view.via or name)
    return None


def _relabel(step, labels, in_shape, out_shape):
    """Output-axis labels of a layout step, or None if it mixes labelled axes."""
    if step.primitive.name == "transpose":
        return tuple(labels[p] for p in step.params["permutation"])
    kept = [(size, label) for size, label in zip(in_shape, labels) if size != 1]
    if [size for size, _ in kept] != [size for size in out_shape if size != 1]:
        return None
    it = iter(kept)
    return tuple(None if size == 1 else next(it)[1] for size in out_shape)


def _layout(labels, shape):
    """``(axes, shape)``: the transposition putting unlabelled, then ``"s"``, then ``"o"`` axes first, and the
    canonical (S, O) shape, or (O,) when there is one position."""
    unlabelled = [i for i, lab in enumerate(labels) if lab is None or shape[i] == 1]
    ordered = {kind: [i for _, i in sorted((lab[1], i) for i, lab in enumerate(labels)
                                           if lab is not None and lab[0] == kind and shape[i] != 1)]
               for kind in "so"}
    axes = tuple(unlabelled + ordered["s"] + ordered["o"])
    s, o = (math.prod(shape[i] for i in ordered[kind]) for kind in "so")
    return axes, ((o,) if s == 1 else (s, o))


class _Analysis:
    """Which steps are linear layers, which leaves are their weights and biases, and which fall back."""

    def __init__(self, program, leaf_names):
        self.program = program
        self.values = dict(program.consts)
        self.views = {leaf_id: _View(k, 1.0) for k, leaf_id in enumerate(program.leaf_ids)}
        self.consumers = defaultdict(list)
        for i, step in enumerate(program.steps):
            for a in step.ins:
                self.consumers[a].append(i)
        self.reasons = defaultdict(set)
        self.uses = defaultdict(list)
        self._scan()
        self.taps, self.layers, self.leaves, self.covered = [], [], [], set()
        self._assign(leaf_names)

    def _scan(self):
        program, views, values = self.program, self.views, self.values
        depends = {program.x_id}
        constant = set(program.consts) | set(program.state_ids)
        for i, step in enumerate(program.steps):
            name = step.primitive.name
            if all(a in constant for a in step.ins):
                constant.update(step.outs)
                if all(a in values for a in step.ins) and all(math.prod(program.shapes[o]) == 1 for o in step.outs):
                    with jax.ensure_compile_time_eval():
                        values.update(zip(step.outs, _bind(step, [values[a] for a in step.ins])))
                continue
            inputs = [j for j, a in enumerate(step.ins) if a in depends]
            if inputs:
                depends.update(step.outs)
            leaf_operands = [(j, views[a]) for j, a in enumerate(step.ins) if a in views]
            if not leaf_operands:
                continue
            if len(leaf_operands) == 1 and not inputs and len(step.outs) == 1:
                (j, view), = leaf_operands
                sizes = (math.prod(program.shapes[step.ins[j]]), math.prod(program.shapes[step.outs[0]]))
                extended = _extend(step, j, view, values, sizes)
                if extended is not None and all(a in constant for k, a in enumerate(step.ins) if k != j):
                    views[step.outs[0]] = extended
                    continue
            if len(step.ins) == 2 and len(leaf_operands) == 1 and len(inputs) == 1:
                (j, view), = leaf_operands
                kind = self._rule(step, j, view)
                if kind is not None:
                    self.uses[view.leaf].append((kind, i, j))
                    continue
            for _, view in leaf_operands:
                self.reasons[view.leaf].add(name)
        if program.out_id in views:
            self.reasons[views[program.out_id].leaf].add("output")

    def _rule(self, step, position, view):
        """What a step of an input-dependent operand and a parameter view is to that parameter.

        ``"linear"`` (a layer's weight), ``"bias"`` (an addition),
        ``"scale"`` (an elementwise product), ``"rejected"`` (a linear
        primitive without a rule for this operand; the reason is noted) or
        None (no rule).
        """
        name, params = step.primitive.name, step.params
        if name in ("add", "sub"):
            return "bias"
        if name == "mul":
            return "scale"
        if name not in _LINEAR_PRIMITIVES:
            return None
        if view.scale is None:
            self.reasons[view.leaf].add(view.via)
            return "rejected"
        if name == "dot_general" and params["dimension_numbers"][1] != ((), ()):
            self.reasons[view.leaf].add("dot_general with batch dimensions")
            return "rejected"
        if name == "conv_general_dilated" and (position != 1 or params["feature_group_count"] != 1
                                               or params["batch_group_count"] != 1):
            self.reasons[view.leaf].add("conv_general_dilated with grouped or transposed operands")
            return "rejected"
        return "linear"

    def _assign(self, leaf_names):
        program = self.program
        single = {}
        for leaf in range(len(program.leaf_ids)):
            uses = self.uses[leaf]
            if len(uses) > 1:
                self.reasons[leaf].add(f"{program.steps[uses[0][1]].primitive.name} (used {len(uses)} times)")
            if not self.reasons[leaf] and len(uses) == 1 and uses[0][0] != "rejected":
                single[leaf] = uses[0]
        for leaf, (kind, i, position) in sorted(single.items(), key=lambda item: item[1][1]):
            if kind == "linear":
                self._add_linear(leaf, i, position, single)
        fallback = sorted(leaf for leaf in range(len(program.leaf_ids)) if self.reasons[leaf])
        self.leaves = [leaf for leaf in single if leaf not in self.covered] + fallback
        self.fallback = {leaf_names[leaf]: sorted(self.reasons[leaf]) for leaf in fallback}
        if fallback:
            detail = "; ".join(f"{name} ({', '.join(reasons)})" for name, reasons in self.fallback.items())
            warnings.warn(f"no structured NTK rule for {len(fallback)} parameter leaves, which get per-sample "
                          f"gradients of their own: {detail}", stacklevel=_caller_level())

    def _add_linear(self, leaf, i, position, single):
        program, step = self.program, self.program.steps[i]
        view, z = self.views[step.ins[position]], step.outs[0]
        a_shape = program.shapes[step.ins[1 - position]]
        if step.primitive.name == "dot_general":
            (contract_l, contract_r), _ = step.params["dimension_numbers"]
            contract = (contract_l, contract_r)[1 - position]
            free = [d for d in range(len(a_shape)) if d not in contract]
            input_axes = tuple(free) + tuple(contract)
            n_free_w = len(program.shapes[step.ins[position]]) - len(contract)
            free_labels = [("s", k) for k in range(len(free))]
            w_labels = [("o", k) for k in range(n_free_w)]
            labels = tuple(free_labels + w_labels if position == 1 else w_labels + free_labels)
            s = math.prod(a_shape[d] for d in free)
            input_shape = (math.prod(a_shape[d] for d in contract),) if s == 1 else (s, -1)
            geometry = None
        else:
            lhs_spec, rhs_spec, out_spec = step.params["dimension_numbers"]
            input_axes = (lhs_spec[0], *lhs_spec[2:], lhs_spec[1])
            input_shape = tuple(a_shape[d] for d in input_axes)
            out_shape = program.shapes[z]
            labels = [None] * len(out_shape)
            labels[out_spec[0]], labels[out_spec[1]] = ("s", 0), ("o", 0)
            for k, d in enumerate(out_spec[2:]):
                labels[d] = ("s", k + 1)
            labels = tuple(labels)
            w_shape = program.shapes[step.ins[1]]
            padding = tuple((int(lo), int(hi)) for lo, hi in step.params["padding"])
            geometry = (tuple(w_shape[d] for d in rhs_spec[2:]), tuple(step.params["window_strides"]), padding,
                        tuple(step.params["lhs_dilation"]), tuple(step.params["rhs_dilation"]),
                        tuple(out_shape[d] for d in out_spec[2:]))
        point, point_labels, bias = self._fuse_bias(z, labels, single)
        axes, shape = _layout(point_labels, program.shapes[point])
        self.covered.add(leaf)
        if bias is not None:
            self.covered.add(bias)
        self.taps.append(_Tap(i, 1 - position, input_axes, input_shape, view.scale, point, axes, shape))
        is_output = point == program.out_id and len(shape) == 1
        rule = ("output" if is_output else "dense") if len(shape) == 1 and geometry is None else "grad"
        self.layers.append((TracedLinear(bias is not None, geometry), rule, shape[-1]))

    def _fuse_bias(self, z, labels, single):
        """Follow layout steps from ``z`` to an ``add`` of a per-channel bias: ``(point, labels, bias leaf)``."""
        program, current, current_labels = self.program, z, labels
        while len(self.consumers[current]) == 1 and current != program.out_id:
            i = self.consumers[current][0]
            step = program.steps[i]
            if step.primitive.name in _LAYOUT and step.ins[0] == current:
                current_labels = _relabel(step, current_labels, program.shapes[current], program.shapes[step.outs[0]])
                if current_labels is None:
                    break
                current = step.outs[0]
                continue
            if step.primitive.name == "add":
                b = step.ins[1] if step.ins[0] == current else step.ins[0]
                view = self.views.get(b)
                if view is not None and single.get(view.leaf, ("",))[:2] == ("bias", i) and view.scale == 1.0 \
                        and view.via is None and self._per_channel(b, current, current_labels, step.outs[0]):
                    return step.outs[0], current_labels, view.leaf
            break
        return z, labels, None

    def _per_channel(self, b, y, labels, out):
        """Whether the bias view ``b`` added to ``y`` varies along output-channel axes only, one entry per channel."""
        shapes = self.program.shapes
        b_shape, y_shape = shapes[b], shapes[y]
        if len(b_shape) != len(y_shape) or shapes[out] != y_shape:
            return False
        channels = math.prod(size for size, lab in zip(y_shape, labels) if lab is not None and lab[0] == "o")
        return math.prod(b_shape) == channels and all(
            size == 1 or (lab is not None and lab[0] == "o" and size == full)
            for size, full, lab in zip(b_shape, y_shape, labels))


def _canonical_input(tap, a):
    """A linear layer's input-dependent operand in the layout of its records, times the weight view's scale."""
    a = jnp.transpose(a, tap.input_axes).reshape(tap.input_shape)
    return a if tap.scale == 1.0 else a * jnp.asarray(tap.scale, a.dtype)


def _from_canonical(tap, perturbation, shape):
    """A perturbation in the canonical output layout of ``tap`` moved to the layout of the perturbed value."""
    transposed = perturbation.reshape([shape[i] for i in tap.output_axes])
    return jnp.transpose(transposed, np.argsort(tap.output_axes))


def _evaluate(analysis, state, leaves, x, perturbations=None):
    """The traced function at ``(state, leaves, x)``: outputs and every linear layer's canonical input.

    ``state`` are the network's own arrays, ``leaves`` the parameters';
    ``perturbations`` (canonical output layout, one per linear layer) are
    added to the layer outputs.
    """
    program = analysis.program
    env = dict(program.consts)
    env.update(zip(program.state_ids, state))
    env.update(zip(program.leaf_ids, leaves))
    env[program.x_id] = x
    inputs = [None] * len(analysis.taps)
    for i, step in enumerate(program.steps):
        args = [env[a] for a in step.ins]
        env.update(zip(step.outs, _bind(step, args)))
        k = analysis.tap_at.get(i)
        if k is not None:
            inputs[k] = _canonical_input(analysis.taps[k], args[analysis.taps[k].operand])
        for out in step.outs:
            k = analysis.point_at.get(out)
            if k is not None and perturbations is not None:
                env[out] = env[out] + _from_canonical(analysis.taps[k], perturbations[k], program.shapes[out])
    return env[program.out_id], inputs


@dataclass(frozen=True)
class TracedNetwork:
    """Any ``apply_fn(params, x)`` seen through its jaxpr as a tape of linear layers (see the module docstring).

    Equal for networks of equal structure (the network's pytree definition,
    its arrays' shapes) and equal parameter and input signatures, so the
    engine's compiled programs, which take the network's arrays and the
    parameters as arguments, are reused by every network of that structure
    whatever its constants. The jaxpr is traced and analysed once per
    structure, on first use.

    Parameters
    ----------
    network : tuple
        ``(treedef, array shapes and dtypes)`` of the network as a pytree
        (:func:`~sklearn_ntkal.engine.pytrees.as_argument`); the network maps
        ``(params, x) -> (n, C)``, acting on each sample independently.
    signature : tuple
        ``(treedef, leaf shapes and dtypes, sample shape, dtype)`` of the
        parameters and inputs; see :func:`trace`.
    """

    network: tuple
    signature: tuple

    @property
    def analysis(self):
        return _analyse(self)

    @property
    def fallback(self):
        """``{leaf path: primitives}`` of the parameter leaves no rule covers (per-sample gradients of their own)."""
        return dict(self.analysis.fallback)

    @property
    def rules(self):
        """``(layer, rule, out_dim)`` per linear layer in call order (see :mod:`~sklearn_ntkal.engine.structured`)."""
        return tuple(self.analysis.layers)

    def sizes(self):
        """Per-sample elements ``(inputs, outputs, weights, patches)`` per linear layer, and per own-gradient leaf."""
        analysis = self.analysis
        treedef, leaves, _, _ = self.signature
        shapes = analysis.program.shapes
        layers = []
        for tap, (layer, _, _) in zip(analysis.taps, analysis.layers):
            step = analysis.program.steps[tap.step]
            a = math.prod(shapes[step.ins[tap.operand]])
            weights = math.prod(shapes[step.ins[1 - tap.operand]])
            patches = a if layer.geometry is None else (
                math.prod(tap.output_shape[:-1]) * weights // tap.output_shape[-1])
            layers.append((a, math.prod(tap.output_shape), weights, patches))
        return layers, [math.prod(leaves[k][0]) for k in analysis.leaves]

    def cotangents(self, network, params, x, directions):
        """Canonical inputs, cotangents and own-leaf gradients of a batch, for K output directions.

        ``network`` is the traced network itself (a pytree argument of the
        compiled caller, so its arrays are inputs, not constants).

        Returns
        -------
        inputs : list of arrays (n, ...)
            Each linear layer's input-dependent operand, canonical layout.
        deltas : list of arrays (n, K, ...)
            ``d <m_k, f(x)> / d z`` at each linear layer's output ``z``.
        gradients : list of arrays (n, K, size)
            Per-sample gradients of the leaves outside the linear layers.
        """
        state, leaves = jax.tree_util.tree_leaves(as_argument(network)), jax.tree_util.tree_leaves(params)
        return jax.vmap(functools.partial(_sample_cotangents, self, state, leaves, directions=directions))(x)


def _sample_cotangents(traced, state, leaves, x, directions):
    analysis = traced.analysis
    own = [leaves[k] for k in analysis.leaves]

    def run(perturbations, own_leaves):
        full = list(leaves)
        for k, value in zip(analysis.leaves, own_leaves):
            full[k] = value
        out, inputs = _evaluate(analysis, state, full, x[None], perturbations)
        return out[0], inputs

    zeros = [jnp.zeros(tap.output_shape, analysis.program.dtypes[tap.point]) for tap in analysis.taps]
    _, pullback, inputs = jax.vjp(run, zeros, own, has_aux=True)
    deltas, grads = jax.vmap(pullback)(directions)
    return inputs, deltas, [g.reshape(directions.shape[0], -1) for g in grads]


@functools.lru_cache(maxsize=64)
def _analyse(traced):
    network_def, state = traced.network
    treedef, leaves, sample_shape, dtype = traced.signature
    params = jax.tree_util.tree_unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])

    def apply(state_leaves, p, x):
        return jax.tree_util.tree_unflatten(network_def, state_leaves)(p, x)

    closed = jax.make_jaxpr(apply)([jax.ShapeDtypeStruct(s, d) for s, d in state], params,
                                   jax.ShapeDtypeStruct((1,) + sample_shape, dtype))
    names = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    analysis = _Analysis(_Program(closed, len(state), len(leaves)), names)
    analysis.tap_at = {tap.step: k for k, tap in enumerate(analysis.taps)}
    analysis.point_at = {tap.point: k for k, tap in enumerate(analysis.taps)}
    return analysis


def _avals(leaves):
    return tuple((tuple(np.shape(leaf)), np.dtype(leaf.dtype)) for leaf in leaves)


def trace(network, params, sample_shape, dtype):
    """The :class:`TracedNetwork` of ``network`` for ``params`` and inputs of ``sample_shape`` and ``dtype``.

    ``network`` is any ``apply_fn``, taken as a pytree argument
    (:func:`~sklearn_ntkal.engine.pytrees.as_argument`): its arrays are inputs
    of the traced program, not constants.
    """
    state, network_def = jax.tree_util.tree_flatten(as_argument(network))
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return TracedNetwork((network_def, _avals(state)), (treedef, _avals(leaves), tuple(sample_shape), np.dtype(dtype)))
