"""The GLUE tasks by short name: ``hub:glue/mrpc`` and friends, with their columns and splits.

``hub:glue/<task>`` reads ``nyu-mll/glue`` (config ``<task>``) from the hub. Its text
columns become ``data.text_field`` / ``data.text_pair_field`` unless the config sets them,
and its validation split is validated on as given (``data.hub_eval_split``); the held-out
test split is carved from the training split, since GLUE's own test labels are hidden.
STS-B is a regression task and is not offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import DataConfig

GLUE_HUB_ID = "nyu-mll/glue"
PREFIX = "hub:glue/"


@dataclass(frozen=True)
class GlueTask:
    text_field: str
    text_pair_field: str | None
    eval_split: str = "validation"


GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask("sentence", None),
    "sst2": GlueTask("sentence", None),
    "mrpc": GlueTask("sentence1", "sentence2"),
    "qqp": GlueTask("question1", "question2"),
    "qnli": GlueTask("question", "sentence"),
    "rte": GlueTask("sentence1", "sentence2"),
    "wnli": GlueTask("sentence1", "sentence2"),
    "mnli": GlueTask("premise", "hypothesis", "validation_matched"),
}


def glue_task(source: str) -> tuple[str, GlueTask] | None:
    """``("mrpc", GlueTask(...))`` for ``hub:glue/mrpc``; None for any other source.

    >>> glue_task("hub:glue/rte")[1].text_pair_field
    'sentence2'
    >>> glue_task("csv:data.csv") is None
    True
    """
    if not source.startswith(PREFIX):
        return None
    name = source[len(PREFIX) :].strip().lower()
    if name not in GLUE_TASKS:
        known = ", ".join(f"{PREFIX}{t}" for t in GLUE_TASKS)
        raise ValueError(f"unknown GLUE task {source!r}: use one of {known}")
    return name, GLUE_TASKS[name]


def hub_location(spec: str) -> str:
    """What ``datasets.load_dataset`` is given for ``hub:<spec>``: ``DATASET_ID[:CONFIG]``.

    >>> hub_location("glue/mrpc"), hub_location("stanfordnlp/imdb")
    ('nyu-mll/glue:mrpc', 'stanfordnlp/imdb')
    """
    found = glue_task("hub:" + spec)
    return f"{GLUE_HUB_ID}:{found[0]}" if found else spec


def apply_glue_defaults(cfg: DataConfig) -> None:
    """Fill the text columns and the validation split of a ``hub:glue/<task>`` source,
    leaving whatever the config set itself."""
    found = glue_task(cfg.source)
    if found is None:
        return
    _, task = found
    given = cfg.model_fields_set
    if "text_field" not in given:
        cfg.text_field = task.text_field
    if "text_pair_field" not in given:
        cfg.text_pair_field = task.text_pair_field
    if "hub_eval_split" not in given:
        cfg.hub_eval_split = task.eval_split
