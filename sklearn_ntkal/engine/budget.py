"""Chunk and memory-budget arithmetic: how many rows a pass takes at once, and the padded shapes it compiles for.

Every chunked pass of the engine (forward passes, kernel blocks, per-sample
gradients, look-ahead scores) sizes its chunks here, from a budget in bytes,
and pads them to a few fixed lengths (:func:`bucket`) so that compiled
programs are reused when the labelled set grows or the pool shrinks.
"""

from __future__ import annotations

import math

import numpy as np

#: Bytes of device memory one chunk of work may use unless the caller says otherwise.
DEFAULT_MEMORY_BUDGET = 512 * 2**20

#: Every size up to this one is padded to it: small sets share one compiled shape.
SMALLEST_BUCKET = 256


def bucket(n, smallest=SMALLEST_BUCKET):
    """Padded length for ``n`` rows: ``smallest`` up to it, then four sizes per octave.

    Above the smallest bucket, lengths are ``m 2^e`` with ``m`` in 4..7, so
    padding adds at most a quarter and a set that grows by a few rows per
    round crosses into a new compiled shape only a few times per doubling.
    A smaller ``smallest`` suits arrays whose cost grows with the square of
    their length (the look-ahead's candidates).
    """
    n = int(n)
    if n <= smallest:
        return smallest
    step = 1 << ((n - 1).bit_length() - 3)
    return -(-n // step) * step


def _bucket_at_most(limit):
    """The largest bucket length ``<= limit``, or ``limit`` itself below the smallest bucket."""
    if limit < SMALLEST_BUCKET:
        return limit
    step = 1 << (limit.bit_length() - 3)
    return limit // step * step


def chunk_length(n, limit):
    """Rows per chunk when ``n`` rows are processed at most ``limit`` at a time: a bucket length.

    ``bucket(n)`` if that fits within ``limit``, else the largest bucket
    length that does (or ``limit`` itself when it is below the smallest
    bucket), so that every chunk of every pass has one of a few shapes.
    """
    limit = max(1, int(limit))
    size = bucket(n)
    return size if size <= limit else _bucket_at_most(limit)


def even_chunk_length(n, limit):
    """Rows per chunk for ``n`` rows in as few chunks as :func:`chunk_length` gives, split as evenly as buckets allow.

    For passes whose cost grows with the square of the chunk (kernel
    blocks): with :func:`chunk_length` alone, 1000 rows in chunks of at
    most 774 are two chunks of 768, so a kernel block pass does 2.4 times
    the work of 1000 x 1000; two chunks of 512 do 1.05 times. The length is
    still a bucket length (or ``limit`` below the smallest bucket), so
    nearby sizes share compiled shapes.
    """
    count = -(-int(n) // chunk_length(n, limit))
    return chunk_length(-(-int(n) // count), limit)


def rows_within(budget, bytes_per_row):
    """How many rows of ``bytes_per_row`` bytes fit in ``budget`` bytes (at least 1)."""
    return max(1, int(budget // max(1, bytes_per_row)))


def chunk_size(n, sample_bytes, pair_bytes, budget):
    """Largest chunk ``b <= n`` with ``2 b sample_bytes + b^2 pair_bytes <= budget`` (at least 1).

    For square blocks of a pairwise quantity (a kernel block): two chunks'
    per-sample features and the ``b x b`` block they give.
    """
    b = (-sample_bytes + math.sqrt(sample_bytes**2 + pair_bytes * budget)) / pair_bytes
    return int(max(1, min(n, math.floor(b))))


def pad_rows(array, length):
    """``array`` with zero rows appended up to ``length`` rows (a view-free copy only when it is shorter)."""
    missing = length - array.shape[0]
    if missing <= 0:
        return array
    return np.concatenate([array, np.zeros((missing,) + array.shape[1:], array.dtype)])


def padded_chunks(arrays, limit):
    """``(start, stop, padded_arrays)`` per chunk of the rows of ``arrays``; the last chunk repeats its last row.

    Chunks have the one length :func:`chunk_length` gives for ``n`` rows and
    ``limit``, so every chunk of a pass has one shape and nearby sizes share
    compiled shapes. ``None`` entries of ``arrays`` pass through.
    """
    n = arrays[0].shape[0]
    size = chunk_length(n, limit)
    for start in range(0, n, size):
        stop = min(start + size, n)
        pad = size - (stop - start)
        yield start, stop, [None if a is None else np.concatenate([a[start:stop], np.repeat(a[stop - 1:stop], pad, 0)])
                            for a in arrays]
