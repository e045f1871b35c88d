"""Search-space parameters: each fixed or ranged, each mapped onto a field of RunConfig.

A parameter in a spec is either a bare value (fixed), ``{"low", "high", "log", "step"}``
(a range; int or float by the parameter's kind) or ``{"choices": [...]}`` (categorical).

Conditional parameters (Optuna's define-by-run): ``family`` picks the student family, and a
parameter that belongs to one family (``student_layers`` and the intermediate-loss settings
to ``transformer``; ``bilstm_hidden_size``, ``textcnn_channels``, ... to theirs) is sampled
only in trials of that family. ``<family>_lr`` and ``<family>_epochs`` override ``lr`` and
``epochs`` for that family's trials (BiLSTM and TextCNN students want larger learning rates
than transformers). The family parameters are read from each family's own options model, so
a new family brings its searchable shape with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import optuna

Kind = Literal["float", "int", "categorical"]


@dataclass(frozen=True)
class ParamDef:
    kind: Kind
    target: tuple[str, ...]  # where the value goes in the RunConfig dict
    help: str
    family: str | None = None  # sampled only in trials of this student family
    methods: tuple[str, ...] = ()  # sampled only in trials of these methods (empty: any)


TRANSFORMER = "transformer"
# Settings that only a transformer student can use (TinyBERT's losses need its layers).
_TRANSFORMER_ONLY = {
    "hidden_weight",
    "attention_weight",
    "embedding_weight",
    "pkd_weight",
    "layer_mapping",
    "method",  # the other families train with kd: a method is chosen for transformers
    "mode",
    "stage1_lr",
    "stage1_epochs",
    "stage2_lr",
    "stage2_epochs",
    "student_layers",
}
# The kd method's loss settings: sampled only for methods that use them (``uses_kd_losses``).
_KD_ONLY = {"hidden_weight", "attention_weight", "embedding_weight", "pkd_weight", "mode"}
# Training settings a family may override with ``<family>_<name>``.
_FAMILY_OVERRIDES = {
    "lr": ParamDef("float", ("train", "lr"), "learning rate"),
    "epochs": ParamDef("float", ("train", "epochs"), "epochs"),
}

_BASE_PARAMS: dict[str, ParamDef] = {
    "temperature": ParamDef("float", ("distill", "temperature"), "softmax temperature T"),
    "alpha": ParamDef("float", ("distill", "alpha"), "weight of the hard-label loss"),
    "soft_loss": ParamDef("categorical", ("distill", "soft_loss"), "kl, soft_ce or logit_mse"),
    "hidden_weight": ParamDef("float", ("distill", "hidden_weight"), "hidden-state MSE weight"),
    "attention_weight": ParamDef("float", ("distill", "attention_weight"), "attention MSE weight"),
    "embedding_weight": ParamDef("float", ("distill", "embedding_weight"), "embedding MSE weight"),
    "pkd_weight": ParamDef("float", ("distill", "pkd_weight"), "PKD patient loss weight (beta)"),
    "layer_mapping": ParamDef(
        "categorical", ("distill", "layer_mapping"), "uniform/last/first/pkd_skip/pkd_last"
    ),
    "mode": ParamDef("categorical", ("distill", "mode"), "one_stage or two_stage"),
    "lr": ParamDef("float", ("train", "lr"), "one-stage learning rate"),
    "epochs": ParamDef("float", ("train", "epochs"), "one-stage epochs"),
    "stage1_lr": ParamDef("float", ("train", "stage1", "lr"), "two-stage: intermediate lr"),
    "stage1_epochs": ParamDef("float", ("train", "stage1", "epochs"), "two-stage: stage 1 epochs"),
    "stage2_lr": ParamDef("float", ("train", "stage2", "lr"), "two-stage: prediction lr"),
    "stage2_epochs": ParamDef("float", ("train", "stage2", "epochs"), "two-stage: stage 2 epochs"),
    "batch_size": ParamDef("int", ("train", "batch_size"), "training batch size"),
    "weight_decay": ParamDef("float", ("train", "weight_decay"), "AdamW weight decay"),
    "warmup_ratio": ParamDef("float", ("train", "warmup_ratio"), "share of warmup steps"),
    "student_layers": ParamDef("int", ("student", "num_layers"), "student depth"),
    "family": ParamDef("categorical", ("student", "family"), "student family"),
    "method": ParamDef("categorical", ("distill", "method"), "distillation method"),
    "use_transfer": ParamDef(
        "categorical", ("data", "use_transfer"), "train on the transfer rows (true/false)"
    ),
    "augment_copies": ParamDef(
        "int", ("data", "augment", "copies"), "augmented copies per text (Tang et al.)"
    ),
}


def _option_kind(annotation: Any) -> Kind:
    if annotation is bool or annotation is int:
        return "categorical" if annotation is bool else "int"
    if annotation is float:
        return "float"
    return "categorical"


def _all_params() -> dict[str, ParamDef]:
    from kdsearch.distill.families import available_families, option_fields
    from kdsearch.distill.methods import available_methods, get_method, method_option_fields

    kd_losses = tuple(m for m in available_methods() if get_method(m).uses_kd_losses)
    params = {
        name: ParamDef(
            d.kind,
            d.target,
            d.help,
            TRANSFORMER if name in _TRANSFORMER_ONLY else None,
            kd_losses if name in _KD_ONLY else (),
        )
        for name, d in _BASE_PARAMS.items()
    }
    for family in available_families():
        if family == TRANSFORMER:
            continue
        for name, d in _FAMILY_OVERRIDES.items():
            params[f"{family}_{name}"] = ParamDef(d.kind, d.target, f"{family}: {d.help}", family)
        for field, info in option_fields(family).items():
            params[f"{family}_{field}"] = ParamDef(
                _option_kind(info.annotation),
                ("student", "options", family, field),
                f"{family}: {info.description or field.replace('_', ' ')}",
                family,
            )
    for method in available_methods():
        for field, info in method_option_fields(method).items():
            params[f"{method}_{field}"] = ParamDef(
                _option_kind(info.annotation),
                ("distill", "options", method, field),
                f"{method}: {info.description or field.replace('_', ' ')}",
                methods=(method,),
            )
    return params


PARAMS: dict[str, ParamDef] = _all_params()


def sample_params(
    space: dict[str, ParamSpec],
    trial: optuna.Trial,
    default_family: str,
    default_method: str = "kd",
) -> dict[str, Any]:
    """Sample one trial's values, define-by-run: the family and the method first, then only
    the parameters that apply to them (a family's own override beats the generic one)."""
    values: dict[str, Any] = {}
    family, method = default_family, default_method
    if "family" in space:
        family = space["family"].suggest(trial)
        values["family"] = family
    if "method" in space and PARAMS["method"].family in (None, family):
        method = space["method"].suggest(trial)
        values["method"] = method
    for name, p in space.items():
        owner = PARAMS[name].family
        if name in ("family", "method") or (owner is not None and owner != family):
            continue
        if PARAMS[name].methods and method not in PARAMS[name].methods:
            continue
        if owner is None and f"{family}_{name}" in space and name in _FAMILY_OVERRIDES:
            continue  # the family's own lr/epochs apply instead
        values[name] = p.suggest(trial)
    return values


def is_conditional(space: dict[str, ParamSpec]) -> bool:
    """Whether trials may sample different parameter sets (TPE then groups them)."""
    return any(name in space and not space[name].is_fixed for name in ("family", "method"))


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: Kind
    fixed: Any = None
    is_fixed: bool = False
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def is_grid_ready(self) -> bool:
        return self.is_fixed or bool(self.choices)

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.is_fixed:
            return self.fixed
        if self.choices:
            encoded = [_encode_choice(c) for c in self.choices]
            return _decode_choice(trial.suggest_categorical(self.name, encoded))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self) -> list[Any]:
        return [self.fixed] if self.is_fixed else [_encode_choice(c) for c in self.choices]


def _encode_choice(value: Any) -> Any:
    """Optuna choices must be scalars: an explicit layer list [3, 6] travels as "3,6"."""
    if isinstance(value, list):
        return ",".join(str(int(x)) for x in value)
    return value


def _decode_choice(value: Any) -> Any:
    if isinstance(value, str) and value and all(p.strip().isdigit() for p in value.split(",")):
        return [int(p) for p in value.split(",")]
    return value


def parse_param(name: str, raw: Any) -> ParamSpec:
    """Validate one parameter; errors name the parameter and say what to write."""
    if name not in PARAMS:
        raise ValueError(f"unknown parameter {name!r}: use one of {', '.join(PARAMS)}")
    kind = PARAMS[name].kind
    if not isinstance(raw, dict):
        return ParamSpec(name, kind, fixed=raw, is_fixed=True)
    allowed = {"low", "high", "log", "step", "choices"}
    extra = set(raw) - allowed
    if extra:
        raise ValueError(
            f"search_space.{name}: unknown key(s) {sorted(extra)}; use {sorted(allowed)}"
        )
    if "choices" in raw:
        mixed = sorted(set(raw) & {"low", "high", "log", "step"})
        if mixed:
            raise ValueError(
                f"search_space.{name}: give either 'choices' or a range, not both "
                f"(drop {', '.join(repr(k) for k in mixed)})"
            )
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"search_space.{name}.choices must be a non-empty list")
        return ParamSpec(name, kind, choices=tuple(choices))
    if kind == "categorical":
        raise ValueError(
            f"search_space.{name} is categorical: give 'choices', e.g. {{'choices': [...]}}"
        )
    if "low" not in raw or "high" not in raw:
        raise ValueError(f"search_space.{name}: a range needs 'low' and 'high'")
    low, high = _number(raw["low"]), _number(raw["high"])
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        raise ValueError(f"search_space.{name}: 'low' and 'high' must be numbers")
    if low > high:
        raise ValueError(f"search_space.{name}: low ({low}) is above high ({high})")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"search_space.{name}.log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ValueError(f"search_space.{name}: a log range needs low > 0 (got {low})")
    step = _number(raw.get("step"))
    if step is not None and log:
        raise ValueError(f"search_space.{name}: 'step' and 'log' cannot be combined")
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, int | float) or not step > 0
    ):
        raise ValueError(f"search_space.{name}.step must be a positive number, got {step!r}")
    if step is not None and kind == "int" and int(step) != step:
        raise ValueError(f"search_space.{name} is an integer: step must be an integer")
    if kind == "int" and (int(low) != low or int(high) != high):
        raise ValueError(f"search_space.{name} is an integer: low and high must be integers")
    return ParamSpec(name, kind, low=float(low), high=float(high), log=log, step=step)


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``5e-5`` as a string: accept numeric strings."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_params(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Write sampled values into a RunConfig-shaped dict (mutates and returns it).

    A family's own override (``bilstm_lr``) is written after the generic one (``lr``).
    """
    ordered = sorted(values.items(), key=lambda kv: PARAMS[kv[0]].family is not None)
    for name, value in ordered:
        target = PARAMS[name].target
        node = base
        for key in target[:-1]:
            node = node.setdefault(key, {})
        node[target[-1]] = value
    return base


def check_param_values(p: ParamSpec) -> None:
    """Every value a trial could take (a fixed value, each choice, both ends of a range) is
    one the engine accepts: its config rules and its registries (families, methods, family
    options) are applied now, so a trial never samples an impossible value."""
    from pydantic import ValidationError

    from kdsearch.distill.config import RunConfig
    from kdsearch.distill.configfile import describe_validation_error

    owner = PARAMS[p.name].family
    owner_methods = PARAMS[p.name].methods
    values: list[Any] = (
        [p.fixed] if p.is_fixed else list(p.choices) if p.choices else [p.low, p.high]
    )
    for value in values:
        if p.kind == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        base: dict[str, Any] = {"student": {"family": owner}} if owner else {}
        if owner_methods:
            base["distill"] = {"method": owner_methods[0]}
        try:
            RunConfig.model_validate(apply_params(base, {p.name: value}))
        except ValidationError as exc:
            raise ValueError(
                f"search_space.{p.name}: the value {value!r} is not allowed "
                f"({describe_validation_error(exc)})"
            ) from None
