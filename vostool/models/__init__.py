"""Stateless segmentation networks, one file per paper, and the method registry.

Importing this package registers every method: each model module registers its builder with
:func:`register_method` when it is imported here (the registry itself imports no model module).
"""

from . import agss, embedding, flow_propagation, ovsnet, savos  # noqa: F401  (each registers its method)
from .base import MethodState, VOSMethod
from .registry import MethodInfo, available_methods, create_method, method_info, register_method

__all__ = ["MethodState", "VOSMethod", "MethodInfo", "available_methods", "create_method", "method_info", "register_method"]
