"""The chunked forward pass: a jitted function of a network over the rows of arrays, in padded chunks."""

from __future__ import annotations

import functools
import math

import jax
import numpy as np

from .budget import padded_chunks
from .processes import split_rows
from .pytrees import abstract, as_argument

#: Rows per chunk of a forward pass unless the caller gives a limit.
FORWARD_ROWS = 4096


def map_rows(fn, arrays, limit=FORWARD_ROWS):
    """``fn(*chunks)`` over padded chunks of the rows of ``arrays``, results joined as numpy arrays.

    Parameters
    ----------
    fn : callable
        Jitted; maps chunks of the arrays (``None`` entries passed as
        ``None``) to a pytree of arrays with the row axis first.
    arrays : list of ndarray or None
        Arrays with equal numbers of rows; the first one must not be None.
    limit : int
        Most rows per chunk; chunks have one bucketed length
        (:func:`~sklearn_ntkal.engine.budget.chunk_length`), so a pass
        compiles ``fn`` once however many rows it gets.

    Returns
    -------
    pytree of ndarray
        ``fn``'s results for every row, padding rows dropped. With several
        JAX processes each computes its share of the rows and receives the
        others' (:func:`~.processes.split_rows`).
    """
    return split_rows(functools.partial(_map_chunks, fn, limit=limit), arrays)


def _map_chunks(fn, *arrays, limit):
    parts = [jax.tree_util.tree_map(lambda a, n=stop - start: np.asarray(a)[:n], fn(*chunk))
             for start, stop, chunk in padded_chunks(list(arrays), limit)]
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)


def activation_elements(apply_fn, params, sample_shape, dtype):
    """Numbers produced by one sample's forward pass (every intermediate of its jaxpr), a proxy for backprop memory.

    Traced with the parameters in ``dtype``, as the pass runs them (:func:`~.pytrees.abstract`).
    """
    jaxpr = jax.make_jaxpr(apply_fn)(abstract(params, dtype), jax.ShapeDtypeStruct((1,) + tuple(sample_shape), dtype))
    return sum(math.prod(var.aval.shape) for eqn in jaxpr.eqns for var in eqn.outvars)


@jax.jit
def _apply(network, params, x):
    return network(params, x)


def outputs(apply_fn, params, X, limit=FORWARD_ROWS):
    """``apply_fn(params, X)`` as numpy, computed in chunks of at most ``limit`` rows.

    The network is an argument of one compiled program per chunk shape
    (:func:`~.pytrees.as_argument`), shared by every network of its structure.
    """
    return map_rows(functools.partial(_apply, as_argument(apply_fn), params), [X], limit)
