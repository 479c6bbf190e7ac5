"""Registry of segmentation methods: one typed entry (:class:`MethodInfo`) per method.

Each model module registers its builder with :func:`register_method`, next to the facts about
the method: its :class:`~vostool.models.base.VOSMethod` class (which says whether it uses optical
flow, its stages and its state), the paper, whether it needs weights, its default flow (only for
methods that use flow), and the keyword arguments of its ``tiny`` variant: a network small
enough for CPU tests and quick benchmarks (same modules and wiring, narrow widths), and of its
``compact`` variant where it has one: the size vostool trains and ships (a pretrained backbone,
narrow decoders; documented in the model module). Training recipes are the training layer's
(:data:`vostool.train.recipes.RECIPES`).

The registry imports a method's module the first time the method is asked for
(:data:`METHOD_MODULES`), so the weightless ``flow`` method runs without importing torch (1-2 s
of a short run's start-up) and a learned method loads only its own network.

A builder is a keyword-only function returning a method with a randomly initialised network
(weights are loaded by :mod:`vostool.weights`, never here). Keyword arguments that are None are
dropped, so unset CLI options never override a builder's defaults (the paper-size network).
``create_method(name, variant="tiny")`` builds the tiny variant, ``variant="compact"`` the
compact one; ``variant="paper"`` (or None) builds the builder's defaults.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .base import VOSMethod

Builder = Callable[..., VOSMethod]

VARIANTS = ("paper", "compact", "tiny")
"""Names accepted by :func:`create_method`'s ``variant``: ``paper`` = the builder's defaults."""

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
BACKBONES = (*RESNETS, "efficientnet-lite0", "efficientnet-lite2", "mobilenet-v2")
"""Encoder names accepted by :func:`vostool.models.backbones.create_encoder` (and ``--backbone``);
kept here, where importing them loads no torch, so the command line lists them fast."""

TIMM_BACKBONES = {"efficientnet-lite0": "tf_efficientnet_lite0", "efficientnet-lite2": "tf_efficientnet_lite2"}
"""Backbones built with timm (a dependency of vostool: the shipped AGSS-VOS weights use one)."""


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows about a method.

    Attributes:
        name: the ``--method`` name.
        builder: keyword-only function building the method.
        method_class: the class the builder returns.
        paper: one-line citation.
        needs_weights: False for weightless methods (``flow``).
        default_flow: the flow backend used when ``--flow`` is not given; None exactly for
            methods that use no flow.
        tiny: builder keyword arguments of the tiny variant (empty for ``flow``, which has no
            network: its tiny variant is its only one).
        compact: builder keyword arguments of the compact variant (empty: none registered).
    """

    name: str
    builder: Builder
    method_class: type[VOSMethod]
    paper: str
    needs_weights: bool = True
    default_flow: str | None = None
    tiny: dict[str, Any] = field(default_factory=dict)
    compact: dict[str, Any] = field(default_factory=dict)

    def variant_kwargs(self, variant: str | None) -> dict[str, Any]:
        """Builder keyword arguments of ``variant`` (``paper`` / None: none); InputError for an
        unknown variant or a compact one the method does not have."""
        if variant not in (None, *VARIANTS):
            raise InputError(f"unknown variant {variant!r} for method {self.name!r}; choose one of: {', '.join(VARIANTS)}")
        if variant == "compact" and self.needs_weights and not self.compact:
            raise InputError(f"method {self.name!r} has no compact variant; choose paper or tiny, or give the sizes")
        return dict(self.tiny if variant == "tiny" else self.compact if variant == "compact" else {})

    @property
    def uses_flow(self) -> bool:
        """Whether the session computes optical flow for this method (:attr:`VOSMethod.uses_flow`)."""
        return self.method_class.uses_flow


_REGISTRY: dict[str, MethodInfo] = {}

METHOD_MODULES = {"agss": "agss", "embedding": "embedding", "flow": "flow_propagation", "ovsnet": "ovsnet", "savos": "savos"}
"""Method name -> the module of :mod:`vostool.models` that registers it (imported on first use)."""


def _load(name: str) -> None:
    if name not in _REGISTRY and name in METHOD_MODULES:
        importlib.import_module(f"{__package__}.{METHOD_MODULES[name]}")


def register_method(
    name: str,
    method_class: type[VOSMethod],
    *,
    paper: str,
    needs_weights: bool = True,
    default_flow: str | None = None,
    tiny: dict[str, Any] | None = None,
    compact: dict[str, Any] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` (see :class:`MethodInfo` for the facts).

    Raises:
        ValueError: ``name`` is not the class's name, or ``default_flow`` is given for a method
            without flow (or missing for one with flow).
    """
    if method_class.name != name:
        raise ValueError(f"method {name!r} registers class {method_class.__name__} named {method_class.name!r}")
    if (default_flow is not None) != method_class.uses_flow:
        raise ValueError(f"method {name!r}: a default flow is given exactly when the method uses flow (uses_flow={method_class.uses_flow})")

    def deco(builder: Builder) -> Builder:
        _REGISTRY[name] = MethodInfo(name, builder, method_class, paper, needs_weights, default_flow, dict(tiny or {}), dict(compact or {}))
        return builder

    return deco


def available_methods() -> list[str]:
    """Sorted names of every method (registered, or known and registered on first use)."""
    return sorted({*METHOD_MODULES, *_REGISTRY})


def method_info(name: str) -> MethodInfo:
    """The :class:`MethodInfo` for ``name``; raises InputError naming the choices."""
    _load(name)
    if name not in _REGISTRY:
        raise InputError(f"unknown method {name!r}; choose one of: {', '.join(available_methods())}")
    return _REGISTRY[name]


def create_method(name: str, variant: str | None = None, **kwargs: Any) -> VOSMethod:
    """Build method ``name`` with a random-init network.

    ``variant="tiny"`` / ``"compact"`` starts from the method's registered keyword arguments of
    that variant, ``"paper"`` or None from none (the builder's defaults); explicit ``kwargs`` win
    over the variant's, and None-valued ones are ignored. Raises InputError for an unknown method
    or variant.
    """
    info = method_info(name)
    base = info.variant_kwargs(variant)
    return info.builder(**{**base, **{k: v for k, v in kwargs.items() if v is not None}})
