"""Empirical neural tangent kernels of JAX networks: full, class-trace and pseudo-NTK flavours."""

from .engine import DEFAULT_MEMORY_BUDGET, IMPLEMENTATIONS, KernelSpec, chunk_size, empirical_ntk
from .pairing import KINDS

__all__ = ["DEFAULT_MEMORY_BUDGET", "IMPLEMENTATIONS", "KINDS", "KernelSpec", "chunk_size", "empirical_ntk"]
