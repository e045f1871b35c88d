"""Layer mappings: which teacher layer each student layer learns from.

Layers are numbered as in ``output_hidden_states``: 0 is the embeddings, 1..N the
transformer layers. A mapping returns, for student layers m = 1..M, the teacher layer
g(m). Embeddings always map 0 -> 0. Register a new mapping with ``@register_mapping``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .errors import ConfigError

MappingFn = Callable[[int, int], list[int]]
_MAPPINGS: dict[str, MappingFn] = {}


def register_mapping(name: str) -> Callable[[MappingFn], MappingFn]:
    def deco(fn: MappingFn) -> MappingFn:
        _MAPPINGS[name] = fn
        return fn

    return deco


def available_mappings() -> list[str]:
    return sorted(_MAPPINGS)


@register_mapping("uniform")
def uniform(student_layers: int, teacher_layers: int) -> list[int]:
    """TinyBERT's g(m) = k*m with k = N/M; rounded when N is not a multiple of M."""
    return [round(m * teacher_layers / student_layers) for m in range(1, student_layers + 1)]


@register_mapping("last")
def last(student_layers: int, teacher_layers: int) -> list[int]:
    """The top M teacher layers."""
    return list(range(teacher_layers - student_layers + 1, teacher_layers + 1))


@register_mapping("first")
def first(student_layers: int, teacher_layers: int) -> list[int]:
    """The bottom M teacher layers."""
    return list(range(1, student_layers + 1))


@register_mapping("pkd_skip")
def pkd_skip(student_layers: int, teacher_layers: int) -> list[int]:
    """PKD-Skip (Sun et al. 2019): student layer m < M learns from every k-th teacher layer,
    g(m) = k*m with k = floor(N/M); the last student layer from the last teacher layer."""
    k = max(1, teacher_layers // student_layers)
    return [k * m for m in range(1, student_layers)] + [teacher_layers]


@register_mapping("pkd_last")
def pkd_last(student_layers: int, teacher_layers: int) -> list[int]:
    """PKD-Last (Sun et al. 2019): the student learns from the teacher's last M layers."""
    return last(student_layers, teacher_layers)


def resolve_mapping(
    mapping: str | Sequence[int], student_layers: int, teacher_layers: int
) -> list[int]:
    """Teacher layer g(m) for each student layer m = 1..M, validated."""
    if student_layers > teacher_layers:
        raise ConfigError(
            f"the student has {student_layers} layers but the teacher only {teacher_layers}: "
            "use at most as many student layers as teacher layers"
        )
    if isinstance(mapping, str):
        fn = _MAPPINGS.get(mapping)
        if fn is None:
            raise ConfigError(
                f"unknown distill.layer_mapping {mapping!r}: use one of "
                f"{', '.join(available_mappings())} or an explicit list of teacher layers"
            )
        result = fn(student_layers, teacher_layers)
    else:
        result = [int(x) for x in mapping]
        if len(result) != student_layers:
            raise ConfigError(
                f"distill.layer_mapping lists {len(result)} teacher layers but the student has "
                f"{student_layers}: give one teacher layer (1..{teacher_layers}) per student layer"
            )
    bad = [x for x in result if not 1 <= x <= teacher_layers]
    if bad:
        raise ConfigError(
            f"distill.layer_mapping has teacher layers {bad} outside 1..{teacher_layers}"
        )
    return result
