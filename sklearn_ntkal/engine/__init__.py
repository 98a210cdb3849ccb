"""The engine floor: derivative work on a network (kernels, per-sample gradients, losses, chunked passes)."""

from .bound import Engine, bind, engine_of
from .budget import DEFAULT_MEMORY_BUDGET, chunk_size
from .kernels import IMPLEMENTATIONS, KernelSpec, empirical_ntk
from .losses import LOSSES
from .pairing import KINDS

__all__ = ["DEFAULT_MEMORY_BUDGET", "IMPLEMENTATIONS", "KINDS", "LOSSES", "Engine", "KernelSpec", "bind",
           "chunk_size", "empirical_ntk", "engine_of"]
