"""Stateless segmentation networks, one file per paper, and the method registry."""

from .base import State, VOSMethod
from .registry import MethodInfo, available_methods, create_method, method_info, register_method

__all__ = ["State", "VOSMethod", "MethodInfo", "available_methods", "create_method", "method_info", "register_method"]
