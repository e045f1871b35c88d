"""The package as installed: one import name, ``kdsearch``, with its data files.

The source tree keeps ``distill/``, ``search/``, ``service/`` and ``migrations/`` at the top;
``kdsearch/`` links to them, and the wheel carries them as ``kdsearch.distill`` and so on.
Code that imported a folder by its bare name would load a second copy of every module it
touches (two registries, two sets of classes) in a checkout, and fail in an installed copy.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("distill", "search", "service", "migrations")
TREES = (*FOLDERS, "tests", "bench", "examples")


def bare_imports(path: Path) -> list[str]:
    """``import search`` / ``from distill.x import y`` lines in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [
            f"{path.relative_to(ROOT)}:{node.lineno} {n}"
            for n in names
            if n.split(".")[0] in FOLDERS
        ]
    return found


def test_nothing_imports_a_folder_by_its_bare_name() -> None:
    files = [p for tree in TREES if (ROOT / tree).is_dir() for p in (ROOT / tree).rglob("*.py")]
    assert len(files) > 150
    offenders = [hit for f in files for hit in bare_imports(f)]
    assert not offenders, "import these as kdsearch.<folder>...:\n" + "\n".join(offenders)


def test_the_checkout_links_the_package_folders() -> None:
    for name in FOLDERS:
        link = ROOT / "kdsearch" / name
        assert link.is_symlink() and link.resolve() == ROOT / name, name


def source_copy(dest: Path) -> Path:
    """What a build needs (the Dockerfile copies the same), in a folder of its own: an
    in-tree build would leave ``build/`` behind, and a stale one can put deleted modules
    into the next wheel."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("kdsearch", *FOLDERS, "examples"):
        shutil.copytree(ROOT / name, dest / name, symlinks=True, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = source_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*pip, "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_installs_one_top_level_name(wheel: Path) -> None:
    assert wheel.name.startswith("kdsearch_hpo-")  # the distribution name free on PyPI
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert z.read(info).decode().split() == ["kdsearch"]
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "kdsearch = kdsearch.service.cli:main" in z.read(entry).decode()
    tops = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert tops == {"kdsearch"}
    for sub in FOLDERS:
        assert f"kdsearch/{sub}/__init__.py" in names
    # data files an editable install would find in the checkout anyway
    assert "kdsearch/migrations/script.py.mako" in names
    for spec in (ROOT / "examples").iterdir():
        assert f"kdsearch/examples/{spec.name}" in names
    versions = ROOT / "migrations" / "versions"
    for script in versions.glob("*.py"):
        assert f"kdsearch/migrations/versions/{script.name}" in names
    assert not [n for n in names if "/tests/" in n or n.endswith(".pyc")]
