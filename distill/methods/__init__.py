"""Distillation methods by name. Adding one is a module with a ``@register_method`` class
plus its import line below."""

# The registry line: importing a method module registers it.
from . import early_exit, kd, theseus
from .base import DistillationMethod, Stage, StepInputs
from .registry import (
    available_methods,
    get_method,
    method_option_fields,
    method_options,
    register_method,
)

__all__ = [
    "DistillationMethod",
    "Stage",
    "StepInputs",
    "available_methods",
    "early_exit",
    "get_method",
    "kd",
    "method_option_fields",
    "method_options",
    "register_method",
    "theseus",
]
