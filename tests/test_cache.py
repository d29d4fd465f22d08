from dataclasses import dataclass

import pytest

from semantic_bottleneck.cache import cached, params_key


@dataclass(frozen=True)
class P:
    a: int = 1
    b: str = "x"


def test_key_depends_on_every_parameter_and_not_on_order():
    assert params_key({"a": 1, "b": "x"}) == params_key({"b": "x", "a": 1}) == params_key(P())
    assert params_key(P(a=2)) != params_key(P())
    assert len(params_key(P())) == 16


def test_second_call_is_a_hit_and_does_not_recompute(tmp_path):
    calls = []

    def produce(out):
        calls.append(out)
        (out / "value.txt").write_text("42")

    first, hit1 = cached("demo", P(), produce, root=tmp_path)
    second, hit2 = cached("demo", P(), produce, root=tmp_path)
    assert (hit1, hit2) == (False, True) and first == second and len(calls) == 1
    assert (second / "value.txt").read_text() == "42"
    assert '"a": 1' in (second / "params.json").read_text()


def test_failed_producer_leaves_nothing(tmp_path):
    def produce(out):
        (out / "half.txt").write_text("partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        cached("demo", P(), produce, root=tmp_path)
    assert list((tmp_path / "demo").iterdir()) == []
