"""Compatibility shim that keeps modAL-python 0.4.x working with scikit-learn >= 1.8.

modAL-python (last release 0.4.2.1) is unmaintained.  Its ``ActiveLearner``
validates training data with::

    from sklearn.utils import check_X_y          # bound at module level
    ...
    check_X_y(X, y, ..., force_all_finite=self.force_all_finite)

in ``modAL.models.learners`` (``ActiveLearner._add_training_data``,
``ActiveLearner.fit`` and ``ActiveLearner.teach(only_new=True)``).
scikit-learn 1.6 renamed ``force_all_finite`` to ``ensure_all_finite`` and
1.8 removed the old keyword, so ``ActiveLearner.teach``/``fit`` -- and therefore
``Committee.teach``/``fit``, ``BayesianOptimizer.teach`` and everything built
on them -- raise ``TypeError: check_X_y() got an unexpected keyword argument
'force_all_finite'``.

:func:`patch_modal` fixes this without touching scikit-learn or copying modAL
code: it rebinds the module-level ``check_X_y`` / ``check_array`` names inside
the imported modAL modules to thin wrappers that translate
``force_all_finite=`` into ``ensure_all_finite=`` (identical semantics:
``True``, ``False`` or ``"allow-nan"``) and delegate to scikit-learn.
``sklearn_ntkal`` calls :func:`patch_modal` when it is imported, so users of
this package need do nothing.  The call is idempotent and a no-op when modAL is
not installed or when the installed scikit-learn still accepts
``force_all_finite`` (< 1.8).

Why a shim rather than pinning ``scikit-learn<1.8``: a pin would force every
user of this package off current scikit-learn (and whatever else requires it),
and on new Python versions (3.13+) old scikit-learn releases may have no
wheels at all.  The shim is a few lines, only affects modAL's own namespace,
and is covered by ``tests/test_compat_modal.py``.

Known modAL 0.4.2.1 issues that are *not* patched here (work around them in
calling code):

* ``BaseLearner.query`` / ``BaseCommittee.query`` first try to unpack the
  strategy result as ``(indices, scores)`` inside a bare ``try/except``; a
  strategy returning only indices is therefore called twice (and one returning
  exactly two indices is mis-unpacked).  Strategies should return
  ``(indices, scores)``, which are called exactly once.
* ``ActiveLearner`` cannot be ``sklearn.base.clone``-d (``get_params`` fails
  because ``bootstrap_init`` is not stored as an attribute).
* ``modAL.cluster`` imports the removed ``sklearn.cluster.hierarchical`` and
  ``modAL.utils.data.data_vstack`` uses ``DataFrame.append`` (removed in
  pandas 2), so teaching with ``pandas.DataFrame`` inputs fails; pass numpy
  arrays.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
import threading
import warnings
from typing import Callable, Tuple

__all__ = [
    "MODAL_AFFECTED_MODULES",
    "modal_needs_patch",
    "patch_modal",
    "patched_modules",
]

#: modAL modules known (modAL-python 0.4.2.1) to call ``check_X_y`` /
#: ``check_array`` with ``force_all_finite=``.  They are imported explicitly by
#: :func:`patch_modal`; any other already-imported ``modAL.*`` module binding
#: scikit-learn's validators is patched as well.
MODAL_AFFECTED_MODULES: Tuple[str, ...] = ("modAL.models.learners",)

_VALIDATOR_NAMES: Tuple[str, ...] = ("check_X_y", "check_array")
_SHIM_MARKER = "_sklearn_ntkal_force_all_finite_shim"
_UNSET = object()
_LOCK = threading.Lock()
_SHIMS: dict = {}  # original sklearn function -> its shim


def _sklearn_validators() -> dict:
    """Return ``{name: function}`` for scikit-learn's current validators."""
    from sklearn.utils import validation

    return {name: getattr(validation, name) for name in _VALIDATOR_NAMES}


def _sklearn_accepts_force_all_finite() -> bool:
    """Whether scikit-learn's ``check_X_y`` and ``check_array`` take ``force_all_finite``."""
    return all(
        "force_all_finite" in inspect.signature(func).parameters
        for func in _sklearn_validators().values()
    )


def _modal_installed() -> bool:
    try:
        return importlib.util.find_spec("modAL") is not None
    except (ImportError, ValueError):
        return False


def _is_shim(obj) -> bool:
    return getattr(obj, _SHIM_MARKER, False) is True


def _make_shim(func: Callable) -> Callable:
    """Wrap a scikit-learn validator so it accepts the removed ``force_all_finite``."""
    if func in _SHIMS:
        return _SHIMS[func]

    @functools.wraps(func)
    def shim(*args, force_all_finite=_UNSET, **kwargs):
        if force_all_finite is not _UNSET:
            if "ensure_all_finite" in kwargs:
                raise TypeError(
                    f"{func.__name__}() got both 'force_all_finite' and "
                    "'ensure_all_finite'; pass only 'ensure_all_finite'."
                )
            kwargs["ensure_all_finite"] = force_all_finite
        return func(*args, **kwargs)

    setattr(shim, _SHIM_MARKER, True)
    _SHIMS[func] = shim
    return shim


def _loaded_modal_modules():
    return [
        (name, module)
        for name, module in list(sys.modules.items())
        if module is not None and (name == "modAL" or name.startswith("modAL."))
    ]


def modal_needs_patch() -> bool:
    """Tell whether the installed modAL needs the ``force_all_finite`` shim.

    Returns
    -------
    bool
        ``True`` when modAL is installed and the installed scikit-learn no
        longer accepts ``force_all_finite`` (scikit-learn >= 1.8).  This
        describes the environment, not whether the shim has been applied; see
        :func:`patched_modules` for that.
    """
    return _modal_installed() and not _sklearn_accepts_force_all_finite()


def patched_modules() -> Tuple[str, ...]:
    """Names of the imported modAL modules whose validators are currently shimmed.

    Returns
    -------
    tuple of str
        Sorted module names (e.g. ``("modAL.models.learners",)``); empty when
        nothing is patched.
    """
    return tuple(
        sorted(
            name
            for name, module in _loaded_modal_modules()
            if any(_is_shim(vars(module).get(attr)) for attr in _VALIDATOR_NAMES)
        )
    )


def patch_modal() -> Tuple[str, ...]:
    """Make modAL-python 0.4.x work with scikit-learn >= 1.8.

    modAL calls ``check_X_y(..., force_all_finite=...)`` (a keyword removed in
    scikit-learn 1.8), so ``ActiveLearner.teach``/``fit`` and
    ``Committee.teach``/``fit`` raise ``TypeError``.  This function imports
    modAL and rebinds the module-level ``check_X_y`` / ``check_array`` names in
    every imported ``modAL.*`` module that holds scikit-learn's functions
    (``modAL.models.learners`` in modAL 0.4.2.1) to thin wrappers which map
    ``force_all_finite=`` onto ``ensure_all_finite=`` (same values and
    semantics: ``True`` rejects NaN/inf, ``"allow-nan"`` rejects only inf,
    ``False`` accepts both) and otherwise delegate unchanged to scikit-learn.
    scikit-learn itself is never modified.

    ``sklearn_ntkal`` calls this automatically when it is imported.

    Returns
    -------
    tuple of str
        Names of the modules patched by *this* call; empty when nothing had to
        be done (modAL not installed, scikit-learn still accepts
        ``force_all_finite``, or already patched).

    Notes
    -----
    * Idempotent and thread-safe; calling it again is harmless and also
      patches modAL modules imported since the previous call.
    * A no-op when modAL is not installed or scikit-learn < 1.8.  If importing
      modAL fails for another reason a ``RuntimeWarning`` is emitted instead of
      raising, so importing ``sklearn_ntkal`` never breaks because of modAL.
    * Why a shim instead of pinning ``scikit-learn<1.8``: a pin would force
      users off current scikit-learn, and on Python 3.13+ older scikit-learn
      releases may have no wheels.  The shim is tiny, confined to modAL's
      namespace and covered by ``tests/test_compat_modal.py``.

    Examples
    --------
    >>> from sklearn_ntkal.modal_compat import patch_modal, patched_modules
    >>> _ = patch_modal()
    >>> patch_modal()  # second call does nothing
    ()
    """
    if not modal_needs_patch():
        return ()
    with _LOCK:
        try:
            importlib.import_module("modAL")
            for name in MODAL_AFFECTED_MODULES:
                importlib.import_module(name)
        except Exception as exc:  # pragma: no cover - broken modAL install
            warnings.warn(
                f"sklearn_ntkal: could not import modAL to apply the scikit-learn "
                f"compatibility shim ({exc!r}); modAL learners may fail.",
                RuntimeWarning,
                stacklevel=2,
            )
            return ()

        originals = _sklearn_validators()
        newly_patched = []
        for mod_name, module in _loaded_modal_modules():
            namespace = vars(module)
            changed = False
            for attr, original in originals.items():
                if namespace.get(attr) is original:
                    setattr(module, attr, _make_shim(original))
                    changed = True
            if changed:
                newly_patched.append(mod_name)
        return tuple(sorted(newly_patched))
