"""JAX names that moved between the versions this package supports (jax >= 0.4.31)."""

from __future__ import annotations

import jax
import jax.experimental

_ENABLE_X64 = getattr(jax, "enable_x64", None)

#: Context manager that turns float64 on or off locally (``jax.experimental.enable_x64`` in older JAX).
enable_x64 = jax.experimental.enable_x64 if _ENABLE_X64 is None else _ENABLE_X64
