"""BERT-of-Theseus (progressive module replacing) on the real tiny teacher."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from kdsearch.distill.batching import train_batches
from kdsearch.distill.checkpoint import save_student
from kdsearch.distill.families.transformer import encoder_layers
from kdsearch.distill.mapping import resolve_mapping
from kdsearch.distill.methods.theseus import (
    REPLACE,
    SUCCESSOR,
    Theseus,
    module_groups,
    replacement_probability,
)
from kdsearch.distill.run import run_distillation
from kdsearch.distill.student import build_student
from kdsearch.distill.train import EvalEvent
from kdsearch.search.space import PARAMS, parse_param, sample_params

from .conftest import tiny_config
from .search_helpers import tiny_spec


def test_module_groups_and_curriculum() -> None:
    assert module_groups(6, 3) == [[0, 1], [2, 3], [4, 5]]
    assert module_groups(6, 4) == [[0, 1], [2, 3], [4], [5]]
    assert module_groups(12, 6)[5] == [10, 11]
    assert replacement_probability(0.5, 0.0, 1000) == 0.5  # constant
    assert replacement_probability(0.3, 0.1, 0) == 0.3
    assert replacement_probability(0.3, 0.1, 4) == pytest.approx(0.7)
    assert replacement_probability(0.3, 0.1, 50) == 1.0  # capped


def _theseus(tiny_ctx, **options: float):  # type: ignore[no-untyped-def]
    cfg = tiny_config(
        student={"num_layers": 3},
        distill={"method": "theseus", "alpha": 1.0, "options": {"theseus": options}},
        train={"stage1": {"epochs": 1, "lr": 2e-4}, "stage2": {"epochs": 0.5, "lr": 5e-5}},
    )
    student, _ = build_student(
        cfg.student, tiny_ctx.teacher, tiny_ctx.splits, cfg.distill.layer_mapping, 0
    )
    mapping = resolve_mapping(cfg.distill.layer_mapping, 3, tiny_ctx.teacher.num_layers)
    return cfg, student, Theseus(cfg, student, tiny_ctx.teacher, mapping)


def test_mixed_forward_is_the_teacher_or_the_successor(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    _, student, method = _theseus(tiny_ctx)
    gen = torch.Generator().manual_seed(0)
    batch = next(iter(train_batches(tiny_ctx.train, 8, tiny_ctx.pad_id, gen, False)))
    student.eval()
    was_training = tiny_ctx.teacher.module.training
    tiny_ctx.teacher.module.eval()
    with torch.no_grad():
        # nothing replaced: the predecessor's modules between the (teacher-copied) embeddings
        # and head are the teacher itself
        none = method.mixed_forward(student, batch, [False] * 3, frozenset()).logits
        teacher = tiny_ctx.teacher.module(batch.input_ids, batch.attention_mask).logits
        assert torch.allclose(none, teacher, atol=1e-5)
        every = method.mixed_forward(student, batch, [True] * 3, frozenset()).logits
        alone = student(batch.input_ids, batch.attention_mask).logits
        assert torch.allclose(every, alone, atol=1e-6)
        mixed = method.mixed_forward(student, batch, [True, False, True], frozenset()).logits
        assert not torch.allclose(mixed, alone) and not torch.allclose(mixed, teacher)
    tiny_ctx.teacher.module.train(was_training)
    # the student's own layer list is back in place
    assert encoder_layers(student.model) is method.successor and len(method.successor) == 3


def test_replacing_trains_only_the_successor_layers_then_all(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg, student, method = _theseus(tiny_ctx, p0=0.5, rate=0.05)
    method.begin_stage(next(s for s in method.stages() if s.name == REPLACE))
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all(".encoder.layer." in n for n in trainable)
    assert not any(p.requires_grad for p in method.predecessor.parameters())
    method.begin_stage(next(s for s in method.stages() if s.name == SUCCESSOR))
    assert all(p.requires_grad for p in student.parameters())

    # a whole run: both phases evaluate; phase 2 trains the embeddings too
    teacher_emb = tiny_ctx.teacher.model.base_model.embeddings.word_embeddings.weight.clone()
    teacher_state = {k: v.clone() for k, v in tiny_ctx.teacher.model.state_dict().items()}
    result_holder: list[EvalEvent] = []

    def callback(event: EvalEvent) -> None:
        result_holder.append(event)

    result = run_distillation(cfg, ctx=tiny_ctx, callback=callback)
    emb = result.student.model.base_model.embeddings.word_embeddings.weight  # type: ignore[attr-defined]
    assert [e.stage for e in result_holder] == [1, 2]
    assert not torch.equal(emb, teacher_emb)  # phase 2 trained it
    # the teacher (shared by every trial of a study) is untouched
    for k, v in tiny_ctx.teacher.model.state_dict().items():
        assert torch.equal(v, teacher_state[k]), k

    # the successor alone is saved: a plain 3-layer Hugging Face classifier
    folder = save_student(
        result.student, tiny_ctx.teacher.tokenizer, tmp_path / "s", tiny_ctx.splits.label_names
    )
    loaded = AutoModelForSequenceClassification.from_pretrained(folder)
    assert loaded.config.num_hidden_layers == 3
    saved = loaded.state_dict()
    mine = result.student.model.state_dict()  # type: ignore[attr-defined]
    assert saved.keys() == mine.keys()
    assert all(torch.equal(saved[k], mine[k]) for k in saved)
    assert sum(p.numel() for p in loaded.parameters()) == result.metrics["params"]


def test_phase_one_leaves_embeddings_and_head_frozen(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    """Only phase 1 (phase 2 is given no steps to change anything measurable): the
    embeddings and classifier after the replacing phase are still the teacher's."""
    cfg, student, method = _theseus(tiny_ctx, p0=1.0)
    from kdsearch.distill.train import Distiller

    rows, logits = tiny_ctx.training_rows()
    distiller = Distiller(tiny_ctx, student, cfg, method.mapping, rows, logits)
    d_method = distiller.method
    assert isinstance(d_method, Theseus)
    replace = d_method.stages()[0]
    d_method.begin_stage(replace)
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.1)
    gen = torch.Generator().manual_seed(0)
    for batch in list(train_batches(rows, 16, tiny_ctx.pad_id, gen, False))[:2]:
        loss = distiller.loss(batch, replace)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {n for n, p in student.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".encoder.layer." in n for n in changed)
    assert d_method.steps == 2 and d_method.probability() == 1.0


def test_theseus_parameters_are_sampled_only_in_theseus_trials() -> None:
    spec = tiny_spec(
        search_space={
            "method": {"choices": ["kd", "theseus"]},
            "theseus_p0": {"low": 0.2, "high": 0.9},
            "theseus_rate": {"low": 0.0, "high": 0.01},
            "hidden_weight": {"low": 0.0, "high": 1.0},
            "stage1_epochs": 0.5,
        }
    )
    assert PARAMS["theseus_p0"].methods == ("theseus",)
    assert PARAMS["hidden_weight"].methods == ("early_exit", "kd")
    space = spec.parsed_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        values = sample_params(space, trial, "transformer")
        seen.add(values["method"])
        if values["method"] == "theseus":
            assert {"theseus_p0", "theseus_rate"} <= set(values) and "hidden_weight" not in values
        else:
            assert "hidden_weight" in values and "theseus_p0" not in values
        assert values["stage1_epochs"] == 0.5
        study.tell(trial, 0.0)
    assert seen == {"kd", "theseus"}
    with pytest.raises(ValueError, match="theseus_p0"):
        from kdsearch.search.space import check_param_values

        check_param_values(parse_param("theseus_p0", {"low": 0.5, "high": 1.5}))
    # only transformer trials draw a method: the other families train with kd
    mixed = tiny_spec(
        search_space={
            "family": {"choices": ["transformer", "textcnn"]},
            "method": {"choices": ["kd", "theseus"]},
        }
    ).parsed_space()
    drawn = {"transformer": set(), "textcnn": set()}  # type: dict[str, set[str]]
    for _ in range(30):
        trial = study.ask()
        values = sample_params(mixed, trial, "transformer")
        drawn[values["family"]].add(values.get("method", "kd (not drawn)"))
        study.tell(trial, 0.0)
    assert drawn == {"transformer": {"kd", "theseus"}, "textcnn": {"kd (not drawn)"}}
    with pytest.raises(ValueError, match="method 'theseus' cannot run with student family"):
        tiny_spec(
            student={"kind": "fresh"}, search_space={"method": {"choices": ["kd", "theseus"]}}
        )
    with pytest.raises(ValueError, match="a method is chosen for transformer students only"):
        tiny_spec(
            student={"family": "bilstm"}, search_space={"method": {"choices": ["kd", "theseus"]}}
        )


def test_a_step_that_replaces_nothing_trains_nothing_and_does_not_fail(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    """p0 = 0: no module is ever replaced in phase 1, so its steps have no gradient (every
    trainable parameter is off the graph); the run goes on and phase 1 changes nothing."""
    cfg, _, _ = _theseus(tiny_ctx, p0=0.0)
    seen: dict[str, dict[str, torch.Tensor]] = {}
    first = {}

    def callback(event: EvalEvent) -> None:
        if event.stage_name == REPLACE:
            seen["after_replace"] = {
                k: v.detach().clone() for k, v in holder["student"].state_dict().items()
            }

    holder: dict[str, torch.nn.Module] = {}
    original = Theseus.__init__

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        holder["student"] = self.student
        first.update({k: v.detach().clone() for k, v in self.student.state_dict().items()})

    Theseus.__init__ = spy  # type: ignore[method-assign]
    try:
        result = run_distillation(cfg, ctx=tiny_ctx, callback=callback)
    finally:
        Theseus.__init__ = original  # type: ignore[method-assign]
    assert result.steps > 0
    after = seen["after_replace"]
    assert all(torch.equal(first[k], after[k]) for k in first)  # phase 1 moved nothing
    final = result.student.state_dict()
    assert any(not torch.equal(after[k], final[k]) for k in after)  # phase 2 trained
