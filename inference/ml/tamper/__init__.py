"""Tampering methods, registered by name and kind (``inject`` makes ``fake_added``, ``remove`` makes
``fake_removed``). Every method implements :class:`base.TamperMethod`; see ``base`` for the contract.

    from inference.ml.tamper import get_method, methods
    splice = get_method("splice", "inject")
    result = splice.apply(TamperRequest(image, donor_image=d, donor_mask=dm), np.random.default_rng(0))
"""
from __future__ import annotations

from . import gan as _gan
from .base import INJECT, REMOVE, SEAM_MARGIN, NotApplicable, TamperMethod, TamperRequest, TamperResult
from .inpaint import Inpaint
from .patch import Patch
from .splice import Splice

REGISTRY: dict[tuple[str, str], TamperMethod] = {}


def register(method: TamperMethod) -> TamperMethod:
    key = (method.name, method.kind)
    if not method.name or method.kind not in (INJECT, REMOVE):
        raise ValueError(f"A method needs a name and kind inject/remove, got {key}.")
    if key in REGISTRY:
        raise ValueError(f"Method {key} is registered twice.")
    REGISTRY[key] = method
    return method


def get_method(name: str, kind: str) -> TamperMethod:
    try:
        return REGISTRY[(name, kind)]
    except KeyError:
        raise KeyError(f"No {kind} method named {name!r}; known: {sorted(REGISTRY)}") from None


def methods(kind: str | None = None, names: list[str] | None = None) -> list[TamperMethod]:
    """Registered methods of ``kind`` (all kinds when None), restricted to ``names`` when given."""
    if names is not None:
        unknown = set(names) - {name for name, _ in REGISTRY}
        if unknown:
            raise KeyError(f"Unknown tampering method(s) {sorted(unknown)}; known: {sorted({n for n, _ in REGISTRY})}")
    return [m for (name, k), m in sorted(REGISTRY.items())
            if (kind is None or k == kind) and (names is None or name in names)]


register(Splice())
register(Inpaint())
register(Patch())
if _gan.WEIGHTS.is_file():  # the learned inpainter exists only once `train_inpainter` has shipped weights
    register(_gan.GanInject())
    register(_gan.GanRemove())

__all__ = ["INJECT", "REMOVE", "SEAM_MARGIN", "NotApplicable", "REGISTRY", "TamperMethod", "TamperRequest",
           "TamperResult", "get_method", "methods", "register"]
