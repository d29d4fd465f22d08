import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from semantic_bottleneck.book import cache
from semantic_bottleneck.book.cache import cached, code_hash, params_key, producer_files

KIND = "digits-classifier"  # any registered kind


@dataclass(frozen=True)
class P:
    a: int = 1
    b: str = "x"


def test_key_depends_on_every_parameter_and_not_on_order():
    assert params_key(KIND, {"a": 1, "b": "x"}) == params_key(KIND, {"b": "x", "a": 1})
    assert params_key(KIND, P()) == params_key(KIND, {"a": 1, "b": "x"})
    assert params_key(KIND, P(a=2)) != params_key(KIND, P())
    assert len(params_key(KIND, P())) == 16


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown artifact kind 'demo'"):
        params_key("demo", P())


def _copy(tmp_path: Path, name: str, edits: dict[str, tuple[str, str]]) -> Path:
    """A copy of the package with (old, new) text edits applied to the named files."""
    root = tmp_path / name / "semantic_bottleneck"
    shutil.copytree(cache.PACKAGE_DIR, root, ignore=shutil.ignore_patterns("__pycache__"))
    for rel, (old, new) in edits.items():
        text = (root / rel).read_text()
        assert old in text, (rel, old)
        (root / rel).write_text(text.replace(old, new, 1))
    return root


def _hashes(root: Path) -> dict[str, str]:
    return {kind: code_hash(kind, root) for kind in cache.PRODUCERS}


def test_a_change_to_producing_code_changes_exactly_the_kinds_it_produces(tmp_path):
    base = _hashes(_copy(tmp_path, "base", {}))
    assert base == _hashes(cache.PACKAGE_DIR)  # a copy hashes like the original
    trainer = _copy(
        tmp_path, "trainer", {"training/trainer.py": ("import copy\n", "import copy\n_EDIT = 1\n")}
    )
    after = _hashes(trainer)
    assert after["testbed-model"] != base["testbed-model"]
    assert after["pruning-sweep"] != base["pruning-sweep"]  # it trains the model it samples
    assert after["paper-samples"] == base["paper-samples"]
    assert after["paper-scores"] == base["paper-scores"]
    scores = _hashes(
        _copy(
            tmp_path, "fid", {"evaluation/fidelity.py": ("import os\n", "import os\n_EDIT = 1\n")}
        )
    )
    assert scores["paper-scores"] != base["paper-scores"]
    assert scores["paper-samples"] == base["paper-samples"]  # GPU rows survive an evaluation fix


def test_an_edit_to_code_that_only_shows_results_keeps_every_key(tmp_path):
    base = _hashes(_copy(tmp_path, "base", {}))
    for rel in (
        "book/plots.py",
        "book/pages.py",
        "verdicts/ledger.py",
        "book/runner.py",
        "sweeps/run.py",
    ):
        text = (cache.PACKAGE_DIR / rel).read_text()
        first = next(line for line in text.splitlines() if line.startswith(("import ", "from ")))
        edited = _copy(tmp_path, rel, {rel: (first + "\n", first + "\n_EDIT = 1\n")})
        assert _hashes(edited) == base, rel


def test_docstrings_comments_and_formatting_do_not_change_the_hash(tmp_path):
    base = code_hash("testbed-model", _copy(tmp_path, "base", {}))
    edits = {
        "training/trainer.py": ('"""', '"""A reworded docstring. '),
        "training/monitor.py": ("\nimport ", "\n# a new comment\nimport "),
    }
    assert code_hash("testbed-model", _copy(tmp_path, "doc", edits)) == base


def test_producers_exclude_the_book_layer():
    for kind in cache.PRODUCERS:
        names = {f.relative_to(cache.PACKAGE_DIR).as_posix() for f in producer_files(kind)}
        assert not names & {
            "book/plots.py",
            "book/pages.py",
            "verdicts/ledger.py",
            "book/runner.py",
            "book/widgets.py",
        }, kind
    samples = {f.relative_to(cache.PACKAGE_DIR).as_posix() for f in producer_files("paper-samples")}
    assert "generation/rows.py" in samples and "sampling/pruning.py" in samples
    assert not any(name.startswith("evaluation/") for name in samples)


def test_second_call_is_a_hit_and_does_not_recompute(tmp_path):
    calls = []

    def produce(out):
        calls.append(out)
        (out / "value.txt").write_text("42")

    first, hit1 = cached(KIND, P(), produce, root=tmp_path)
    second, hit2 = cached(KIND, P(), produce, root=tmp_path)
    assert (hit1, hit2) == (False, True) and first == second and len(calls) == 1
    assert (second / "value.txt").read_text() == "42"
    saved = (second / "params.json").read_text()
    assert '"a": 1' in saved and code_hash(KIND) in saved


def test_failed_producer_leaves_nothing(tmp_path):
    def produce(out):
        (out / "half.txt").write_text("partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        cached(KIND, P(), produce, root=tmp_path)
    assert list((tmp_path / KIND).iterdir()) == []


def test_a_concurrent_producer_that_publishes_first_is_kept(tmp_path):
    def produce(out):
        (out / "mine.txt").write_text("mine")
        # another process publishes the same artifact meanwhile
        final = tmp_path / "testbed-model" / cache.params_key("testbed-model", {"a": 1})
        final.mkdir(parents=True)
        (final / "theirs.txt").write_text("theirs")
        (final / "params.json").write_text("{}")

    folder, hit = cache.cached("testbed-model", {"a": 1}, produce, root=tmp_path)
    assert not hit and (folder / "theirs.txt").exists() and not (folder / "mine.txt").exists()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging left
