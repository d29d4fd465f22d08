import pytest
import torch

from semantic_bottleneck.book import display
from semantic_bottleneck.core import metrics
from semantic_bottleneck.sweeps import run as sweep


def test_paper_rows_follow_table2():
    rows = sweep.paper_rows("table2")
    assert [r.label for r in rows][:2] == ["baseline", "tail 0.01 t_i"]
    assert rows[-1].side == "head" and rows[-1].paper_removed == 8 and rows[-1].paper_tau == 1.0
    assert {r.schedule for r in rows} == {"every", "initial", "last_k"}
    assert len(sweep.paper_rows("table3", "MG")) == 4
    with pytest.raises(ValueError, match="table2, table3 or table6"):
        sweep.paper_rows("table1")


def test_matched_count_keeps_the_tail_fraction_and_the_head_count():
    rows = {r.label: r for r in sweep.paper_rows("table2")}
    assert sweep.matched_count(rows["tail 0.02 t_i"], 128) == round(762 / 1152 * 128)
    assert sweep.matched_count(rows["tail 5 t_i"], 128) == 127  # never everything
    assert sweep.matched_count(rows["head 1 t_i"], 128) == 8
    assert sweep.matched_count(rows["baseline"], 128) == 0


def test_matched_tau_removes_the_target_count_of_the_class_mean():
    torch.manual_seed(0)
    c = torch.randn(10, 64)
    for row in sweep.paper_rows("table2")[1:]:
        tau, count = sweep.matched_tau(c, row)
        mean_abs = c.abs().mean(0).double().numpy()
        assert metrics.sparsity_ratio(mean_abs, tau, row.side) * 64 == pytest.approx(count)


def test_spec_table_uses_the_papers_tau_without_c_and_last_k_only_for_its_schedule():
    specs = {s["row"]: s["spec"] for s in sweep.spec_table(sweep.paper_rows("table2"), None, 7)}
    assert specs["baseline"] is None
    assert specs["tail 0.01 t_{n-k,n}"].k == 7 and specs["tail 0.01 t_i"].k is None
    assert specs["head 5 t_i"].tau == 5.0 and specs["head 5 t_i"].side == "head"


def test_ledger_measurements_are_relative_fid_changes():
    fids = {
        "baseline": 10.0,
        "tail 0.01 t_i": 11.0,
        "tail 0.01 t_0": 10.5,
        "tail 0.01 t_{n-k,n}": 10.0,
        "tail 0.02 t_i": 12.0,
        "head 1 t_i": 40.0,
    }
    assert set(fids) == {"baseline", *sweep.LEDGER_ROWS}  # the rows the ledger sweeps suffice
    m = sweep.ledger_measurements([{"row": k, "fid": v} for k, v in fids.items()])
    assert m["pruning-keeps-quality"].value == pytest.approx((0.2,) * 3)  # no interval: a point
    assert m["head-removal-destroys-quality"].value == pytest.approx((3.0,) * 3)
    assert m["late-step-pruning-best-fid"].value == pytest.approx((0.0,) * 3)
    assert "t_0 +5.00%" in m["late-step-pruning-best-fid"].detail


def test_ledger_measurements_carry_the_paired_interval_relative_to_the_baseline():
    table = [
        {"row": "baseline", "fid": 10.0},
        {"row": "tail 0.01 t_i", "fid": 10.1},
        {"row": "tail 0.01 t_0", "fid": 10.0},
        {"row": "tail 0.01 t_{n-k,n}", "fid": 9.9,
         "ci": {"fid": {"difference": -0.1, "low": -0.3, "high": 0.1, "sd": 0.1}}},
        {"row": "tail 0.02 t_i", "fid": 10.2,
         "ci": {"fid": {"difference": 0.2, "low": -0.4, "high": 0.8, "sd": 0.3}}},
        {"row": "head 1 t_i", "fid": 40.0},
    ]  # fmt: skip
    m = sweep.ledger_measurements(table)
    assert m["pruning-keeps-quality"].value == pytest.approx((0.02, -0.04, 0.08))
    assert m["late-step-pruning-best-fid"].value == pytest.approx((-0.01, -0.03, 0.01))


def test_rows_beside_paper_puts_the_papers_values_next_to_ours():
    table = [
        {"row": "baseline", "fid": 3.0, "is_10_splits": 2.0, "class_prob": 90.0, "removed": 0.0}
    ]
    out = sweep.rows_beside_paper(table, "table2", "REPA", "testbed")
    assert out.loc["baseline", "fid (paper)"] == pytest.approx(7.1694)
    assert out.loc["baseline", "fid (this run)"] == 3.0
    assert "class prob. x100 (this run, CLIP stand-in)" in out.columns
    assert out["fid (this run)"].isna().sum() == len(out) - 1


def test_rows_beside_paper_adds_differences_in_the_paper_profile_only():
    table = [{"row": "baseline", "fid": 8.0, "is_10_splits": 170.0, "clip": 29.0, "removed": 0.0}]
    out = sweep.rows_beside_paper(table, "table2", "REPA", "paper")
    assert out.loc["baseline", "fid (diff)"] == pytest.approx(8.0 - 7.1694)
    assert "fid (diff)" not in sweep.rows_beside_paper(table, "table2", "REPA", "testbed").columns


def test_is_is_shown_under_both_protocols_and_compared_under_the_papers():
    row = {"row": "baseline", "fid": 8.0, "is_10_splits": 170.0, "is_adm": 290.0, "removed": 0}
    out = sweep.rows_beside_paper([row], "table2", "REPA", "paper")
    assert out.loc["baseline", "is_10_splits (diff)"] == pytest.approx(170.0 - 176.02)
    assert "is_adm (this run)" in out.columns and "is_adm (paper)" not in out.columns
    shown = display.readable(out).columns
    assert "IS (10 splits) (paper)" in shown and "IS (ADM, 5,000 per split) (this run)" in shown


def test_rows_beside_paper_without_measured_rows_shows_the_paper_alone():
    out = sweep.rows_beside_paper([], "table3", "LightningDiT", "paper")
    assert not [c for c in out.columns if "this run" in c or "diff" in c]
    assert out.loc["baseline", "fid (paper)"] == pytest.approx(7.0802)


def test_class_grid_shows_every_class_or_the_showcase_classes_of_imagenet():
    import numpy as np

    small = np.repeat(np.arange(10, dtype=np.uint8), 3)[:, None, None, None] * np.ones((1, 2, 2, 3))
    grid = sweep.class_grid(small.astype(np.uint8), per_class=3, grid_per_class=2)
    assert grid.shape == (10, 2, 2, 2, 3) and grid[:, :, 0, 0, 0].tolist() == [
        [c, c] for c in range(10)
    ]
    labels = np.arange(1000).repeat(2)
    big = (labels % 256).astype(np.uint8)[:, None, None, None] * np.ones((1, 1, 1, 3), np.uint8)
    grid = sweep.class_grid(big, per_class=2, grid_per_class=1)
    assert grid[:, 0, 0, 0, 0].tolist() == [c % 256 for c in sweep.GRID_CLASSES]


def test_control_rows_stand_after_their_row_with_one_row_per_random_draw():
    rows = sweep.paper_rows("table2")
    asked = {"tail 0.02 t_i": ["random", "mean"], "head 1 t_i": ["variance"],
             "tail 0.01 t_0": ["all"]}  # fmt: skip
    out = sweep.control_rows(rows, asked, draws=2)
    assert [r.label for r in out] == [
        "tail 0.02 t_i | random 1", "tail 0.02 t_i | random 2", "tail 0.02 t_i | mean",
        "head 1 t_i | by variance", "all of c t_0",
    ]  # fmt: skip
    by = {r.label: r for r in out}
    tail = {r.label: r for r in rows}["tail 0.02 t_i"]
    assert [by[f"tail 0.02 t_i | random {k}"].draw for k in (1, 2)] == [0, 1]
    for label in ("tail 0.02 t_i | random 2", "tail 0.02 t_i | mean"):  # only the control differs
        r = by[label]
        assert (r.side, r.schedule, r.paper_tau, r.paper_removed) == (
            tail.side,
            tail.schedule,
            tail.paper_tau,
            tail.paper_removed,
        )
    assert by["all of c t_0"].schedule == "initial" and by["all of c t_0"].control == "all"
    specs = {s["row"]: s["spec"] for s in sweep.spec_table(rows + out, None, 5, classes=10)}
    assert specs["tail 0.02 t_i | random 2"].select == "random"
    assert specs["tail 0.02 t_i | random 2"].draw == 1
    assert specs["tail 0.02 t_i | mean"].replace == "mean"
    assert specs["head 1 t_i | by variance"].select == "variance"
    assert specs["all of c t_0"].select == "all" and specs["all of c t_0"].tau is None


def test_all_controls_give_one_all_of_c_row_per_schedule_and_variance_beside_heads_only():
    rows = sweep.paper_rows("table2")
    out = sweep.control_rows(rows, "all", draws=3)
    labels = [r.label for r in out]
    assert len(labels) == len(set(labels))
    assert sorted(r.label for r in out if r.control == "all") == [
        "all of c t_0", "all of c t_i", "all of c t_{n-k,n}"
    ]  # fmt: skip
    assert {r.side for r in out if r.control == "variance"} == {"head"}
    pruned = [r for r in rows if r.side is not None]
    assert sum(r.control == "random" for r in out) == 3 * len(pruned)
    assert sum(r.control == "mean" for r in out) == len(pruned)
    with pytest.raises(ValueError, match="does not apply"):
        sweep.control_rows(rows, {"tail 0.01 t_i": ["variance"]}, 1)
    with pytest.raises(ValueError, match="expected rows among"):
        sweep.control_rows(rows, {"tail 9 t_i": ["random"]}, 1)
    with pytest.raises(ValueError, match="'all' or a dict"):
        sweep.control_rows(rows, "some", 1)


def test_window_rows_cover_the_steps_once_in_order():
    head = {r.label: r for r in sweep.paper_rows("table2")}["head 1 t_i"]
    out = sweep.window_rows(head, 10, 4)
    assert [r.window for r in out] == [(0, 4), (4, 8), (8, 10)]
    assert [r.label for r in out] == ["head 1 in [0, 4)", "head 1 in [4, 8)", "head 1 in [8, 10)"]
    assert {(r.side, r.schedule, r.paper_tau) for r in out} == {("head", "window", 1.0)}
    spec = sweep.spec_table(out, None, 3)[1]["spec"]
    assert spec.schedule == "window" and spec.window == (4, 8)
    with pytest.raises(ValueError, match="width"):
        sweep.window_rows(head, 10, 11)


def _claims_table(n: int = 500) -> list[dict]:
    """A Table 2 sweep whose t_{n-k,n} row has FID and IS intervals: the paper's row improves
    FID (7.1598 < 7.1694) and not IS (175.49 < 176.02)."""
    ci = {"fid": {"difference": 0.5, "low": -0.5, "high": 1.5, "sd": 0.5},
          "is_10_splits": {"difference": 0.0, "low": -1.0, "high": 1.0, "sd": 0.5}}  # fmt: skip
    spread = {"fid": {"value": 100.0, "low": 98.0, "high": 102.0, "sd": 1.0}}
    return [
        {"row": "baseline", "fid": 100.0, "is_10_splits": 5.0, "n": n, "spread": spread},
        {"row": "tail 0.01 t_{n-k,n}", "fid": 100.5, "n": n, "ci": ci},
    ]


def test_paper_claims_set_the_scaled_noise_on_the_papers_difference():
    out = sweep.paper_claims(_claims_table(), "table2", "REPA", "paper")
    assert list(out["row"]) == ["tail 0.01 t_{n-k,n}"] and list(out["metric"]) == ["fid"]
    diff = 7.1598 - 7.1694
    assert out["paper difference"].iloc[0] == pytest.approx(diff)
    # distances -1, +1 from our estimate, times sqrt(500 / 5000), set on the paper's difference
    scale = (500 / 5000) ** 0.5
    assert out["interval at 5,000"].iloc[0] == f"[{diff - scale:+.4g}, {diff + scale:+.4g}]"
    assert out["verdict"].iloc[0] == "within noise"
    assert "500 samples" in out["noise from"].iloc[0]
    # independent sets: sqrt(2) times the baseline's half-width 2, times the same sqrt(500/5000)
    half = 2**0.5 * 2.0 * scale
    assert out["independent interval"].iloc[0] == f"[{diff - half:+.4g}, {diff + half:+.4g}]"
    assert out["independent verdict"].iloc[0] == "within noise"
    bare = _claims_table()
    del bare[0]["spread"]
    assert sweep.paper_claims(bare, "table2", "REPA", "paper")["independent verdict"].isna().all()


def test_paper_claims_carry_the_testbed_noise_as_a_share_of_its_baseline():
    # the testbed's FID is 100: a spread of 1 is 1% of it, 0.0717 at the paper's 7.17
    out = sweep.paper_claims(_claims_table(n=50000), "table2", "REPA", "testbed")
    diff, half = 7.1598 - 7.1694, 7.1694 / 100.0 * (50000 / 5000) ** 0.5
    assert out["interval at 5,000"].iloc[0] == f"[{diff - half:+.4g}, {diff + half:+.4g}]"
    tight = _claims_table(n=50)  # 100 times fewer samples: a tenth of the spread at 5,000
    tight[1]["ci"]["fid"].update(low=0.499, high=0.501)
    judged = sweep.paper_claims(tight, "table2", "REPA", "testbed")
    assert judged["verdict"].iloc[0] == "improves"  # a row that hardly moves: no paired noise
    assert judged["independent verdict"].iloc[0] == "within noise"  # the noise of a FID itself
    assert sweep.paper_claims(tight[:1], "table2", "REPA", "testbed").empty  # no interval


def test_training_seed_table_sets_the_spread_over_runs_beside_one_runs_noise():
    def row(label, d, sd, block):
        ci = {"difference": d, "low": d - 2 * sd, "high": d + 2 * sd, "sd": sd}
        return {"row": label, "ci": {"fid": ci}, "seed_blocks": {"fid": {"sd_at_n": block}}}

    sweeps = {
        s: [{"row": "baseline", "fid": 10.0}, row("tail 0.02 t_i", d, sd, b)]
        for s, (d, sd, b) in enumerate([(1.0, 0.2, 0.3), (2.0, 0.4, 0.1), (3.0, 0.3, 0.2)])
    }
    frame = sweep.training_seed_table(sweeps).set_index("row")
    got = frame.loc["tail 0.02 t_i"]
    assert list(frame.index) == ["tail 0.02 t_i"]  # the baseline has no change of its own
    assert got["seed 1"] == "+2.000 [+1.200, +2.800]"
    assert got["mean change"] == pytest.approx(2.0)
    assert got["sd over training seeds"] == pytest.approx(1.0)  # sample sd of 1, 2, 3
    assert got["bootstrap sd"] == pytest.approx(0.3) and got["seed-block sd"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="rows of Table 2"):
        sweep.training_seed_sweeps(sweep.SweepSettings(), rows=("no such row",))


def test_training_seed_names_give_the_same_recipe_from_another_seed():
    from dataclasses import replace

    from semantic_bottleneck.training import testbed

    name = testbed.seed_name(testbed.SEED_MODEL, 2)
    assert name == "testbed-flow-seed2" and testbed.split_seed(name) == ("testbed-flow", 2)
    assert testbed.testbed_config(name) == replace(testbed.testbed_config("testbed-flow"), seed=2)
    assert testbed.split_tier("testbed-flow-long-seed1") == ("testbed-flow", "long")
    assert testbed.seed_name("testbed-flow", 0) == "testbed-flow"
