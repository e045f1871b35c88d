"""Optuna studies over distillation settings (imports distill, never HTTP)."""

import warnings

from optuna.exceptions import ExperimentalWarning

# Heartbeats, metric names and stale-trial retries are "experimental" in Optuna 5 and
# warn on every call; we depend on them deliberately.
warnings.filterwarnings("ignore", category=ExperimentalWarning)
