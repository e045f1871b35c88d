"""Two offline tasks built from the builtin rotten tomatoes corpus, to try pairs and
multi-label without a download.

- **pairs** (``text``, ``text_pair``, ``label``): a critic's snippet and a statement about
  its verdict ("The critic liked the film.", "This review is negative.", ...);
  ``entailment`` when the statement matches the snippet's rotten/fresh verdict,
  ``contradiction`` otherwise: a premise/hypothesis task in the form of RTE and MNLI, whose
  answer needs both texts. (Whether two free snippets share a verdict is a pair task too,
  but a MiniLM teacher fine-tuned on a few thousand such pairs stays at chance: it is an
  XOR of two sentiment readings.)
- **multilabel** (``text``, ``rotten``, ``fresh``, ``plot``): one to three snippets joined
  into one post; a 0/1 column per kind of snippet it contains (a rotten review, a fresh
  review, a plot summary), so labels co-occur, as moderation labels do.

Both are seeded, balanced and written as CSV (``kdsearch data examples DIR``). Each corpus
snippet is used at most once per file, so a row's texts never reappear in another row.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from ._files import _open_text
from .errors import DataError
from .fetch import rotten_tomatoes_path

KINDS = ("rotten", "fresh", "plot")
PAIR_LABELS = ("contradiction", "entailment")
LIKED = (
    "The critic liked the film.",
    "This review is positive.",
    "The reviewer recommends this movie.",
    "The film won the critic over.",
)
DISLIKED = (
    "The critic disliked the film.",
    "This review is negative.",
    "The reviewer does not recommend this movie.",
    "The film left the critic cold.",
)


def _snippets() -> dict[str, list[str]]:
    """The corpus texts by kind, in file order, blanks and repeats dropped."""
    out: dict[str, list[str]] = {k: [] for k in KINDS}
    seen: set[str] = set()
    with _open_text(rotten_tomatoes_path()) as fh:
        for row in csv.DictReader(fh):
            kind, text = row.get("category") or "", " ".join((row.get("text") or "").split())
            if kind in out and text and text not in seen:
                seen.add(text)
                out[kind].append(text)
    return out


def _pools(seed: int) -> dict[str, list[str]]:
    pools = _snippets()
    rng = random.Random(seed)
    for kind in KINDS:
        rng.shuffle(pools[kind])
    return pools


def _take(pools: dict[str, list[str]], kind: str) -> str:
    if not pools[kind]:
        raise DataError(f"the rotten tomatoes corpus has too few {kind} snippets for this size")
    return pools[kind].pop()


def pair_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` (snippet, statement) pairs, half ``entailment`` and half ``contradiction``,
    the snippets half fresh and half rotten, shuffled."""
    pools, rng = _pools(seed), random.Random(seed + 1)
    rows = []
    for i in range(n):
        holds = i % 2 == 0
        kind = ("rotten", "fresh")[(i // 2) % 2]
        liked = (kind == "fresh") == holds
        rows.append(
            {
                "text": _take(pools, kind),
                "text_pair": rng.choice(LIKED if liked else DISLIKED),
                "label": PAIR_LABELS[int(holds)],
            }
        )
    rng.shuffle(rows)
    return rows


def multilabel_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` posts of one to three snippets; a 0/1 column per kind present."""
    pools, rng = _pools(seed), random.Random(seed + 2)
    rows = []
    for _ in range(n):
        count = rng.choice((1, 1, 2, 2, 3))
        # plot summaries are scarcer in the corpus: drawn a third as often
        kinds = rng.choices(KINDS, weights=(3, 3, 1), k=count)
        parts = [_take(pools, k) for k in kinds]
        row = {"text": " ".join(parts)}
        row.update({k: str(int(k in kinds)) for k in KINDS})
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, str]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_examples(folder: Path, n: int = 2000, seed: int = 0) -> dict[str, Path]:
    """``pairs.csv`` and ``multilabel.csv`` of ``n`` rows each in ``folder``."""
    return {
        "pairs": write_csv(pair_rows(n, seed), folder / "pairs.csv"),
        "multilabel": write_csv(multilabel_rows(n, seed), folder / "multilabel.csv"),
    }
