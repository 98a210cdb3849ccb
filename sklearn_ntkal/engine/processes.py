"""Pool-wide passes split over JAX processes: each computes a contiguous share, every process receives the whole.

With several processes (``jax.distributed.initialize``: one per host, or
per accelerator) every process runs the same program on the same data. The
engine's pool-wide passes, the chunked forward pass
(:func:`~.forward.map_rows`: predictions, residuals, penultimate features,
BADGE and Coreset embeddings), per-sample gradient statistics
(:mod:`~.gradients`) and kernel blocks (:mod:`~.kernels`), give each process a
contiguous share of their rows or blocks (:func:`share`), run it on that
process's local devices, and gather every share into the full numpy result
on every process (:func:`gather`). Everything above the engine (top-k,
tie-breaks, the sequential look-ahead's state, random draws seeded by
``random_state``) therefore runs replicated on identical inputs and picks the
same points as one process would; the look-ahead's candidate scoring splits
its chunks of candidates the same way (:func:`split_rows`). Training, the
labelled set's summed gradient and the kernel-regression algebra run
replicated.

Collectives need equal shapes on every process: shares are padded to one
length (``ceil(n / P)`` items for ``P`` processes: rows by repeating the
last row, kernel blocks by zero tiles), so every process compiles the same
programs, and the padding is dropped after gathering.
Arrays travel as bytes, so a float64 result arrives bit for bit whether or
not x64 is enabled. With one process every function here is the identity on
the work: no copy, no gather, no extra compilation.
"""

from __future__ import annotations

import collections

import jax
import numpy as np
from jax.experimental import multihost_utils

#: Items this process computed in split passes: ``"rows"`` of row passes, ``"blocks"`` of kernels, each with
#: ``"<kind> of"`` the items the pass had in all. Counted only with several processes; read by the tests.
WORK = collections.Counter()


def share(n, kind):
    """This process's contiguous share of ``n`` items, and the length every share is padded to.

    Parameters
    ----------
    n : int
    kind : str
        What the items are (``"rows"``, ``"blocks"``); with several processes
        the share is counted in :data:`WORK` under that name.

    Returns
    -------
    start, stop : int
        The share is ``[start, stop)``; the last processes' shares are
        shorter, possibly empty.
    length : int
        ``ceil(n / P)`` for ``P`` processes; ``n`` with one process.
    """
    count = jax.process_count()
    length = -(-n // count)
    start = min(n, jax.process_index() * length)
    stop = min(n, start + length)
    if count > 1:
        WORK[kind] += stop - start
        WORK[f"{kind} of"] += n
    return start, stop, length


def gather(local, n):
    """Every process's ``local`` arrays (:func:`share`'s ``length`` rows each), joined in process order; ``n`` rows kept.

    Parameters
    ----------
    local : pytree of ndarray
        The same structure, shapes and dtypes on every process.
    n : int
        Items in all; the rows past ``n`` are the shares' padding.

    Returns
    -------
    pytree of ndarray
        The same structure with ``n`` rows, identical on every process.
    """
    def one(array):
        array = np.ascontiguousarray(array)
        raw = multihost_utils.process_allgather(array.view(np.uint8).reshape(array.shape[0], -1), tiled=True)
        return raw.reshape(-1).view(array.dtype).reshape((-1,) + array.shape[1:])[:n]

    return jax.tree_util.tree_map(one, local)


def split_rows(run, arrays):
    """``run(*arrays)``, with several processes each running it on its share of the rows and gathering the results.

    Parameters
    ----------
    run : callable
        Maps arrays with equal numbers of rows (``None`` entries passed
        through) to a pytree of numpy arrays with one row per input row. It
        must not split again.
    arrays : list of ndarray or None
        The first one must not be None.

    Returns
    -------
    pytree of ndarray
        ``run``'s results for every row, on every process.
    """
    if jax.process_count() == 1:
        return run(*arrays)
    n = arrays[0].shape[0]
    start, stop, length = share(n, "rows")
    rows = np.minimum(np.arange(start, start + length), n - 1)
    return gather(run(*[None if a is None else a[rows] for a in arrays]), n)


def spread(size, n, per_process=2):
    """A chunk length at most ``size`` that cuts ``n`` rows into ``per_process`` chunks or more for every process.

    ``size`` itself with one process, so a single process chunks as before;
    with several, the blocks of a kernel of few rows still reach them all.
    """
    count = jax.process_count()
    return size if count == 1 else max(1, min(size, -(-n // (per_process * count))))
