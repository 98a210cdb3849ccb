"""The optional neural-tangents backend, used only where that package imports."""

from __future__ import annotations

from .autodiff import directed


def neural_tangents_fn(apply_fn, kind, n_outputs):
    """``(params, x1, x2) -> block`` from ``neural_tangents.empirical_ntk_fn`` (structured derivatives).

    Raises
    ------
    ImportError
        With the reason when neural-tangents cannot be imported: its last
        release (0.6.5) imports TensorFlow and works only with jax <= 0.4.25
        and numpy < 2.
    """
    try:
        import neural_tangents as nt
    except Exception as exc:  # it fails with ImportError, AttributeError, ... on current JAX
        raise ImportError(
            "implementation='neural_tangents' needs the neural-tangents package, which could not be "
            f"imported ({type(exc).__name__}: {exc}). neural-tangents 0.6.5 works only with jax<=0.4.25 "
            "and numpy<2 and imports TensorFlow; use implementation='auto' (structured) instead."
        ) from exc
    fn = directed(apply_fn, kind, n_outputs)
    trace_axes = () if kind == "full" else (-1,)
    kernel_fn = nt.empirical_ntk_fn(
        fn, trace_axes=trace_axes, vmap_axes=0, implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES
    )

    def block(params, x1, x2):
        k = kernel_fn(x1, x2, params)
        return k if kind == "full" else k / (1 if kind == "pntk" else n_outputs)

    return block

