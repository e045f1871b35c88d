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
    """Tang et al.'s augmentation: more transfer rows made from the labelled and transfer text.

    Each copy of a text masks every word with probability ``mask_prob`` (the tokenizer's mask
    token), then with probability ``ngram_prob`` keeps only a random n-gram (n in 1..5).
    ``copies`` augmented copies are made per text, seeded and cached; 0 turns it off.
    """

    copies: int = Field(default=0, ge=0, le=64)
    mask_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    ngram_prob: float = Field(default=0.25, ge=0.0, le=1.0)
    seed: int = 0


class DataConfig(_Strict):
    """Where the examples come from and how they are split.

    ``source`` is one of ``builtin:rotten_tomatoes``, ``builtin:vader_tweets``,
    ``csv:PATH``, ``jsonl:PATH`` or ``hub:DATASET_ID`` (network only).
    """

    source: str = "builtin:rotten_tomatoes"
    text_field: str = "text"
    # Sentence-pair tasks (MRPC, RTE, NLI): the second text of each row, fed to the models
    # as a tokenizer pair (with token type ids where the model has them).
    text_pair_field: str | None = None
    label_field: str = "label"
    # Multi-label tasks: one 0/1 column per label, or one column of labels joined by
    # ``label_delimiter`` (an empty value: no label applies). Sigmoid per label.
    label_fields: list[str] | None = Field(default=None, min_length=1, max_length=256)
    label_delimiter: str | None = Field(default=None, min_length=1, max_length=8)
    # Hub datasets: which split to read (validation is carved from it by eval_fraction,
    # unless hub_eval_split names a split to validate on as given).
    hub_split: str = "train"
    hub_eval_split: str | None = None
    # builtin:vader_tweets: mean rating > threshold is positive, < -threshold negative,
    # the band in between (neutral) is dropped.
    vader_threshold: float = Field(default=0.5, ge=0.0, le=4.0)
    eval_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    # Held-out test rows, carved (stratified, seeded) before the train/validation split:
    # never trained on, never seen by a trial; the study scores its winners on them at the
    # end. 0 turns the test split off.
    test_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    max_train: int | None = Field(default=2000, ge=2)
    max_eval: int | None = Field(default=500, ge=2)
    max_test: int | None = Field(default=1000, ge=2)
    max_length: int = Field(default=64, ge=8, le=512)
    seed: int = 0
    # Unlabelled transfer text, soft-labelled by the teacher: csv:PATH, jsonl:PATH or
    # builtin:rotten_tomatoes_unlabelled (the corpus rows not used for train or validation).
    transfer: str | None = None
    transfer_text_field: str | None = None  # default: text_field
    max_transfer: int | None = Field(default=None, ge=1)
    # Train on the transfer rows (a trial may switch them off; the context keeps them).
    use_transfer: bool = True
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

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

    epochs: float = Field(default=2.0, gt=0)
    lr: float = Field(default=5e-5, gt=0)
    batch_size: int = Field(default=32, ge=1)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    seed: int = 0


class TeacherConfig(_Strict):
    """The teacher: a fine-tuned classifier, or a backbone fine-tuned here (cached).

    ``model`` is ``builtin:minilm-l6``, a local folder, or a hub id (network only).
    ``finetune: true`` trains a classification head (and the body) on the dataset first.
    """

    model: str = "builtin:minilm-l6"
    finetune: bool = True
    recipe: FinetuneRecipe = Field(default_factory=FinetuneRecipe)


class StudentConfig(_Strict):
    """The student: a ``family`` (``transformer``, ``bilstm``, ``textcnn``) and its shape.

    ``options`` holds each non-transformer family's shape by family name, e.g.
    ``{"bilstm": {"hidden_size": 300, "layers": 1}}`` (see ``distill.families``); the
    transformer family uses the fields below.

    - ``truncate``: a copy of the teacher keeping ``keep_layers`` (teacher layers numbered
      1..N, as in the layer mapping; 0 is the embeddings), or ``num_layers`` layers picked
      by the layer mapping, so student layer m starts from the teacher layer it is
      distilled from.
    - ``pretrained``: a checkpoint folder or hub id in ``path``.
    - ``fresh``: a new TinyBERT-like BERT with the given shape (embeddings copied from the
      teacher when the hidden sizes agree, random otherwise).
    """

    family: str = "transformer"
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    kind: Literal["truncate", "pretrained", "fresh"] = "truncate"
    num_layers: int = Field(default=2, ge=1, le=48)
    keep_layers: list[int] | None = None
    path: str | None = None
    hidden_size: int = Field(default=312, ge=8)
    num_heads: int = Field(default=12, ge=1)
    intermediate_size: int = Field(default=1200, ge=8)

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
    """How the metrics are computed. ``reference_class``: the class r of the paper's sigma.
    ``decision_class`` and ``decision_thresholds``: the class whose probability a team
    thresholds (default: the last class) and its operating thresholds (e.g. human review at
    0.6, auto-remove at 0.9), for ``decision_flip_rate``."""

    reference_class: int = Field(default=0, ge=0)
    ece_bins: int = Field(default=10, ge=2, le=1000)
    ece_mode: Literal["top_label", "all_classes"] = "top_label"
    decision_class: int | None = Field(default=None, ge=0)
    decision_thresholds: list[float] = Field(default_factory=lambda: [0.6, 0.9], max_length=16)
    latency_batches: int = Field(default=3, ge=1)
    latency_repeats: int = Field(default=5, ge=1, le=100)

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
