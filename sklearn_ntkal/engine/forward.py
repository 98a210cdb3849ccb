"""The chunked forward pass: a jitted function of a network over the rows of arrays, in padded chunks."""

from __future__ import annotations

import functools

import jax
import numpy as np

from .budget import padded_chunks

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
        ``fn``'s results for every row, padding rows dropped.
    """
    parts = [jax.tree_util.tree_map(lambda a, n=stop - start: np.asarray(a)[:n], fn(*chunk))
             for start, stop, chunk in padded_chunks(arrays, limit)]
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)


@functools.partial(jax.jit, static_argnums=0)
def _apply(apply_fn, params, x):
    return apply_fn(params, x)


def outputs(apply_fn, params, X, limit=FORWARD_ROWS):
    """``apply_fn(params, X)`` as numpy, computed in chunks of at most ``limit`` rows."""
    return map_rows(functools.partial(_apply, apply_fn, params), [X], limit)
