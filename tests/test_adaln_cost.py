"""AdaLN modulation cost (Fig. 42): the sparse path equals the dense one; timing and FLOPs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch

from semantic_bottleneck.core import adaln_cost
from semantic_bottleneck.zoo import build_model, registry


def _tiny(d: int = 16, depth: int = 2, seed: int = 0):
    return adaln_cost.random_modulation(adaln_cost.synthetic_shapes(d, depth), seed=seed)


def test_modulation_keys_of_an_official_manifest():
    keys = adaln_cost.modulation_keys(registry.get_checkpoint("dit-xl-2").shapes)
    assert len(keys) == 29
    assert keys[0] == "blocks.0.adaLN_modulation.1.weight"
    assert keys[9] == "blocks.9.adaLN_modulation.1.weight"  # natural order: 9 before 10
    assert keys[-1] == "final_layer.adaLN_modulation.1.weight"
    with pytest.raises(ValueError, match="adaLN_modulation"):
        adaln_cost.modulation_keys({"x_embedder.proj.weight": (8, 4)})


def test_modulate_all_equals_the_models_own_modulation():
    torch.manual_seed(0)
    model = build_model(
        "dit", input_size=8, patch_size=2, in_channels=1, hidden_size=16, depth=3,
        num_heads=2, num_classes=4,
    )  # fmt: skip
    for p in model.parameters():  # adaLN-Zero starts at zero: give the layers values
        torch.nn.init.normal_(p, std=0.1)
    mod = adaln_cost.modulation_from_state(model.state_dict())
    assert [w.shape for w in mod.weights] == [(96, 16)] * 3 + [(32, 16)]
    c = torch.randn(5, 16)
    ours = adaln_cost.modulate_all(c, mod)
    theirs = [b.adaLN_modulation(c) for b in model.blocks] + [model.final_layer.adaLN_modulation(c)]
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("removed", [0, 5, 12, 15])
def test_sparse_path_equals_dense_path_on_pruned_c(removed):
    mod = _tiny()
    c = torch.randn(6, 16, generator=torch.Generator().manual_seed(removed))
    kept = adaln_cost.kept_columns(c.mean(0), removed)
    pruned = adaln_cost.prune_to(c, kept)
    dense = adaln_cost.modulate_all(pruned, mod)
    sparse = adaln_cost.modulate_all(pruned[:, kept], adaln_cost.gather_columns(mod, kept))
    for a, b in zip(dense, sparse, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_kept_columns_keep_the_largest_magnitudes():
    c = torch.tensor([0.1, -3.0, 0.01, 2.0, -0.5])
    assert adaln_cost.kept_columns(c, 2).tolist() == [1, 3, 4]
    assert adaln_cost.kept_columns(c, 0).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="0 <= removed < d = 5"):
        adaln_cost.kept_columns(c, 5)
    with pytest.raises(ValueError, match="one vector"):
        adaln_cost.kept_columns(c[None], 1)


def test_flops_and_scaled_counts():
    assert adaln_cost.modulation_flops(64, 1152, 28 * 6912 + 2304) == 2 * 64 * 1152 * 195840
    assert adaln_cost.scaled_removed(1152) == list(adaln_cost.PAPER_REMOVED)
    assert adaln_cost.scaled_removed(128) == [0, 50, 85, 123]  # 448/1152*128 = 49.8, ...


def test_cost_sweep_rows_and_baseline():
    mod = _tiny()
    c = adaln_cost.synthetic_c(4, 16)
    threads = torch.get_num_threads()
    table = adaln_cost.cost_sweep(
        mod, c, [0, 8, 14], repeats=2, warmup=0, min_run_s=0, num_threads=1
    )
    assert torch.get_num_threads() == threads  # restored
    assert table.attrs["threads"] == 1
    assert list(table["kept"]) == [16, 8, 2]
    assert table["allclose"].all()
    assert table.loc[0, "dense_vs_baseline"] == 1.0
    ratio = table["flops_sparse"] / table["flops_dense"]
    assert ratio.tolist() == pytest.approx(table["kept_fraction"].tolist())
    fig = adaln_cost.plot_cost(table, "tiny")
    assert len(fig.axes) == 2
    plt.close(fig)


def test_cost_sweep_rejects_bad_input_before_timing():
    mod = _tiny()
    with pytest.raises(ValueError, match="width 16"):
        adaln_cost.cost_sweep(mod, torch.randn(3, 8), [0])
    with pytest.raises(ValueError, match=r"removed: expected counts in \[0, 16\)"):
        adaln_cost.cost_sweep(mod, torch.randn(3, 16), [0, 16])
    with pytest.raises(ValueError, match="num_threads"):
        adaln_cost.cost_sweep(mod, torch.randn(3, 16), [0], num_threads=0)


def test_time_calls_interleaves_and_validates():
    calls = []
    result = adaln_cost.time_calls(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, 0, 0
    )
    assert set(result) == {"a", "b"} and result["a"]["number"] == 1
    assert calls[-6:] == ["a", "b"] * 3
    with pytest.raises(ValueError, match="repeats >= 1"):
        adaln_cost.time_calls({"a": lambda: None}, repeats=0)


def test_synthetic_c_is_seeded_with_a_head_and_a_tail():
    a, b = adaln_cost.synthetic_c(8, 64, seed=1), adaln_cost.synthetic_c(8, 64, seed=1)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    v = a.abs().mean(0)
    assert v.max() > 1.0 and (v < 0.01).sum() > 10
    with pytest.raises(ValueError, match="batch >= 1"):
        adaln_cost.synthetic_c(0, 4)


def test_modulation_change_is_zero_for_an_unpruned_c_and_relative_per_component():
    mod = _tiny(d=8, depth=2)
    c = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    same = adaln_cost.modulation_change(mod, c, c.clone())
    assert list(same["layer"]) == ["block 0", "block 1", "final"]
    assert same[["shift", "scale"]].abs().to_numpy().max() == 0.0
    assert same["gate"].iloc[-1] is None or same["gate"].isna().iloc[-1]  # no gate in the final
    pruned = c.clone()
    pruned[:, :3] = 0.0
    out = adaln_cost.modulation_change(mod, c, pruned)
    w, b = mod.weights[0], mod.biases[0]
    m, mp = adaln_cost.modulation(c, w, b), adaln_cost.modulation(pruned, w, b)
    gate = torch.cat([m[:, 16:24], m[:, 40:48]], 1), torch.cat([mp[:, 16:24], mp[:, 40:48]], 1)
    expected = ((gate[1] - gate[0]).norm(dim=1) / gate[0].norm(dim=1)).mean()
    assert out["gate"].iloc[0] == pytest.approx(float(expected), rel=1e-5)
    assert (out[["shift", "scale"]].to_numpy() > 0).all()
    with pytest.raises(ValueError, match="equal"):
        adaln_cost.modulation_change(mod, c, pruned[:, :4])
