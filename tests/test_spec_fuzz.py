"""Property-based: a spec the validator accepts only ever yields trial configs the engine
accepts (sampled from the corners of every range); a spec it refuses names the field."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kdsearch.search.objective import build_run_config
from kdsearch.search.space import _FAMILY_OVERRIDES, PARAMS, ParamSpec
from kdsearch.search.spec import StudySpec

from .search_helpers import tiny_spec
from .test_api import Server, alice_server

NUMBERS = st.one_of(
    st.integers(min_value=-5, max_value=200),
    st.floats(min_value=-2.0, max_value=200.0, allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1e-6, 0.5, 0.999, 1.0, 1.5, 4, 8, 64, 65, 100, 4096, 5000]),
)
CATEGORIES: dict[str, list[Any]] = {
    "family": ["transformer", "bilstm", "textcnn", "gru"],
    "method": ["kd", "pkd"],
    "soft_loss": ["kl", "soft_ce", "logit_mse", "mse"],
    "layer_mapping": ["uniform", "last", "first", "skip", [3, 6], [0, 2]],
    "mode": ["one_stage", "two_stage", "three_stage"],
    "use_transfer": [True, False],
    "bilstm_bidirectional": [True, False],
    "textcnn_kernel_sizes": [[3, 4, 5], [2], [0, 3], [40]],
}
NAMES = sorted(PARAMS)


def _value(name: str) -> st.SearchStrategy[Any]:
    if name in CATEGORIES:
        pool = CATEGORIES[name]
        return st.one_of(
            st.sampled_from(pool),
            st.lists(st.sampled_from(pool), min_size=1, max_size=3).map(lambda c: {"choices": c}),
        )
    ranged = st.tuples(NUMBERS, NUMBERS, st.booleans()).map(
        lambda t: {"low": min(t[0], t[1]), "high": max(t[0], t[1]), "log": t[2]}
    )
    return st.one_of(
        NUMBERS, ranged, st.lists(NUMBERS, min_size=1, max_size=3).map(lambda c: {"choices": c})
    )


SPACES = st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: _value(n) for n in names})
)


def _corners(p: ParamSpec) -> list[Any]:
    if p.is_fixed:
        return [p.fixed]
    if p.choices:
        return list(p.choices)
    low, high = p.low, p.high
    if p.kind == "int":
        return [int(low), int(high)]  # type: ignore[arg-type]
    return [low, high]


def _trial_values(spec: StudySpec, rng: random.Random) -> list[dict[str, Any]]:
    """Per family, all-low, all-high and two random mixes of every parameter's corners."""
    space = spec.parsed_space()
    families = _corners(space["family"]) if "family" in space else [spec.student.family]
    out = []
    for family in families:
        applies = {
            name: p
            for name, p in space.items()
            if name != "family"
            and PARAMS[name].family in (None, family)
            and not (name in _FAMILY_OVERRIDES and f"{family}_{name}" in space)
        }
        corners = {name: _corners(p) for name, p in applies.items()}
        picks = [
            {n: c[0] for n, c in corners.items()},
            {n: c[-1] for n, c in corners.items()},
            *({n: rng.choice(c) for n, c in corners.items()} for _ in range(2)),
        ]
        for pick in picks:
            if "family" in space:
                pick["family"] = family
            out.append(pick)
    return out


@settings(
    max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(space=SPACES, seed=st.integers(0, 1000))
def test_accepted_specs_only_yield_valid_trial_configs(space: dict[str, Any], seed: int) -> None:
    try:
        spec = tiny_spec(search_space=space)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(x) for x in err["loc"])
            message = str(err["msg"])
            # the location or the message names the field the user must change
            assert where or "search_space." in message, exc
            if where == "search_space":
                assert "search_space." in message or "parameter" in message, message
        return
    rng = random.Random(seed)
    for values in _trial_values(spec, rng):
        build_run_config(spec, values)  # raises if the engine refuses it


def test_corner_enumeration_covers_each_choice() -> None:
    spec = tiny_spec(
        search_space={"family": {"choices": ["bilstm", "textcnn"]}, "alpha": {"low": 0, "high": 1}}
    )
    values = _trial_values(spec, random.Random(0))
    assert {v["family"] for v in values} == {"bilstm", "textcnn"}
    assert {v["alpha"] for v in values} == {0.0, 1.0}
    assert len(values) == 8


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from alice_server(tmp_path_factory.mktemp("api_fuzz"), max_active_studies_per_key=100_000)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(space=SPACES)
def test_over_http_a_spec_is_accepted_exactly_when_valid_else_a_422_naming_a_field(
    api: Server, space: dict[str, Any]
) -> None:
    body = tiny_spec().model_dump(mode="json")
    body["search_space"] = space
    try:
        StudySpec.model_validate(body)
        valid = True
    except ValidationError:
        valid = False
    with api.client() as c:
        r = c.post("/v1/studies", json=body)
    if valid:
        assert r.status_code == 201, r.text
        return
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else json.dumps(detail)
    assert "search_space" in text, text


# --------------------------------------------------------------------------- beyond the space


def _section(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)  # type: ignore[arg-type]


SECTIONS = _section(
    data=_section(
        test_fraction=NUMBERS,
        eval_fraction=NUMBERS,
        max_test=NUMBERS,
        max_length=NUMBERS,
        source=st.sampled_from(["builtin:rotten_tomatoes", "builtin:vader_tweets", "ftp:x"]),
    ),
    metrics=_section(reference_class=NUMBERS, ece_bins=NUMBERS, latency_repeats=NUMBERS),
    confirm=_section(seeds=NUMBERS, top_k=NUMBERS),
    keep=_section(policy=st.sampled_from(["pareto", "top_k", "all"]), k=NUMBERS),
    pruner=_section(name=st.sampled_from(["median", "hyperband", "none", "patient"])),
    student=_section(num_layers=NUMBERS, family=st.sampled_from(["transformer", "bilstm", "rnn"])),
    sampler=st.sampled_from(["tpe", "nsga2", "random", "gp", "cmaes"]),
    n_trials=NUMBERS,
)


def _merged(overrides: dict[str, Any]) -> dict[str, Any]:
    body = tiny_spec().model_dump(mode="json")
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


@settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(overrides=SECTIONS, seed=st.integers(0, 1000))
def test_fuzzed_sections_accepted_only_when_every_trial_config_is(
    overrides: dict[str, Any], seed: int
) -> None:
    """Data, metrics, confirmation, keep, pruner, student, sampler and budget fuzzed: an
    accepted spec yields engine-valid configs at every corner; a refusal names its field."""
    from kdsearch.search.final import plan

    body = _merged(overrides)
    try:
        spec = StudySpec.model_validate(body)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(x) for x in err["loc"])
            assert where or any(k in str(err["msg"]) for k in overrides), exc
        return
    rng = random.Random(seed)
    build_run_config(spec, {})
    for values in _trial_values(spec, rng):
        build_run_config(spec, values)
    assert spec.confirm.seeds_for(spec.n_trials) >= 0
    assert plan(spec, [], []) == []  # the study's end plans from the trials it has


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(overrides=SECTIONS)
def test_over_http_fuzzed_sections_are_201_exactly_when_valid_else_422_naming_a_field(
    api: Server, overrides: dict[str, Any]
) -> None:
    body = _merged(overrides)
    try:
        StudySpec.model_validate(body)
        valid = True
    except ValidationError:
        valid = False
    with api.client() as c:
        r = c.post("/v1/studies", json=body)
    if valid:
        assert r.status_code in (201, 422), r.text
        if r.status_code == 422:  # the server's own limits (e.g. its max n_trials)
            assert "n_trials" in r.text or "exceeds" in r.text, r.text
        return
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else json.dumps(detail)
    assert any(key in text for key in overrides), text
