"""The look-ahead's posterior covariance over the candidates: columns from the kernels' structure, or held dense.

Over the candidates U and a conditioning set S (the labelled set L, then the
candidates picked so far), the posterior covariance over rows is::

    Delta = G(U, U) - G(U, S) (G(S, S) + lambda I)^-1 G(S, U),    G(X, X') = A(X) Theta(X, X') A(X')^T

with ``Theta`` the network's kernel (a scalar kernel acting as ``Theta (x) I_C``,
or C x C blocks) and ``A`` the output Jacobians (softmax outputs) or the
identity. Held whole it is (m q)^2 numbers: 128 MB for 4000 candidates with
a scalar kernel on logits (q = 1), 12.8 GB with q = 10 (probabilities, or the
full kernel). :class:`StructuredCovariance` never forms it. It holds the
kernels ``Theta(U, U)``, ``Theta(U, S)``, the factors ``A_U`` and the folded
inverse ``M = A_S^T (G(S, S) + lambda I)^-1 A_S`` ((|S| q)^2 numbers), and
computes any columns as::

    Delta[:, b] = A_U [ Theta(U, b) - Theta(U, S) M Theta(S, b) ] A_b^T

in O(m |S| q^2 |b| + |S|^2 q^2 |b|) operations, using the Kronecker structure of
a scalar kernel (for a scalar kernel: O(m^2 + m |S| + |S|^2 q^2) numbers held).
Conditioning on a picked candidate ``x`` is Gaussian-process conditioning,
``Delta <- Delta - Delta[:, x] s_x^-1 Delta[x, :]`` with
``s_x = Delta[x, x] + lambda I``, which is adding ``x`` to S: ``Theta(U, S)``
gains the column ``Theta(U, x)`` and ``M`` grows by the block-inverse formula
in O((|S| q)^2 q), labels playing no part. :class:`DenseCovariance` holds
``Delta`` and updates it by the rank-q formula in O((m q)^2 q): the faster
choice whenever it fits in memory (:func:`dense_bytes`).

Both are numpy: the conditioning set grows with every pick, and nothing here
should recompile when it does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import linalg

from .kernels import kernel_product, output_kernel, sample_rows, transpose_kernel

#: Numbers per temporary block when a large matrix is rewritten in place, block by block.
_BLOCK_NUMBERS = 2**22


def dense_bytes(n_rows, itemsize):
    """Bytes of a :class:`DenseCovariance` over ``n_rows`` rows while it is conditioned (held, updated, a product)."""
    return 3 * n_rows**2 * itemsize


def structured_bytes(m, n, q, kernel_size, factor_size, itemsize):
    """Bytes held by a :class:`StructuredCovariance` over ``m`` candidates conditioned on ``n`` samples.

    Parameters
    ----------
    m, n : int
    q : int
        Rows per sample.
    kernel_size : int
        Numbers per pair in ``Theta``: 1 for a scalar kernel, C^2 for blocks.
    factor_size : int
        Numbers per sample in the factors ``A``: C^2, or 0 without factors.
    itemsize : int

    Returns
    -------
    dict
        Bytes of ``gram``, ``cross``, ``factors`` and ``inverse``.
    """
    return {"gram": m * m * kernel_size * itemsize, "cross": m * n * kernel_size * itemsize,
            "factors": m * factor_size * itemsize, "inverse": (n * q) ** 2 * itemsize}


def structured_column_bytes(m, n, q, kernel_size, itemsize):
    """Bytes :meth:`StructuredCovariance.columns` uses per requested column block (candidate), temporaries included."""
    return itemsize * (4 * m * q * q + 3 * n * q * q + (m + n) * kernel_size)


def inverse_root(own, ridge):
    """``F^-1`` for a square root ``F F^T = s`` of ``s = own + ridge I``, eigenvalues clipped at ``ridge``.

    ``own`` is a posterior covariance block ``Delta[x, x]``, positive
    semi-definite in exact arithmetic, so ``s >= ridge I``; rounding (float32,
    or the null direction of softmax outputs, whose Jacobian sends the ones
    vector to 0) can push an eigenvalue below that, which the clip undoes.
    ``s^-1 = F^-T F^-1``.
    """
    values, vectors = np.linalg.eigh(own + ridge * np.eye(own.shape[0], dtype=own.dtype))
    return (vectors / np.sqrt(np.maximum(values, ridge))).T


def folded_inverse(chol, factors=None):
    """``M = A^T (G + lambda I)^-1 A`` from the lower Cholesky factor of ``G + lambda I``, in one new matrix.

    The inverse comes from LAPACK's ``potri`` and ``A`` (block diagonal, one
    (q, q) block per sample; ``None`` for the identity) is applied block by
    block in place, so the only temporaries are small blocks.

    Parameters
    ----------
    chol : ndarray of shape (N q, N q)
    factors : ndarray of shape (N, q, q) or None

    Returns
    -------
    ndarray of shape (N q, N q)
    """
    potri, = linalg.get_lapack_funcs(("potri",), (chol,))
    lower, info = potri(chol, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"the Cholesky factor is singular (LAPACK potri info={info})")
    n = lower.shape[0]
    step = max(1, _BLOCK_NUMBERS // n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        corner = np.tril(lower[start:stop, start:stop])
        lower[start:stop, start:stop] = corner + np.tril(corner, -1).T
        lower[start:stop, stop:] = lower[stop:, start:stop].T
    inverse = np.ascontiguousarray(lower.T)  # symmetric now: a view when potri returned Fortran order
    if factors is None:
        return inverse
    samples, q = factors.shape[0], factors.shape[-1]
    by_rows, by_columns = inverse.reshape(samples, q, n), inverse.reshape(n, samples, q)
    step = max(1, _BLOCK_NUMBERS // (n * q))
    for start in range(0, samples, step):
        block = slice(start, start + step)
        by_rows[block] = np.matmul(factors[block].transpose(0, 2, 1), by_rows[block])
    for start in range(0, samples, step):
        block = slice(start, start + step)
        by_columns[:, block] = np.matmul(by_columns[:, block].transpose(1, 0, 2), factors[block]).transpose(1, 0, 2)
    return inverse


@dataclass(frozen=True)
class StructuredCovariance:
    """``Delta`` over the rows of U, held as kernels and a folded inverse; columns on demand.

    Attributes
    ----------
    gram : ndarray of shape (m, m) or (m, m, C, C)
        ``Theta(U, U)``.
    cross : ndarray of shape (m, N) or (m, N, C, C)
        ``Theta(U, S)``, S the conditioning set.
    factors : ndarray of shape (m, C, C) or None
        Output Jacobians ``A_U``.
    inverse : ndarray of shape (N q, N q)
        ``M = A_S^T (G(S, S) + ridge I)^-1 A_S`` (see :func:`folded_inverse`).
    ridge : float
    q : int
        Rows per sample.
    """

    gram: np.ndarray
    cross: np.ndarray
    factors: np.ndarray | None
    inverse: np.ndarray
    ridge: float
    q: int

    @property
    def n_rows(self):
        """Rows of ``Delta``: ``m q``."""
        return self.gram.shape[0] * self.q

    @property
    def nbytes(self):
        """Bytes held (see :func:`structured_bytes`)."""
        return sum(a.nbytes for a in (self.gram, self.cross, self.factors, self.inverse) if a is not None)

    @property
    def column_bytes(self):
        """Bytes one candidate's columns take while being computed (see :func:`structured_column_bytes`)."""
        m, n = self.cross.shape[:2]
        return structured_column_bytes(m, n, self.q, self.gram[:1, :1].size, self.inverse.itemsize)

    def columns(self, index):
        """``Delta[:, x]`` for candidates ``x = U[index]``, an (m q, |index| q) array."""
        index = np.asarray(index)
        a_b = None if self.factors is None else self.factors[index]
        near, _ = output_kernel(self.gram[:, index], self.factors, a_b)
        folded = kernel_product(self.cross[index], self.inverse, a_b)  # (M Theta(S, b) A_b^T)^T, M symmetric
        near -= kernel_product(self.cross, folded.T, self.factors)
        return near

    def condition(self, index):
        """Add the candidates ``U[index]`` to the conditioning set (labels play no part in ``Delta``).

        With ``r = Theta(S, x) A_x^T`` and ``s = G(x, x) + ridge I - r^T M r``
        (``= Delta[x, x] + ridge I``, see :func:`inverse_root`), the block inverse gives
        ``M' = [[M + M r s^-1 r^T M, -M r s^-1 A_x], [-A_x^T s^-1 r^T M, A_x^T s^-1 A_x]]``.
        """
        index = np.asarray(index)
        a_b = None if self.factors is None else self.factors[index]
        folded = kernel_product(self.cross[index], self.inverse, a_b)  # (M r)^T
        between, _ = output_kernel(transpose_kernel(self.cross[index]), None, a_b)
        own, _ = output_kernel(self.gram[np.ix_(index, index)], a_b, a_b)
        root = inverse_root(own - folded @ between, self.ridge)
        blocks = np.eye(own.shape[0], dtype=own.dtype) if a_b is None else linalg.block_diag(*a_b)
        half, corner = root @ folded, root @ blocks
        n = self.inverse.shape[0]
        inverse = np.empty((n + own.shape[0],) * 2, dtype=self.inverse.dtype)
        step = max(1, _BLOCK_NUMBERS // n)
        for start in range(0, n, step):
            rows = slice(start, min(n, start + step))
            inverse[rows, :n] = self.inverse[rows] + half[:, rows].T @ half
        inverse[:n, n:] = -half.T @ corner
        inverse[n:, :n] = inverse[:n, n:].T
        inverse[n:, n:] = corner.T @ corner
        return replace(self, cross=np.concatenate([self.cross, self.gram[:, index]], axis=1), inverse=inverse)

    def dense(self, chunk):
        """The same covariance held whole, built ``chunk`` candidates at a time."""
        m, q = self.gram.shape[0], self.q
        matrix = np.empty((m * q, m * q), dtype=self.inverse.dtype)
        for start in range(0, m, chunk):
            stop = min(m, start + chunk)
            matrix[:, start * q:stop * q] = self.columns(np.arange(start, stop))
        return DenseCovariance(matrix, self.ridge, q)


@dataclass(frozen=True)
class DenseCovariance:
    """``Delta`` over the rows of U held whole, conditioned by rank-q updates.

    Attributes
    ----------
    matrix : ndarray of shape (m q, m q)
    ridge : float
    q : int
    """

    matrix: np.ndarray
    ridge: float
    q: int

    @property
    def n_rows(self):
        """Rows of ``Delta``: ``m q``."""
        return self.matrix.shape[0]

    @property
    def nbytes(self):
        """Bytes held."""
        return self.matrix.nbytes

    @property
    def column_bytes(self):
        """Bytes one candidate's columns take."""
        return self.matrix.shape[0] * self.q * self.matrix.itemsize

    def columns(self, index):
        """``Delta[:, x]`` for candidates ``x = U[index]``, an (m q, |index| q) array."""
        return self.matrix[:, sample_rows(index, self.q)]

    def condition(self, index):
        """``Delta - Delta[:, x] s_x^-1 Delta[x, :]`` with ``s_x = Delta[x, x] + lambda I``, O((m q)^2 |index| q).

        ``s_x^-1`` through :func:`inverse_root`.
        """
        rows = sample_rows(index, self.q)
        cols = self.matrix[:, rows]
        half = inverse_root(cols[rows], self.ridge) @ cols.T
        matrix = half.T @ half
        np.subtract(self.matrix, matrix, out=matrix)
        return replace(self, matrix=matrix)
