"""Kernel-regression algebra of the linearised network: ridge Cholesky, posterior covariance, look-ahead updates.

The linearised network trained to convergence with MSE is kernel regression
on its residuals (Mohamadi, Bae & Sutherland, NeurIPS 2022)::

    f~_L(Z) = f(Z) + Theta(Z, L) K^-1 (Y_L - f(X_L)),    K = Theta(L, L) + lambda I
    Delta   = Theta(U, U) - Theta(U, L) K^-1 Theta(L, U)

and adding a point ``x`` with target ``y`` is a rank-one (rank-``q``) update::

    f~_{L+(x,y)}(u) = f~_L(u) + Delta[u, x] s_x^-1 (y - f~_L(x)),   s_x = Delta[x, x] + lambda I
    Delta          <- Delta - Delta[:, x] s_x^-1 Delta[x, :]

Adding ``lambda`` to ``s_x`` makes both updates equal, to rounding, to solving
again with ``L + {(x, y)}`` and the same ridge (the posterior of a Gaussian
process with noise variance ``lambda``); the paper's ``s_x = Delta[x, x]`` is
the ``lambda -> 0`` limit.

Every kernel is a 2-D matrix acting on "rows": a scalar kernel ``k`` used as
``k (x) I_C`` has one row per sample (``q = 1``) and the targets are (n, C);
a kernel with C x C blocks (the full eNTK, or any kernel of softmax outputs) is
flattened to (n C, n C) with ``q = C`` rows per sample and the targets to
(n C, 1). :func:`to_rows` and :func:`from_rows` convert between (n, C)
outputs and rows, so the functions below never branch on the flavour.
:func:`kernel_product` multiplies by such a matrix without forming it.

``Delta`` over many candidates with ``q = C`` does not fit in memory (12.8 GB
for 4000 candidates and 10 classes): :mod:`.covariance` computes its columns
from the kernels' structure chunk by chunk, or holds it dense where it fits.

The algebra whose shapes change with every new label or pick (fit, extend,
predict, the covariance and its conditioning) is numpy/SciPy, so nothing
recompiles from round to round; the hot loop over candidates
(:func:`lookahead`, :func:`variance_reduction`, :func:`update_mean`), whose
shapes are fixed by the number of candidates and the chunk, is JAX, to be jitted.
"""

from .covariance import (
    DenseCovariance,
    StructuredCovariance,
    dense_bytes,
    folded_inverse,
    inverse_root,
    structured_bytes,
    structured_column_bytes,
)
from .kernels import from_rows, kernel_product, output_kernel, sample_rows, softmax_jacobian, to_rows, transpose_kernel
from .regression import Regression, amplitude, extend, extend_cholesky, fit, predict, relative_ridge, ridge_cholesky
from .updates import lookahead, own_blocks, update_mean, variance_reduction

__all__ = [
    "DenseCovariance", "Regression", "StructuredCovariance", "amplitude", "dense_bytes", "extend", "extend_cholesky",
    "fit", "folded_inverse", "from_rows", "inverse_root", "kernel_product", "lookahead", "output_kernel",
    "own_blocks", "predict", "relative_ridge", "ridge_cholesky", "sample_rows", "softmax_jacobian",
    "structured_bytes", "structured_column_bytes", "to_rows", "transpose_kernel", "update_mean", "variance_reduction",
]
