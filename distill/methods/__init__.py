"""Distillation methods by name. Adding one is a module with a ``@register_method`` class
plus its import line below."""

# The registry line: importing a method module registers it.
from . import kd
from .base import DistillationMethod, Stage, StepInputs
from .registry import available_methods, get_method, register_method

__all__ = [
    "DistillationMethod",
    "Stage",
    "StepInputs",
    "available_methods",
    "get_method",
    "kd",
    "register_method",
]
