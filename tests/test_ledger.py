"""The claims ledger: tolerance rules, claim specs, verdicts, the paper's own tables, inventory."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from semantic_bottleneck.book import provenance
from semantic_bottleneck.core import conditioning
from semantic_bottleneck.core.analysis import ModelC
from semantic_bottleneck.core.conventions import convention
from semantic_bottleneck.sections import verdicts
from semantic_bottleneck.verdicts import ledger, paper, paper_checks
from semantic_bottleneck.verdicts.measures import (
    Measurement,
    dit_max_abs,
    fraction_of_d,
    median_over,
    npr_decline,
)
from semantic_bottleneck.verdicts.rules import (
    NOT_REPRODUCED,
    NOT_TESTED,
    PARTLY,
    REPRODUCED,
    VERDICTS,
    AtLeast,
    AtMost,
    Both,
    Decline,
    InRange,
)
from semantic_bottleneck.zoo import build_model

# ----------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.995, REPRODUCED), (0.99, REPRODUCED), (0.95, PARTLY), (0.9, NOT_REPRODUCED)],
)
def test_at_least_branches(value, expected):
    assert AtLeast(0.99, 0.05).judge(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(-0.1, REPRODUCED), (0.05, REPRODUCED), (0.2, PARTLY), (0.31, NOT_REPRODUCED)],
)
def test_at_most_branches(value, expected):
    assert AtMost(0.05, 0.25).judge(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.39, REPRODUCED),
        (0.38, REPRODUCED),
        (0.35, PARTLY),
        (0.44, PARTLY),
        (0.1, NOT_REPRODUCED),
        (0.5, NOT_REPRODUCED),
    ],
)
def test_in_range_branches(value, expected):
    assert InRange(0.38, 0.40, 0.33, 0.45).judge(value) == expected


@pytest.mark.parametrize(
    ("peak_end", "expected"),
    [
        ((0.93, 0.05), REPRODUCED),  # high early, low late: the paper's curve
        ((0.95, 0.48), PARTLY),  # falls by half: direction holds, level does not
        ((0.70, 0.03), PARTLY),  # ends low but never peaked near 0.9
        ((0.60, 0.58), NOT_REPRODUCED),  # falls by less than min_drop
        ((0.60, 0.65), NOT_REPRODUCED),  # rises
    ],
)
def test_decline_branches(peak_end, expected):
    assert Decline(0.85, 0.06, 0.1).judge(peak_end) == expected


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ((0.8, 5.0), REPRODUCED),
        ((0.8, 30.0), PARTLY),
        ((3.0, 5.0), PARTLY),
        ((3.0, 30.0), NOT_REPRODUCED),
    ],
)
def test_both_combines_parts(pair, expected):
    rule = Both(InRange(0.6, 1.0, 0.4, 1.6), InRange(4, 8, 2, 16))
    assert rule.judge(pair) == expected


def test_rules_reject_bad_values_and_bounds():
    with pytest.raises(ValueError, match="finite number"):
        AtLeast(0.99, 0.05).judge(math.nan)
    with pytest.raises(ValueError, match="finite number"):
        AtMost(0.0, 0.1).judge("0.1")
    with pytest.raises(ValueError, match="pair"):
        Decline(0.85, 0.06, 0.1).judge(0.5)
    with pytest.raises(ValueError, match="band"):
        AtLeast(0.99, -0.01)
    with pytest.raises(ValueError, match="partly_lo <= lo <= hi <= partly_hi"):
        InRange(0.4, 0.3, 0.2, 0.5)
    with pytest.raises(ValueError, match="min_drop"):
        Decline(0.85, 0.06, 1.5)


def test_describe_states_bounds_and_band():
    assert AtLeast(0.99, 0.05, "cosine").describe() == "cosine >= 0.99 (partly >= 0.94)"
    assert AtMost(0.05, 0.25, "change").describe() == "change <= 0.05 (partly <= 0.3)"
    text = InRange(0.01, 0.02, 0.005, 0.04, "nPR", percent=True).describe()
    assert text == "nPR in [1%, 2%] (partly [0.5%, 4%])"


# ----------------------------------------------------------------------------- specs and verdicts


def test_every_claim_of_the_paper_has_a_spec():
    assert [s.claim_id for s in ledger.claim_specs()] == [c["id"] for c in paper.claims()]


def test_nothing_measured_means_not_tested():
    verdicts = ledger.evaluate({})
    assert len(verdicts) == len(paper.claims())
    assert {v.verdict for v in verdicts} == {NOT_TESTED}
    assert all(v.detail.startswith("not measured") for v in verdicts)


@pytest.mark.parametrize(
    ("fid_change", "expected"), [(0.02, REPRODUCED), (0.2, PARTLY), (0.5, NOT_REPRODUCED)]
)
def test_supplied_measurement_decides_an_evaluation_claim(fid_change, expected):
    verdicts = {v.claim_id: v for v in ledger.evaluate({}, {"pruning-keeps-quality": fid_change})}
    assert verdicts["pruning-keeps-quality"].verdict == expected
    assert verdicts["head-removal-destroys-quality"].verdict == NOT_TESTED


def test_supplied_overrides_measured_and_carries_its_evidence():
    measured = {"cosine-imagenet": Measurement(0.5, "0.5")}
    supplied = {"cosine-imagenet": Measurement(0.995, "0.995", evidence=("tab01-statistics",))}
    (v,) = [v for v in ledger.evaluate(measured, supplied) if v.claim_id == "cosine-imagenet"]
    assert (v.verdict, v.measured, v.evidence) == (REPRODUCED, "0.995", ("tab01-statistics",))


def test_unknown_supplied_claim_is_an_error():
    with pytest.raises(ValueError, match="claim ids"):
        ledger.evaluate({}, {"no-such-claim": 1.0})


# ----------------------------------------------------------------------------- measurements


def _table(rows):
    return pd.DataFrame(rows)


def test_median_over_scopes_to_the_claims_models_in_the_paper_profile():
    table = _table(
        [
            {"model": "DiT", "paper_name": "DiT", "npr": 0.10},
            {"model": "MDT", "paper_name": "MDT", "npr": 0.016},
            {"model": "REPA", "paper_name": "REPA", "npr": 0.015},
        ]
    )
    m = median_over(table, "npr", "{:.3f}", names=["MDT", "REPA"])
    assert m.value == pytest.approx(0.0155)
    assert "DiT" not in m.detail
    assert median_over(table, "npr", "{:.3f}", names=["MG"]) is None


def test_median_over_uses_every_testbed_model():
    table = _table(
        [
            {"model": "testbed-ddpm", "paper_name": None, "npr": 0.4},
            {"model": "testbed-flow", "paper_name": None, "npr": 0.6},
        ]
    )
    assert median_over(table, "npr", "{:.3f}", names=["MDT"]).value == pytest.approx(0.5)


def test_fraction_of_d_compares_counts_at_the_same_proportion():
    table = _table([{"model": "a", "d": 128, "n": 2.0}, {"model": "b", "d": 1152, "n": 18.0}])
    m = fraction_of_d(table, "n")
    assert m.value == pytest.approx((2 / 128 + 18 / 1152) / 2)


def test_dit_max_abs_needs_dit_and_others():
    table = _table(
        [
            {"model": "DiT", "is_dit": True, "max_abs_c": 0.8},
            {"model": "SiT", "is_dit": False, "max_abs_c": 4.0},
            {"model": "REPA", "is_dit": False, "max_abs_c": 6.0},
        ]
    )
    assert dit_max_abs(table, {}).value == (0.8, 5.0)
    assert dit_max_abs(table[table["is_dit"]], {}) is None


def test_npr_decline_reads_peak_and_end_of_the_logs():
    records = [{"step": s, "classes_npr_mean": v} for s, v in [(0, 0.6), (25, 0.9), (50, 0.4)]]
    m = npr_decline(pd.DataFrame(), {"run": records})
    assert m.value == (0.9, 0.4)
    assert npr_decline(pd.DataFrame(), {}) is None


def _tiny_model(name: str, family: str, objective: str, seed: int) -> ModelC:
    torch.manual_seed(seed)
    net = build_model(
        family, input_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=2,
        num_heads=2, num_classes=6, learn_sigma=False,
    )  # fmt: skip
    emb = conditioning.embedders_from_model(net)
    return ModelC(name, name, family, convention(objective), emb, "tiny")


@pytest.fixture(scope="module")
def tiny_models():
    continuous = dataclasses.replace(_tiny_model("tiny-vec", "dit", "ddpm", 2), continuous=True)
    return [
        _tiny_model("tiny-ddpm", "dit", "ddpm", 0),
        _tiny_model("tiny-flow", "sit", "repa", 1),
        continuous,
    ]


def test_ledger_on_models_measures_every_c_claim(tiny_models):
    records = [{"step": s, "classes_npr_mean": v} for s, v in [(0, 0.64), (25, 0.95), (50, 0.5)]]
    verdicts = {v.claim_id: v for v in ledger.ledger(tiny_models, {"tiny-flow": records})}
    measured_by_c = {s.claim_id for s in ledger.claim_specs() if s.measure is not None}
    for claim_id, v in verdicts.items():
        assert v.verdict in VERDICTS
        assert (v.verdict != NOT_TESTED) == (claim_id in measured_by_c), claim_id
    assert verdicts["npr-falls-during-training"].verdict == PARTLY


def test_ledger_markdown_links_only_pages_of_the_book():
    verdicts = ledger.evaluate({"cosine-imagenet": Measurement(0.995, "0.995")})
    text = ledger.ledger_markdown(verdicts, pages=["tab01-statistics"])
    lines = text.splitlines()
    assert len(lines) == 2 + len(paper.claims())
    assert "{doc}`tab01-statistics </book/generated/tab01-statistics>`" in text
    assert "{doc}`fig03-cosine-matrix" not in text and "`fig03-cosine-matrix`" in text
    cells = [line.replace("\\|", "") for line in lines]
    assert len({c.count("|") for c in cells}) == 1  # every row has the same number of columns


# ----------------------------------------------------------------------------- the paper's own tables


def test_paper_tables_judged_by_the_same_rules():
    verdicts = {v.claim_id: v for v in ledger.evaluate(paper_checks.paper_measurements())}
    # Table 2: FID 7.1694 -> 9.2202 at 762 removed is +28.6%: above 5%, within 30%.
    assert verdicts["pruning-keeps-quality"].verdict == PARTLY
    # Table 3: LightningDiT's t_{n-k,n} FID 7.0745 is 0.9% above its t_i FID 7.0130.
    assert verdicts["late-step-pruning-best-fid"].verdict == PARTLY
    # Table 1: MDT, LightningDiT, MG, REPA nPR 1.60, 2.05, 1.73, 1.53%: median 1.665%.
    assert verdicts["npr-1-to-2-percent"].verdict == REPRODUCED
    # Table 1: median cosine of the six ImageNet models is 0.98785, below 0.99.
    assert verdicts["cosine-imagenet"].verdict == PARTLY
    assert verdicts["dims-above-1"].verdict == NOT_TESTED


def test_inconsistency_table_measures_each_known_item(tiny_models):
    table = paper_checks.inconsistency_table(tiny_models)
    assert list(table["id"]) == [i["id"] for i in paper.inconsistencies()]
    assert "448/1152 = 38.89% (printed 38.94%)" in table.iloc[0]["this run"]
    assert all("tiny-ddpm" in text for text in table["this run"].iloc[1:])


def test_unsupported_inventory_covers_every_unreproducible_entry():
    table = paper_checks.unsupported_inventory()
    whole = {e["id"] for e in paper.inventory() if not e["reproducible_here"]}
    assert set(table.loc[table["scope"] == "whole", "id"]) == whole
    assert set(table.loc[table["scope"] == "rows", "id"]) == set()  # no table lacks rows
    assert table.empty  # X-MDPT's sampler and DeepFashion evaluation are here


def test_unsupported_rows_are_the_papers_printed_rows():
    assert paper_checks.unsupported_rows("table7").empty  # X-MDPT's Table 7 is measured
    assert paper_checks.unsupported_rows("table1").empty  # X-MDPT and MDSGen are measured
    assert paper_checks.unsupported_rows("table2").empty


def test_scorecard_states_each_claim_with_paper_value_verdict_mark_and_page():
    verdicts = [
        ledger.Verdict(
            "cosine-imagenet",
            "0.836",
            "cosine > 0.99",
            "band",
            "not reproduced",
            ("tab01-statistics",),
        ),
        ledger.Verdict(
            "dit-min-cosine", "0.876", "> 0.85", "band", "reproduced", ("fig03-cosine-matrix",)
        ),
        ledger.Verdict("cosine-continuous", "n/a", "> 0.999", "band", "not tested", ()),
    ]
    long = [dataclasses.replace(v, verdict="reproduced") for v in verdicts]
    text = ledger.scorecard_markdown({"ci": verdicts, "long": long}, ["tab01-statistics"])
    lines = text.splitlines()
    assert len(lines) == 2 + len(verdicts)
    assert "CI-trained (2,000 steps): measured" in lines[0] and "long-trained (16,000" in lines[0]
    assert lines[2].count("verdict-yes") == 1 and lines[2].count("verdict-no") == 1
    assert "exceeding 99% on ImageNet-1K" in lines[2]  # the paper's own words
    assert "{doc}`tab01-statistics" in lines[2] and "| - |" in lines[4]  # links only to pages
    assert 'class="verdict verdict-no"' in lines[2] and "verdict-yes" in lines[3]
    assert ledger.verdict_counts(verdicts) == {
        "reproduced": 1, "partly": 0, "not reproduced": 1, "not tested": 1,
    }  # fmt: skip
    marks = {ledger.verdict_mark(v) for v in ledger.VERDICT_MARKS}
    assert len(marks) == 4  # one distinct mark per verdict


def test_build_info_names_profile_commit_and_hardware():
    info = provenance.build_info("paper")
    assert info["profile"] == "paper" and info["built"].endswith("UTC")
    assert info["commit"] and ("CPUs)" in info["hardware"] or "(x" in info["hardware"])


def test_tier_inputs_judge_the_same_models_in_every_tier(monkeypatch):
    seen = []

    def fake_inputs(profile, models, train_steps, use_sweeps, table2, tier="ci"):
        seen.append((tuple(models), tier))
        return ledger.LedgerInputs([], [], {}, {}, ())

    monkeypatch.setattr(ledger, "ledger_inputs", fake_inputs)
    out = ledger.tier_inputs("testbed", ["testbed-ddpm-long", "testbed-flow", "testbed-ddpm"])
    assert list(out) == ["ci", "long"]
    assert seen == [
        (("testbed-ddpm", "testbed-flow"), "ci"),
        (("testbed-ddpm-long", "testbed-flow-long"), "long"),
    ]
    seen.clear()
    assert list(ledger.tier_inputs("paper", ["dit-xl-2"])) == ["official"]
    assert seen == [(("dit-xl-2",), "ci")]
    assert ledger.tier_label("official") == "official checkpoints"


def test_the_ledger_page_compares_the_tiers_claim_by_claim(monkeypatch):
    def fake_inputs(profile, models, train_steps=None, use_sweeps=True, table2=None):
        return {"ci": ledger.LedgerInputs([], [], {}, {}, ("no sweep",)),
                "long": ledger.LedgerInputs([], [], {}, {}, ("no sweep",))}  # fmt: skip

    monkeypatch.setattr(ledger, "tier_inputs", fake_inputs)
    page = verdicts.ledger_page("testbed", ["testbed-ddpm"], supplied={"npr-1-to-2-percent": 0.015})
    assert verdicts.tier_names(page) == ["ci", "long"] and page.notes == ["no sweep"]
    for block in ("ledgers", "details"):  # every tier under its heading
        assert page.markdown[block].count("### ") == 2, block
        assert "### long-trained" in page.markdown[block], block
    rows = page.markdown["tiers"].splitlines()
    assert len(rows) == 2 + len(paper.claims())
    npr = next(r for r in rows if "`npr-1-to-2-percent`" in r)
    assert npr.count("verdict-yes") == 2  # the supplied value judged in both tiers
    assert "CI-trained (2,000 steps) models:" in page.values["counts"][0]
    assert page.values["n_claims"][0] == len(paper.claims())


def test_the_continuous_pruning_claim_reads_table7s_own_sweep(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))  # no X-MDPT inputs
    measured, note = ledger.continuous_pruning("paper")
    assert measured is None and "semantic-bottleneck xmdpt-sweep" in note
    measured, note = ledger.continuous_pruning("testbed", "ci")  # the page prunes a long model
    assert measured is None and "testbed-continuous-long" in note
    seen = {}

    def fake_sweep(model, rows, settings, steps=None):
        seen.update(model=model, rows=rows, settings=settings)
        table = [{"row": "baseline", "psnr": 20.0, "psnr_change": 0.0, "psnr_change_ci": 0.0}]
        table += [{"row": "tail 0.1 t_i", "psnr": 19.8, "psnr_change": -0.2, "psnr_change_ci": 0.1}]
        return {"table": table}

    monkeypatch.setattr(ledger, "run_continuous_sweep", fake_sweep)
    measured, note = ledger.continuous_pruning("testbed", "long")
    assert note is None and seen["model"] == "testbed-continuous-long"
    assert seen["rows"] == ledger.TABLE7_ROWS and seen["settings"].grid_per_class == 1
    page = ledger.resolve_parameters(ledger.TABLE7_PAGE, "testbed")  # what the page samples
    keys = ("per_condition", "num_steps", "last_k", "base_seed")
    assert seen["settings"] == ledger.table7_settings(*(page[k] for k in keys))
    assert measured.value == pytest.approx((0.01, 0.005, 0.015))  # PSNR loss over 20 dB
    spec = {c.claim_id: c for c in ledger.claim_specs()}["continuous-pruning-keeps-quality"]
    assert spec.continuous and spec.rule.judge(measured.value) == "reproduced"
    assert spec.rule.judge((0.04, -0.01, 0.09)) == "partly"  # within noise
