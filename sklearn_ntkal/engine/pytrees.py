"""Networks as arguments of compiled functions (any ``apply_fn`` as a pytree whose leaves are its arrays), and
parameters as abstract shapes for tracing."""

from __future__ import annotations

import jax
import numpy as np


class StaticFunction:
    """A function as a pytree without leaves: jitted code takes it as an argument, compared by identity.

    Parameters
    ----------
    fn : callable
        ``fn(params, x)``; arrays it closes over are constants of the programs compiled for it.
    """

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, params, x):
        return self.fn(params, x)

    def __repr__(self):
        return f"StaticFunction({self.fn!r})"


jax.tree_util.register_pytree_node(StaticFunction, lambda static: ((), static.fn),
                                   lambda fn, _: StaticFunction(fn))


def as_argument(apply_fn):
    """``apply_fn`` itself if it is a pytree of arrays (a :class:`~sklearn_ntkal.networks.Network`), else wrapped.

    A network passed to a compiled function as an argument shares the
    compiled program with every network of the same structure, whatever
    its constants; a plain function is wrapped in a :class:`StaticFunction`.
    """
    leaves, treedef = jax.tree_util.tree_flatten(apply_fn)
    if treedef.num_nodes > 1 and all(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves):
        return apply_fn
    return apply_fn if isinstance(apply_fn, StaticFunction) else StaticFunction(apply_fn)


def abstract(params, dtype):
    """``params`` as ``jax.ShapeDtypeStruct`` leaves in ``dtype``: what tracing a network in that precision takes.

    A convolution refuses operands of mixed precisions, so a network is traced
    with its parameters in the precision of its inputs.
    """
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), dtype), params)
