"""`bind`: a network bound to its parameters, with the engine's passes on them and what they need computed once."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..jax_compat import enable_x64
from .budget import DEFAULT_MEMORY_BUDGET, rows_within
from .forward import activation_elements, outputs
from .kernels import KernelSpec, compute
from .pytrees import as_argument


class Engine:
    """A network and its parameters, with the engine's passes on them.

    Everything the passes learn about the network by tracing it (its number
    of outputs, its structured-kernel plan, how many rows fit a chunk) is
    computed once per input shape and precision and kept here; the compiled
    programs themselves are module-level and take the network as an
    argument, so they are shared by every network of the same structure
    (a classifier fitted again, a clone, a warm-started copy).

    Build one with :func:`bind`. :class:`~sklearn_ntkal.JaxNetClassifier`
    keeps one as ``engine_``, which the linearised model and every strategy
    use.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, x) -> (n, C)``; a :class:`~sklearn_ntkal.networks.Network`
        or any function.
    params : pytree
    memory_budget : int, default=512 MiB
        Bytes one chunk of any pass may use.
    """

    def __init__(self, apply_fn, params, memory_budget=DEFAULT_MEMORY_BUDGET):
        self.network = as_argument(apply_fn)
        self.params = params
        self.memory_budget = int(memory_budget)
        self._facts = {}

    def fact(self, name, sample_shape, dtype, compute_fact):
        """``compute_fact()`` the first time ``name`` is asked for inputs of ``sample_shape`` and ``dtype``, then kept."""
        key = (name, tuple(sample_shape), np.dtype(dtype).name)
        if key not in self._facts:
            self._facts[key] = compute_fact()
        return self._facts[key]

    def forward_rows(self, sample_shape, dtype):
        """Rows per chunk of a forward pass: its activations (twice, for temporaries) within the budget."""
        return self.fact("forward_rows", sample_shape, dtype, lambda: rows_within(
            self.memory_budget, 2 * np.dtype(dtype).itemsize
            * activation_elements(self.network, self.params, sample_shape, dtype)))

    def outputs(self, X, params=None, float64=False):
        """Network outputs ``f(X)`` (n, C) as numpy, in chunks; ``params`` replaces the bound ones.

        With ``float64`` the network itself runs in float64 (parameters cast),
        so outputs do not depend on which chunk a row was evaluated in.
        """
        params = self.params if params is None else params
        with enable_x64(bool(float64)):
            dtype = jnp.float64 if float64 else jnp.float32
            params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
            X = np.asarray(X, dtype=dtype)
            return outputs(self.network, params, X, self.forward_rows(X.shape[1:], dtype))

    def kernel(self, X1, X2=None, kind="full", implementation="auto", float64=False, devices=None,
               memory_budget=None):
        """Empirical NTK of the bound network; see :func:`~sklearn_ntkal.engine.empirical_ntk`."""
        budget = self.memory_budget if memory_budget is None else memory_budget
        spec = KernelSpec(kind, implementation, budget, float64, None if devices is None else tuple(devices))
        return compute(spec.check(), self.network, self.params, X1, X2, self._facts)

    def __getstate__(self):
        return {**self.__dict__, "_facts": {}}


def engine_of(estimator):
    """The :class:`Engine` of a fitted estimator: its ``engine_``, or its ``apply_fn`` bound to its ``params_``."""
    engine = getattr(estimator, "engine_", None)
    return engine if engine is not None else bind(estimator.apply_fn, estimator.params_)


def bind(apply_fn, params, memory_budget=DEFAULT_MEMORY_BUDGET):
    """An :class:`Engine`: ``apply_fn`` bound to ``params``, its passes and what they need computed once.

    Parameters
    ----------
    apply_fn : callable
    params : pytree
    memory_budget : int, default=512 MiB

    Returns
    -------
    Engine
    """
    return Engine(apply_fn, params, memory_budget)
