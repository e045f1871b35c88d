"""The per-trial pictures are real, non-blank PNGs for binary and multi-class data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from kdsearch.distill.metrics import EceMode, softmax
from kdsearch.distill.plots import confidence_scatter, reliability_diagram

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _data(n_classes: int, n: int = 80, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    t_logits = rng.normal(size=(n, n_classes))
    t_logits[np.arange(n), labels] += 2.5
    s_logits = 0.6 * t_logits + rng.normal(scale=0.5, size=(n, n_classes))
    return softmax(t_logits), softmax(s_logits), labels


def _check_png(path: Path) -> None:
    assert path.is_file()
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE
    assert len(raw) > 5_000
    img = imread(path)
    height, width = img.shape[:2]
    assert (height, width) == (640, 640)  # 6.4 in x 100 dpi, no tight cropping
    assert height > 100 and width > 100
    rgb = np.round(img[..., :3] * 255).astype(np.int64)
    packed = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
    assert len(np.unique(packed)) > 10  # not a flat colour
    assert float(img[..., :3].std()) > 0.01


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("mode", ["top_label", "all_classes"])
def test_reliability_diagram(tmp_path: Path, n_classes: int, mode: EceMode) -> None:
    t, s, y = _data(n_classes)
    target = tmp_path / f"rel_{n_classes}_{mode}.png"
    out = reliability_diagram(t, s, y, target, mode=mode)
    assert isinstance(out, Path)
    assert out == target
    _check_png(out)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_confidence_scatter(tmp_path: Path, n_classes: int) -> None:
    t, s, y = _data(n_classes, seed=1)
    out = confidence_scatter(
        t, s, y, str(tmp_path / f"scatter_{n_classes}.png"), reference_class=n_classes - 1
    )
    assert isinstance(out, Path)
    _check_png(out)


def test_plots_with_empty_bins_and_undefined_sigma(tmp_path: Path) -> None:
    # Three examples: most bins empty; the student is right once only -> sigma undefined.
    teacher = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    student = np.array([[0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.4, 0.35, 0.25]])
    labels = np.array([0, 1, 2])
    rel = reliability_diagram(
        teacher, student, labels, tmp_path / "sub" / "rel.png", n_bins=20, title="tiny"
    )
    sc = confidence_scatter(teacher, student, labels, tmp_path / "sub" / "sc.png", title="tiny")
    _check_png(rel)
    _check_png(sc)


def test_plot_validation(tmp_path: Path) -> None:
    t, s, y = _data(2)
    with pytest.raises(ValueError, match="reference_class"):
        confidence_scatter(t, s, y, tmp_path / "x.png", reference_class=2)
    with pytest.raises(ValueError):
        reliability_diagram(t, s[:5], y, tmp_path / "y.png")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
