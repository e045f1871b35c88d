"""``student.family`` in the search space: validated at submission, sampled define-by-run."""

from __future__ import annotations

import optuna
import pytest

from kdsearch.search.objective import build_run_config
from kdsearch.search.samplers import make_sampler
from kdsearch.search.space import PARAMS, sample_params

from .search_helpers import ready_engine, tiny_spec

FAMILY_SPACE = {
    "family": {"choices": ["transformer", "bilstm", "textcnn"]},
    "lr": {"low": 5e-5, "high": 3e-4, "log": True},
    "student_layers": {"low": 1, "high": 3},
    "hidden_weight": {"low": 0.0, "high": 1.0},
    "bilstm_hidden_size": {"low": 32, "high": 256, "log": True},
    "bilstm_lr": {"low": 5e-4, "high": 5e-3, "log": True},
    "textcnn_channels": {"choices": [32, 64]},
    "textcnn_kernel_sizes": {"choices": [[2, 3], [3, 4, 5]]},
    "augment_copies": {"low": 0, "high": 2},
    "temperature": 2.0,
    "epochs": 0.5,
}


def test_family_parameters_come_from_each_family_options() -> None:
    assert PARAMS["bilstm_hidden_size"].target == ("student", "options", "bilstm", "hidden_size")
    assert (
        PARAMS["bilstm_hidden_size"].kind == "int"
        and PARAMS["bilstm_hidden_size"].family == "bilstm"
    )
    assert PARAMS["textcnn_dropout"].kind == "float"
    assert PARAMS["bilstm_bidirectional"].kind == "categorical"
    assert PARAMS["student_layers"].family == "transformer"
    assert PARAMS["temperature"].family is None


def test_trials_sample_only_their_familys_parameters() -> None:
    spec = tiny_spec(search_space=FAMILY_SPACE, sampler="tpe", n_trials=24)
    study = optuna.create_study(directions=spec.directions, sampler=make_sampler(spec))
    parsed = spec.parsed_space()
    seen: dict[str, int] = {}

    def objective(trial: optuna.Trial) -> list[float]:
        values = sample_params(parsed, trial, spec.student.family)
        cfg = build_run_config(spec, values)  # always a valid engine config
        family = values["family"]
        seen[family] = seen.get(family, 0) + 1
        assert cfg.student.family == family
        if family == "transformer":
            assert {"student_layers", "hidden_weight", "lr"} <= set(trial.params)
            assert not {k for k in trial.params if k.startswith(("bilstm_", "textcnn_"))}
            assert cfg.train.lr == values["lr"]
        elif family == "bilstm":
            assert {"bilstm_hidden_size", "bilstm_lr"} <= set(trial.params)
            assert "lr" not in trial.params and "student_layers" not in trial.params
            assert cfg.train.lr == values["bilstm_lr"]
            assert cfg.student.options["bilstm"]["hidden_size"] == values["bilstm_hidden_size"]
            assert cfg.distill.hidden_weight == 0.0
        else:
            assert cfg.student.options["textcnn"]["kernel_sizes"] in ([2, 3], [3, 4, 5])
            assert "lr" in trial.params  # no textcnn_lr in this space: the shared lr applies
        assert 0 <= cfg.data.augment.copies <= 2
        return [0.5 + 0.01 * trial.number, 0.1]

    study.optimize(objective, n_trials=24)
    assert set(seen) == {"transformer", "bilstm", "textcnn"}


@pytest.mark.parametrize(
    ("space", "match"),
    [
        (
            {"family": {"choices": ["transformer", "gru"]}},
            "unknown student.family 'gru': use one of",
        ),
        (
            {"method": "tinybert"},
            "unknown distill.method 'tinybert': use one of early_exit, kd, theseus",
        ),
        ({"bilstm_layers": {"low": 1, "high": 9}}, "search_space.bilstm_layers: .*layers"),
        ({"textcnn_kernel_sizes": {"choices": [[3, 40]]}}, "kernel sizes must lie in 1..32"),
        ({"bilstm_dropout": {"low": 0.0, "high": 1.0}}, "search_space.bilstm_dropout"),
        ({"augment_copies": {"low": 0, "high": 100}}, "search_space.augment_copies"),
    ],
)
def test_impossible_family_values_are_refused_at_submission(space: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        tiny_spec(search_space={**space, "epochs": 0.5})


def test_the_families_example_spec_is_valid() -> None:
    from pathlib import Path

    from kdsearch.distill.configfile import load_model
    from kdsearch.search.spec import StudySpec

    spec = load_model(StudySpec, Path(__file__).parents[1] / "examples" / "study_families.yaml")
    assert spec.data.transfer == "builtin:rotten_tomatoes_unlabelled"
    assert spec.parsed_space()["family"].choices == ("transformer", "bilstm", "textcnn")
    assert spec.constraints[0].metric == "speedup_vs_teacher"


def test_a_student_deeper_than_a_teacher_folder_fails_the_study_before_any_trial(
    tiny_ctx,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """A teacher folder's depth is known only once it is loaded: the study fails at
    preparation, with the field named in its stored error, and runs no trial."""
    from kdsearch.distill.families.transformer import truncate_teacher
    from kdsearch.search import tables
    from kdsearch.search.runner import run_study

    folder = tmp_path / "teacher2"
    truncate_teacher(tiny_ctx.teacher.model, [1, 2]).save_pretrained(folder)
    tiny_ctx.teacher.tokenizer.save_pretrained(folder)
    spec = tiny_spec(
        n_trials=2,
        teacher={"model": str(folder), "finetune": False},
        student={"kind": "truncate", "num_layers": 3},
    )
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    name = run_study(spec, url, str(tmp_path / "art"))
    run = tables.get(ready_engine(url), name)
    assert run is not None and run.status == "failed"
    assert run.error is not None and "preparing the study failed: student.num_layers: " in run.error
    assert "has 2 layers: use at most 2" in run.error
    assert optuna.load_study(study_name=name, storage=url).get_trials() == []
