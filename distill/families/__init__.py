"""Student families by name: ``transformer``, ``bilstm``, ``textcnn``.

Adding a family is one module defining a :class:`StudentModel` subclass decorated with
``@register_family``, plus its import line below.
"""

# The registry line: importing a family module registers it.
from . import bilstm, textcnn, transformer
from .base import ATTENTIONS, HIDDEN_STATES, ModelOutputs, StudentModel
from .registry import (
    available_families,
    family_options,
    get_family,
    option_fields,
    register_family,
)

__all__ = [
    "ATTENTIONS",
    "HIDDEN_STATES",
    "ModelOutputs",
    "StudentModel",
    "available_families",
    "bilstm",
    "family_options",
    "get_family",
    "option_fields",
    "register_family",
    "textcnn",
    "transformer",
]
