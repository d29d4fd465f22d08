"""Tests of loading the appendix systems' c: the notices for absent inputs, the condition file's
checks, and c end to end from a synthetic X-MDPT-S checkpoint with the released layout."""

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from semantic_bottleneck.core import analysis, appendix
from semantic_bottleneck.core.analysis import Missing
from semantic_bottleneck.core.systems import SystemC, combine
from semantic_bottleneck.sections import conditional_vector, continuous
from semantic_bottleneck.verdicts import ledger
from semantic_bottleneck.zoo import registry, xmdpt
from semantic_bottleneck.zoo.registry import read_manifest


def place_weights(cache, name: str, state: dict) -> None:
    entry = registry.get_system(name)
    folder = cache / name
    folder.mkdir(parents=True)
    torch.save(state, folder / entry.filename)


def xmdpt_inputs(n: int = 3) -> dict:
    g = torch.Generator().manual_seed(0)
    shapes = {"dino_tgt_pose": (n, 257, 768), "dino_src_img": (n, 257, 1536)}
    shapes["src_latent"] = (n, 4, 32, 32)
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


def test_absent_weights_then_absent_conditions_give_the_command_that_provides_them(tmp_path):
    missing = appendix.load_system("xmdpt-s-2", tmp_path)
    assert isinstance(missing, Missing) and missing.command == "semantic-bottleneck fetch xmdpt-s-2"
    place_weights(tmp_path, "xmdpt-s-2", {})
    missing = appendix.load_system("xmdpt-s-2", tmp_path)
    assert missing.command == "semantic-bottleneck conditions xmdpt"
    assert missing.label == "X-MDPT-S"
    assert "semantic-bottleneck conditions xmdpt" in analysis.missing_notice([missing])


def test_a_condition_file_without_a_named_tensor_is_refused(tmp_path):
    inputs = xmdpt_inputs()
    del inputs["src_latent"]
    save_file(inputs, tmp_path / "c.safetensors")
    with pytest.raises(ValueError, match="missing \\['src_latent'\\]"):
        appendix.read_conditions("xmdpt", tmp_path / "c.safetensors")


def test_xmdpt_s_c_from_a_synthetic_release_equals_its_two_parts(tmp_path, monkeypatch):
    # the released layout with random weights (the integer rel-pos indices kept as built)
    g = torch.Generator().manual_seed(1)
    state = xmdpt.build_xmdpt("xmdpt_s2").state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = 0.02 * torch.randn(value.shape, generator=g)
    assert {k: list(v.shape) for k, v in state.items()} == read_manifest("appendix/xmdpt_s2.json")[
        "keys"
    ]
    place_weights(tmp_path, "xmdpt-s-2", state)
    inputs = xmdpt_inputs()
    where = appendix.conditions_path("xmdpt", tmp_path)
    where.parent.mkdir()
    save_file(inputs, where)
    sys_c = appendix.load_system("xmdpt-s-2", tmp_path)
    assert isinstance(sys_c, SystemC)
    assert (sys_c.d, sys_c.num_classes, sys_c.t, sys_c.how) == (384, 3, 999.0, "sum")
    model = xmdpt.load_xmdpt(tmp_path / "xmdpt-s-2" / "ema_0.9999_300000.pt", "xmdpt_s2")
    time, cond = xmdpt.condition_parts(model, inputs, 999)
    torch.testing.assert_close(sys_c.c(), combine(time, cond, "sum"))
    row = analysis.label_vs_sum_row(sys_c)
    assert row["model"] == "X-MDPT-S" and 0 < row["cosine_y"] <= 1
    # the paper-profile pages measure it from the weights cache
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))
    page = continuous.tab05_page("paper", [], systems=["xmdpt-s-2", "mdsgen-b-2"])
    assert page.tables["measured"]["model"].tolist() == ["X-MDPT-S"]
    assert page.tables["measured"]["cosine_yt"].iloc[0] == pytest.approx(row["cosine_yt"])
    assert [m.name for m in page.missing] == ["mdsgen-b-2"]
    fig = continuous.fig04_page("paper", [], systems=["xmdpt-s-2"])
    assert fig.values["n_conditions"][0] == 3 and fig.figures["cosine"] is not None
    tab01 = conditional_vector.tab01_page("paper", ["dit-xl-2"], systems=["xmdpt-s-2"])
    assert tab01.tables["statistics"][["model", "d", "initial_t"]].values.tolist() == [
        ["X-MDPT-S", 384, 999.0]
    ]
    assert [m.name for m in tab01.missing] == ["dit-xl-2"]
    # the ledger judges the continuous-cosine claim on it in the paper profile
    monkeypatch.setattr(appendix, "TABLE1_SYSTEMS", ["xmdpt-s-2"])
    inputs = ledger.ledger_inputs("paper", ["dit-xl-2"], use_sweeps=False)
    measured = ledger.measure(inputs.found)["cosine-continuous"]
    assert measured.detail.startswith("X-MDPT-S")
    assert measured.value == pytest.approx(row["cosine_yt"])


def test_conditions_command_describes_then_prepares_mdsgen_features(tmp_path, capsys):
    import numpy as np

    from semantic_bottleneck import cli

    assert cli.main(["conditions", "mdsgen", "--cache-dir", str(tmp_path)]) == 0
    assert "video_features" in capsys.readouterr().out
    feats = tmp_path / "feats"
    feats.mkdir()
    g = np.random.default_rng(0)
    for i, frames in enumerate((40, 32)):
        np.savez(feats / f"clip{i}.npz", g.standard_normal((frames, 512)).astype("float32"))
    argv = ["conditions", "mdsgen", "--npz", str(feats), "--cache-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    inputs = appendix.read_conditions("mdsgen", appendix.conditions_path("mdsgen", tmp_path))
    assert inputs["video_features"].shape == (2, 32, 512)
    first = torch.from_numpy(np.load(feats / "clip0.npz")["arr_0"][:32])
    assert torch.equal(inputs["video_features"][0], first)
    note = appendix.conditions_note(appendix.conditions_path("mdsgen", tmp_path))
    assert note == "2 clips of CAVP features from feats/"
    np.savez(feats / "short.npz", np.zeros((8, 512), "float32"))
    with pytest.raises(ValueError, match="expected arr_0 of shape"):
        appendix.mdsgen_conditions(feats)


def test_the_uvit_row_is_read_both_ways_on_the_table4_page(tmp_path, monkeypatch):
    from semantic_bottleneck.sections import appendix as appendix_pages

    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    tokens = SystemC("uvit-x", "U-ViT (concatenation)", torch.randn(1, 6, generator=g),
                     torch.randn(5, 6, generator=g), "concat", 1000.0, "5 classes")  # fmt: skip
    monkeypatch.setattr(appendix, "load_system", lambda name: tokens)
    page = appendix_pages.tab04_page("paper", ["dit-xl-2"])
    rows = page.tables["label_vs_sum"].set_index("model")
    assert list(rows.index) == ["U-ViT (concatenation)", "U-ViT (sum)"]
    assert [m.d for m in page.found] == [12, 6]
    assert rows.loc["U-ViT (sum)", "cosine_yt"] == pytest.approx(
        analysis.label_vs_sum_row(dataclasses.replace(tokens, how="sum"))["cosine_yt"]
    )
    assert [m.name for m in page.missing] == ["dit-xl-2"] and page.values["cos_gap"][0] is None
    assert appendix_pages.tab04_page("paper", ["dit-xl-2"], uvit=None).found == []


def test_prompt_systems_default_to_a_stated_prompt_set(tmp_path, monkeypatch):
    from semantic_bottleneck import cli
    from semantic_bottleneck.zoo import sd3

    seen = {}

    def encode(pipeline, prompts):
        seen.update(pipeline=pipeline, prompts=prompts)
        return {"pooled_text": torch.zeros(len(prompts), 2048)}

    monkeypatch.setattr(sd3, "encode_prompts", encode)
    argv = ["conditions", "sd3", "--pipeline", str(tmp_path / "sd3"), "--cache-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    assert len(seen["prompts"]) == 1000 and seen["prompts"][0] == "a photo of a tench"
    where = appendix.conditions_path("sd3", tmp_path)
    assert (
        appendix.conditions_note(where)
        == "1000 prompts 'a photo of a {}' over the ImageNet classes"
    )
    assert appendix.read_conditions("sd3", where)["pooled_text"].shape == (1000, 2048)
    prompts, note = appendix.default_prompts("audioldm")
    assert len(prompts) == len(set(prompts)) == 50 and note.startswith("50 prompts")
    with pytest.raises(ValueError, match="expected one of"):
        appendix.default_prompts("xmdpt")


def test_a_systems_c_is_computed_once_per_weights_and_condition_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_CACHE", str(tmp_path / "artifacts"))
    g = torch.Generator().manual_seed(3)
    state = xmdpt.build_xmdpt("xmdpt_s2").state_dict()
    state = {k: 0.02 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
             for k, v in state.items()}  # fmt: skip
    place_weights(tmp_path, "xmdpt-s-2", state)
    where = appendix.conditions_path("xmdpt", tmp_path)
    where.parent.mkdir()
    save_file(xmdpt_inputs(), where)
    first = appendix.load_system("xmdpt-s-2", tmp_path)

    def no_load(*args):
        raise AssertionError("the model was loaded again")

    monkeypatch.setattr(appendix, "_load", no_load)
    again = appendix.load_system("xmdpt-s-2", tmp_path)  # read from the artifact cache
    assert torch.equal(again.c(), first.c()) and again.conditions == first.conditions
    assert appendix.load_system("xmdpt-s-2", tmp_path, how="concat").d == 2 * 384
    save_file(xmdpt_inputs(n=4), where)  # a new condition file is measured anew
    with pytest.raises(AssertionError, match="loaded again"):
        appendix.load_system("xmdpt-s-2", tmp_path)
