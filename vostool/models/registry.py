"""Registry of segmentation methods: name -> builder.

A builder is a keyword-only function returning a :class:`~vostool.models.base.VOSMethod` with
a randomly initialised network (weights are loaded by :mod:`vostool.weights`, never here).
Keyword arguments that are None are dropped, so unset CLI options never override a builder's
defaults (the paper-size network).

Each method registers, next to its builder, the keyword arguments of its ``tiny`` variant: a
network small enough for CPU tests and quick benchmarks (same modules and wiring, narrow widths).
``create_method(name, variant="tiny")`` builds it; ``variant="paper"`` (or None) builds the
builder's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import InputError
from .base import VOSMethod

Builder = Callable[..., VOSMethod]

VARIANTS = ("paper", "tiny")
"""Names accepted by :func:`create_method`'s ``variant``: ``paper`` = the builder's defaults."""


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows about a method.

    Attributes:
        name: the ``--method`` name.
        builder: keyword-only function building the method.
        needs_weights: False for weightless methods (``flow``).
        paper: one-line citation.
        default_flow: the flow backend used when ``--flow`` is not given.
        tiny: builder keyword arguments of the tiny variant (empty for ``flow``, which has no
            network: its tiny variant is its only one).
    """

    name: str
    builder: Builder
    needs_weights: bool
    paper: str
    default_flow: str = "raft-small"
    tiny: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, MethodInfo] = {}


def register_method(
    name: str, *, needs_weights: bool = True, paper: str = "", default_flow: str = "raft-small", tiny: dict[str, Any] | None = None
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` (``tiny``: the tiny variant's kwargs)."""

    def deco(builder: Builder) -> Builder:
        _REGISTRY[name] = MethodInfo(name, builder, needs_weights, paper, default_flow, dict(tiny or {}))
        return builder

    return deco


def available_methods() -> list[str]:
    """Sorted names of every registered method."""
    return sorted(_REGISTRY)


def method_info(name: str) -> MethodInfo:
    """The :class:`MethodInfo` for ``name``; raises InputError naming the choices."""
    if name not in _REGISTRY:
        raise InputError(f"unknown method {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_method(name: str, variant: str | None = None, **kwargs: Any) -> VOSMethod:
    """Build method ``name`` with a random-init network.

    ``variant="tiny"`` starts from the method's registered tiny keyword arguments, ``"paper"``
    or None from none (the builder's defaults); explicit ``kwargs`` win over the variant's, and
    None-valued ones are ignored. Raises InputError for an unknown method or variant.
    """
    info = method_info(name)
    if variant not in (None, *VARIANTS):
        raise InputError(f"unknown variant {variant!r} for method {name!r}; choose one of: {', '.join(VARIANTS)}")
    base = info.tiny if variant == "tiny" else {}
    return info.builder(**{**base, **{k: v for k, v in kwargs.items() if v is not None}})
