"""Stateless segmentation networks, one file per paper, and the method registry.

Each model module registers its builder with :func:`register_method` when it is imported; the
registry imports a method's module the first time the method is asked for
(:data:`~vostool.models.registry.METHOD_MODULES`), so importing this package loads no network
(and no torch): the weightless ``flow`` method runs without them.
"""

from .base import MethodState, VOSMethod
from .registry import METHOD_MODULES, MethodInfo, available_methods, create_method, method_info, register_method

__all__ = [
    "METHOD_MODULES",
    "MethodState",
    "VOSMethod",
    "MethodInfo",
    "available_methods",
    "create_method",
    "method_info",
    "register_method",
]
