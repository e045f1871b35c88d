"""The process set-up the benchmarks share: environment defaults, set before torch,
transformers or optuna are imported (child processes inherit them), and quiet logging.

A script puts the repository root first on ``sys.path`` (``bench/`` is run as scripts, so
``bench.*`` and this checkout's packages are not importable otherwise), then calls
``bench_env`` before its heavy imports::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench._env import bench_env  # noqa: E402

    bench_env("TOKENIZERS_PARALLELISM")
    import torch  # noqa: E402
"""

from __future__ import annotations

import os

# Every benchmark runs offline; the others are set only where a script names them.
OFFLINE = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "MPLBACKEND": "Agg",
    "OPTUNA_VERBOSITY": "WARNING",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def bench_env(*names: str) -> None:
    """Default ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` and the ``DEFAULTS`` named here;
    a variable already set keeps its value."""
    for name in (*OFFLINE, *names):
        os.environ.setdefault(name, DEFAULTS[name])


def quiet_logging() -> None:
    """Warnings and errors only from transformers, optuna and kdsearch; no progress bars, no
    experimental or deprecation warnings."""
    import logging
    import warnings

    import optuna
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("kdsearch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
