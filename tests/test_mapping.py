"""Layer mappings and truncated students."""

from __future__ import annotations

import pytest
import torch

from kdsearch.distill.config import StudentConfig
from kdsearch.distill.errors import ConfigError, ModelError
from kdsearch.distill.families.transformer import encoder_layers, truncate_teacher, truncated_layers
from kdsearch.distill.mapping import available_mappings, resolve_mapping


def test_registered_mappings() -> None:
    assert available_mappings() == ["first", "last", "pkd_last", "pkd_skip", "uniform"]


@pytest.mark.parametrize(
    ("name", "m", "n", "expected"),
    [
        ("uniform", 2, 6, [3, 6]),  # TinyBERT g(m) = 3m
        ("uniform", 3, 6, [2, 4, 6]),
        ("uniform", 4, 12, [3, 6, 9, 12]),
        ("uniform", 6, 6, [1, 2, 3, 4, 5, 6]),
        ("uniform", 4, 6, [2, 3, 4, 6]),  # round(1.5)=2, 3, round(4.5)=4, 6
        ("last", 2, 6, [5, 6]),
        ("first", 3, 6, [1, 2, 3]),
        ("pkd_skip", 3, 6, [2, 4, 6]),  # every k = 2nd teacher layer, then the last
        ("pkd_skip", 4, 6, [1, 2, 3, 6]),  # k = floor(6/4) = 1 (uniform rounds: 2, 3, 4, 6)
        ("pkd_skip", 6, 12, [2, 4, 6, 8, 10, 12]),  # the paper's BERT12 -> BERT6
        ("pkd_last", 6, 12, [7, 8, 9, 10, 11, 12]),  # the paper's PKD-Last
        ("pkd_last", 2, 6, [5, 6]),
        ([1, 6], 2, 6, [1, 6]),
    ],
)
def test_mapping_values(name: str | list[int], m: int, n: int, expected: list[int]) -> None:
    assert resolve_mapping(name, m, n) == expected


def test_mapping_errors() -> None:
    with pytest.raises(ConfigError, match="unknown distill.layer_mapping 'middle'"):
        resolve_mapping("middle", 2, 6)
    with pytest.raises(ConfigError, match="lists 3 teacher layers but the student has 2"):
        resolve_mapping([1, 2, 3], 2, 6)
    with pytest.raises(ConfigError, match=r"teacher layers \[7\] outside 1..6"):
        resolve_mapping([1, 7], 2, 6)
    with pytest.raises(ConfigError, match="student has 8 layers but the teacher only 6"):
        resolve_mapping("uniform", 8, 6)


def test_truncated_layers_choice() -> None:
    assert truncated_layers(StudentConfig(num_layers=2), 6, "uniform") == [3, 6]
    assert truncated_layers(StudentConfig(num_layers=3), 6, "first") == [1, 2, 3]
    assert truncated_layers(StudentConfig(keep_layers=[2, 5]), 6, "uniform") == [2, 5]
    with pytest.raises(ModelError, match=r"keep_layers \[9\] exceed the teacher's 6 layers"):
        truncated_layers(StudentConfig(keep_layers=[1, 9]), 6, "uniform")
    with pytest.raises(ValueError, match="strictly increasing"):
        StudentConfig(keep_layers=[3, 1])


def test_truncation_copies_the_chosen_layers(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    teacher = tiny_ctx.teacher.model
    student = truncate_teacher(teacher, [2, 5])
    assert student.config.num_hidden_layers == 2
    assert teacher.config.num_hidden_layers == 6  # the teacher is untouched
    t_layers, s_layers = encoder_layers(teacher), encoder_layers(student)
    assert len(s_layers) == 2
    for s_idx, t_idx in enumerate([2, 5]):
        s_sd, t_sd = s_layers[s_idx].state_dict(), t_layers[t_idx - 1].state_dict()
        assert s_sd.keys() == t_sd.keys()
        for k in s_sd:
            assert torch.equal(s_sd[k], t_sd[k])
        assert s_layers[s_idx] is not t_layers[t_idx - 1]  # a copy, not shared weights
    # keeping every layer reproduces the teacher exactly
    full = truncate_teacher(teacher, [1, 2, 3, 4, 5, 6]).eval()
    ids = torch.tensor([[101, 2023, 3185, 2001, 2307, 102]])
    with torch.no_grad():
        a = teacher.eval()(input_ids=ids).logits
        b = full(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-6)
