"""Bootstrap intervals: resampling within classes, scaling to another count, the class bootstrap
of c's statistics, and the paired metrics that reproduce `fidelity.evaluate` on the full set."""

import numpy as np
import pytest
import torch

from semantic_bottleneck.core import bootstrap, metrics
from semantic_bottleneck.verdicts.rules import change_verdict


def test_stratified_resamples_keep_each_class_inside_itself():
    labels = np.repeat(np.arange(3), 4)
    idx = bootstrap.stratified_indices(labels, 50, seed=1)
    assert idx.shape == (50, 12)
    assert (labels[idx] == labels[None, :]).all()
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap.stratified_indices(labels, 0)


def test_scaled_interval_shrinks_as_the_square_root_of_the_count():
    low, high = bootstrap.scaled_interval(1.0, (0.0, 3.0), 200, 5000)
    assert low == pytest.approx(1 - 0.2) and high == pytest.approx(1 + 0.4)


def test_class_intervals_hold_the_table_1_estimates():
    c = torch.randn(12, 16, generator=torch.Generator().manual_seed(0)) + 1.0
    out = bootstrap.class_intervals(c, n_boot=200)
    assert out["cosine"] == pytest.approx(metrics.cosine_summary(c)["mean"])
    assert out["npr"] == pytest.approx(float(metrics.normalized_participation_ratio(c).mean()))
    for name in bootstrap.CLASS_STATISTICS:
        assert out[f"{name}_low"] <= out[name] <= out[f"{name}_high"]


@pytest.mark.parametrize(
    "low, high, better, tol, verdict",
    [
        (-0.5, -0.1, "lower", None, "improves"),
        (-0.5, 0.1, "lower", 0.2, "preserves quality"),
        (-0.5, 0.3, "lower", 0.2, "within noise"),
        (0.3, 0.5, "lower", 0.2, "degrades"),
        (0.1, 0.5, "higher", None, "improves"),
        (-0.1, 0.5, "higher", None, "within noise"),
    ],
)
def test_change_verdicts_use_the_whole_interval(low, high, better, tol, verdict):
    assert change_verdict(low, high, better, tol) == verdict


def test_paired_metrics_on_the_full_set_equal_the_evaluator():
    from semantic_bottleneck.evaluation import paired
    from semantic_bottleneck.evaluation.fidelity import digits_reference, evaluate

    images = digits_reference()[:60].numpy()  # real digits as samples
    ref = paired.reference_features()
    sample = paired.SampleSet(paired.sample_features(images), np.ones(60), ref)
    got = sample.scores(np.arange(60))
    want = evaluate(images, profile="testbed")
    for key in ("fid", "is_10_splits", "precision", "recall"):
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6)
    same = paired.paired_bootstrap(sample, sample, np.repeat(np.arange(6), 10), n_boot=20)
    assert all(v["low"] == v["high"] == 0 for v in same.values())  # a set against itself
    own = paired.bootstrap_spread(sample, np.repeat(np.arange(6), 10), n_boot=50)
    assert own["fid"]["value"] == pytest.approx(got["fid"])
    assert own["fid"]["high"] > own["fid"]["low"] and own["fid"]["sd"] > 0  # noise of one set
    assert own["clip"]["low"] == own["clip"]["high"] == 1.0  # a constant score has none


def test_set_scores_from_the_features_are_the_evaluators_scores_exactly():
    from semantic_bottleneck.evaluation import paired
    from semantic_bottleneck.evaluation.fidelity import digits_reference, evaluate

    g = np.random.default_rng(0)
    real = digits_reference()[:60].numpy()
    noisy = np.clip(real.astype(int) + g.integers(-60, 60, real.shape), 0, 255).astype(np.uint8)
    ref = paired.reference_features()
    for images in (real, noisy):
        got = paired.set_scores(paired.sample_features(images), ref)
        assert got == evaluate(images, profile="testbed")  # every key, bit for bit
    assert got["fid"] > 1.0  # the noisy set is scored, not the real one again


def test_a_baseline_scores_its_resamples_once_for_every_row_it_is_paired_with():
    from semantic_bottleneck.evaluation import paired
    from semantic_bottleneck.evaluation.fidelity import digits_reference

    g = np.random.default_rng(1)
    real = digits_reference()[:40].numpy()
    noisy = [np.clip(real.astype(int) + g.integers(-s, s, real.shape), 0, 255).astype(np.uint8)
             for s in (30, 90)]  # fmt: skip
    ref, labels = paired.reference_features(), np.repeat(np.arange(4), 10)
    sets = [paired.SampleSet(paired.sample_features(x), g.random(40), ref) for x in [real, *noisy]]
    base, rows = sets[0], sets[1:]
    calls = []
    scores = base.scores
    base.scores = lambda idx: calls.append(1) or scores(idx)
    got = [paired.paired_bootstrap(base, row, labels, n_boot=15, seed=3) for row in rows]
    assert len(calls) == 2 + 15  # the full set once per row, the resamples once in all
    spread = paired.bootstrap_spread(base, labels, n_boot=15, seed=3)
    assert len(calls) == 3 + 15  # the spread reads the same resamples
    resamples = list(bootstrap.stratified_indices(labels, 15, 3))
    for row, ci in zip(rows, got, strict=True):  # the interval written out resample by resample
        diffs = {k: [row.scores(i)[k] - scores(i)[k] for i in resamples] for k in paired.METRICS}
        for k in paired.METRICS:
            low, high = bootstrap.percentile_interval(diffs[k])
            full = row.scores(np.arange(40))[k] - scores(np.arange(40))[k]
            assert ci[k] == {"difference": full, "low": low, "high": high,
                             "sd": float(np.std(diffs[k]))}  # fmt: skip
    own = [scores(i)["fid"] for i in resamples]
    assert spread["fid"]["sd"] == float(np.std(own))
    assert got[0]["fid"] != got[1]["fid"]  # the rows differ, so neither is the other's reuse
    other = base.resample_scores(labels, 15, 4)  # another seed is resampled anew
    assert len(calls) == 3 + 30 and not np.array_equal(other["fid"], own)


def test_class_interval_table_writes_each_statistic_with_its_interval():
    class Model:
        label = "m"

        def c(self):
            return torch.randn(10, 16, generator=torch.Generator().manual_seed(2)) + 1.0

    table, values = bootstrap.class_interval_table([Model()], n_boot=100)
    ci = bootstrap.class_intervals(Model().c(), n_boot=100)
    row = table.iloc[0]
    assert row["model"] == "m" and row["classes"] == 10
    assert row["mean cosine [95% interval]"] == (
        f"{ci['cosine']:.4f} [{ci['cosine_low']:.4f}, {ci['cosine_high']:.4f}]"
    )
    assert row["nPR width (points)"] == pytest.approx(100 * (ci["npr_high"] - ci["npr_low"]))
    assert values["npr_width_max"][0] == row["nPR width (points)"]
    assert values["ci_boot"] == (100, "{}")
    empty, none = bootstrap.class_interval_table([])
    assert empty.empty and none["cos_width_max"][0] is None


@pytest.mark.parametrize("n", [7, 40])  # fewer samples than feature dimensions, and more
def test_paired_fid_equals_the_frechet_distance_of_the_resampled_statistics(n):
    from scipy import linalg

    from semantic_bottleneck.evaluation import paired

    g = np.random.default_rng(n)
    f = 16
    ref_x = g.normal(size=(200, f)) @ g.normal(size=(f, f)) * 0.3
    ref = paired.ReferenceFeatures(ref_x.mean(0), np.cov(ref_x, rowvar=False), ref_x[:20, :4])
    x = g.normal(size=(n, f)) + 0.5
    feats = {"fid": x, "logits": g.normal(size=(n, 10)), "prc": x[:, :4].astype(np.float32)}
    sample = paired.SampleSet(feats, np.zeros(n), ref)
    idx = g.integers(0, n, n)  # a resample, with repeats
    xs = x[idx]
    mu, sigma = xs.mean(0), np.cov(xs, rowvar=False)
    covmean = linalg.sqrtm(sigma @ ref.sigma).real
    want = (
        ((mu - ref.mu) ** 2).sum() + np.trace(sigma) + np.trace(ref.sigma) - 2 * np.trace(covmean)
    )
    assert sample.fid(idx) == pytest.approx(want, rel=1e-6, abs=1e-8)
