"""Input checks shared by the metrics, calibration and plots: shapes, probabilities, labels.

Each helper returns a float64/int64 array or raises ValueError saying what is wrong.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _as_matrix(x: npt.ArrayLike, name: str, min_columns: int = 2) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n, C); got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 examples); metrics need at least one example")
    if arr.shape[1] < min_columns:
        raise ValueError(
            f"{name} must have at least {min_columns} classes (columns); got {arr.shape[1]}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _as_probs(x: npt.ArrayLike, name: str) -> FloatArray:
    arr = _as_matrix(x, name)
    if np.any(arr < -1e-6) or np.any(arr > 1 + 1e-6):
        raise ValueError(
            f"{name} must hold probabilities in [0, 1] (pass softmax outputs, not logits)"
        )
    return arr


def _as_labels(labels: npt.ArrayLike, n: int, num_classes: int) -> IntArray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of shape (n,); got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"labels has {arr.shape[0]} entries but the predictions have {n} rows")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"labels must be integer class ids; got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        raise ValueError("labels must be integer class ids; got non-integral values")
    out = arr.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}); got values from {out.min()} to {out.max()}"
        )
    return out


def _check_pair(
    teacher: FloatArray, student: FloatArray, t_name: str = "teacher", s_name: str = "student"
) -> None:
    if teacher.shape[0] != student.shape[0]:
        raise ValueError(
            f"{t_name} has {teacher.shape[0]} examples but {s_name} has {student.shape[0]}"
        )
    if teacher.shape[1] != student.shape[1]:
        raise ValueError(
            f"{t_name} has {teacher.shape[1]} classes but {s_name} has {student.shape[1]}"
        )


def _pair(
    teacher_probs: npt.ArrayLike, student_probs: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    t = _as_probs(teacher_probs, "teacher_probs")
    s = _as_probs(student_probs, "student_probs")
    _check_pair(t, s, "teacher_probs", "student_probs")
    return t, s
