"""FID, IS (both protocols) and precision/recall through torch-fidelity, with the digits classifier
and Inception."""

from __future__ import annotations

import datetime
from unittest import mock

import numpy as np
import pytest
import torch
import torch_fidelity
from fakes import random_inception
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.utils import create_feature_extractor

from semantic_bottleneck.evaluation.classifier import (
    classifier_folder,
    classifier_input,
    load_classifier,
)
from semantic_bottleneck.evaluation.fidelity import (
    DIGITS_EXTRACTOR,
    IS_PROTOCOLS,
    Reference,
    _fid,
    _Images,
    adm_inception_score,
    digits_reference,
    evaluate,
    inception_scores,
    register_digits_extractor,
    split_inception_score,
    to_adm_images,
)
from semantic_bottleneck.evaluation.inputs import MissingInputError
from semantic_bottleneck.training.data import digits
from semantic_bottleneck.zoo.checkpoint import UnsafeCheckpointError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The default classifier's artifact folder, trained once per session in a temporary cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMANTIC_BOTTLENECK_CACHE", str(tmp_path_factory.getbasetemp() / "eval-cache"))
        yield classifier_folder()


@pytest.fixture(scope="module")
def real():
    """Real digits in the ADM layout: train split (samples) and test split (the reference)."""
    return to_adm_images(digits("train", 0)[0]), digits_reference()


def _noise(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)


def _evaluate(samples, reference, folder, **kwargs):
    return evaluate(samples, reference, weights=folder, cuda=False, **kwargs)


def test_fid_of_a_set_against_itself_is_zero(real, folder):
    out = _evaluate(real[1], real[1], folder, metrics=("fid",))
    assert abs(out["fid"]) < 1e-6


def test_fid_of_noise_is_far_above_fid_between_real_splits(real, folder):
    between = _evaluate(*real, folder, metrics=("fid",))["fid"]
    noise = _evaluate(_noise(400), real[1], folder, metrics=("fid",))["fid"]
    assert 0 < between < 10 and noise > 50 * between


def test_inception_score_real_digits_above_one_repeated_image(real, folder):
    real_is = _evaluate(real[0], None, folder, metrics=("is",))
    repeated = real[0][:1].expand(50, -1, -1, -1)
    one_is = _evaluate(repeated, None, folder, metrics=("is",))
    for key in ("is_adm", "is_10_splits"):
        assert one_is[key] == pytest.approx(1.0, abs=1e-5)  # p(y|x) = p(y): KL 0 (float32)
        assert real_is[key] > 8.0  # 10 balanced, confidently classified classes: close to 10
    assert "is" not in real_is


def test_inception_scores_of_evaluate_are_the_protocols_on_the_classifier_logits(real, folder):
    model, _ = load_classifier(folder)
    samples = real[0][:300]
    with torch.no_grad():
        logits = model.features(classifier_input(samples.permute(0, 3, 1, 2))) @ model.head.weight.T
    out = _evaluate(samples, None, folder, metrics=("is",))
    assert out["is_adm"] == _adm_reference(logits.softmax(1).numpy())  # one chunk of 300
    want = isc_features_to_metric(logits, 10, shuffle=True, rng_seed=2020)["inception_score_mean"]
    assert out["is_10_splits"] == pytest.approx(want, rel=1e-12)


def test_precision_recall_real_near_one_noise_near_zero(real, folder):
    same = _evaluate(*real, folder, metrics=("prc",))
    assert same["precision"] > 0.85 and same["recall"] > 0.85
    noise = _evaluate(_noise(400), real[1], folder, metrics=("prc",))
    assert noise["precision"] < 0.15 and noise["recall"] < 0.15


def test_evaluate_equals_torch_fidelity_calculate_metrics(real, folder):
    samples, reference = real[0][:500], real[1]
    ours = _evaluate(samples, reference, folder)
    # IS at torch-fidelity's defaults: 10 splits, shuffled with seed 2020
    theirs = torch_fidelity.calculate_metrics(
        input1=_Images(samples.permute(0, 3, 1, 2)), input2=_Images(reference.permute(0, 3, 1, 2)),
        feature_extractor=register_digits_extractor(), feature_extractor_weights_path=str(folder),
        isc=True, fid=True, prc=True, prc_neighborhood=3,
        cuda=False, cache=False, verbose=False, save_cpu_ram=True,
    )  # fmt: skip
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-9)
    assert ours["is_10_splits"] == pytest.approx(theirs["inception_score_mean"], rel=1e-12)
    assert ours["precision"] == theirs["precision"] and ours["recall"] == theirs["recall"]
    assert ours["n_samples"] == 500 and ours["n_reference"] == 359


def test_default_testbed_reference_is_the_digits_test_split(real, folder):
    out = _evaluate(real[0][:200], None, folder, metrics=("fid",))
    assert out["reference"] == "digits test split" and out["extractor"] == DIGITS_EXTRACTOR
    assert out["fid"] == _evaluate(real[0][:200], real[1], folder, metrics=("fid",))["fid"]


def test_npz_reference_without_statistics_uses_its_images(real, folder, tmp_path):
    path = tmp_path / "ref.npz"
    np.savez(path, arr_0=real[1].numpy(), mu=np.zeros(3), sigma=np.eye(3))  # not digits features
    from_file = _evaluate(real[0][:200], path, folder)
    given = _evaluate(real[0][:200], real[1], folder)
    assert from_file["fid"] == given["fid"] and from_file["precision"] == given["precision"]


def test_fid_uses_precomputed_reference_statistics():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(40, 6, generator=g)
    mu, sigma = np.linspace(0, 1, 6), np.diag(np.linspace(1, 2, 6))
    ours = _fid(feats, Reference("npz", None, {"mu": mu, "sigma": sigma}), None, "2048", False)
    stats = {k: v.astype(np.float64) for k, v in fid_features_to_statistics(feats).items()}
    expected = fid_statistics_to_metric(stats, {"mu": mu, "sigma": sigma}, False)
    assert ours == expected["frechet_inception_distance"]
    with pytest.raises(ValueError, match="6 dimensions"):
        _fid(feats, Reference("npz", None, {"mu": mu[:3], "sigma": sigma}), None, "2048", False)


def test_extractor_takes_the_channel_mean_and_resizes_other_sizes(real, folder):
    extractor = create_feature_extractor(
        register_digits_extractor(), ["features"], cuda=False, verbose=False,
        feature_extractor_weights_path=str(folder),
    )  # fmt: skip
    gray = real[1][:50].permute(0, 3, 1, 2).int()  # (50, 3, 8, 8), equal channels
    spread = torch.minimum(gray, 255 - gray).clamp(max=20) * torch.tensor([-1, 0, 1])[:, None, None]
    colour = (gray + spread).to(torch.uint8)  # channels g - d, g, g + d: mean g
    with torch.no_grad():
        assert torch.equal(extractor(colour)[0], extractor(gray.to(torch.uint8))[0])
        big = colour.repeat_interleave(4, -1).repeat_interleave(4, -2)  # (50, 3, 32, 32)
        model, _ = load_classifier(folder)
        assert torch.allclose(extractor(big)[0], model.features(classifier_input(big)), atol=1e-6)


@pytest.mark.parametrize(
    "samples, message",
    [
        (np.zeros((4, 8, 8, 3), dtype=np.float32), "uint8 images"),
        (np.zeros((4, 3, 8, 8), dtype=np.uint8), r"\(N, H, W, 3\)"),
        (np.zeros((1, 8, 8, 3), dtype=np.uint8), "at least 2"),
    ],
)
def test_bad_samples_are_refused_before_any_work(samples, message):
    with pytest.raises(ValueError, match=message):
        evaluate(samples, profile="testbed")


def test_bad_metric_and_profile_are_refused():
    images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="subset of"):
        evaluate(images, metrics=("kid",))
    with pytest.raises(ValueError, match="profile must be"):
        evaluate(images, profile="imagenet")


def test_paper_profile_names_every_missing_input(tmp_path):
    images = np.zeros((10, 16, 16, 3), dtype=np.uint8)
    with pytest.raises(MissingInputError) as err:
        evaluate(images, profile="paper", cache_dir=tmp_path)
    message = str(err.value)
    assert set(err.value.names) == {"inception-fidelity", "adm-ref-imagenet256"}
    assert "`semantic-bottleneck fetch inception-fidelity`" in message
    assert "`semantic-bottleneck fetch adm-ref-imagenet256`" in message
    assert "weights-inception-2015-12-05-6726825d.pth" in message
    with pytest.raises(MissingInputError) as err:  # IS needs no reference batch
        evaluate(images, profile="paper", metrics=("is",), cache_dir=tmp_path)
    assert err.value.names == ("inception-fidelity",)


def test_unsafe_inception_weights_are_refused_before_unpickling(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"fc.weight": torch.zeros(1), "when": datetime.date(2020, 1, 1)}, path)
    images = np.zeros((10, 16, 16, 3), dtype=np.uint8)
    with mock.patch("semantic_bottleneck.evaluation.fidelity.create_feature_extractor") as create:
        with pytest.raises(UnsafeCheckpointError, match="datetime"):
            evaluate(images, profile="paper", metrics=("is",), weights=path)
    create.assert_not_called()


def test_paper_profile_runs_inception_against_an_adm_style_batch(tmp_path):
    net = random_inception()  # saved as its weights file would be
    weights = tmp_path / "inception.pth"
    torch.save(net.state_dict(), weights)
    samples, ref = _noise(10, 16), _noise(4, 16, seed=1)
    # sigma = 0 makes the reference term vanish: FID = |mu_s - mu|^2 + tr(sigma_s)
    mu, sigma = np.full(2048, 0.01), np.zeros((2048, 2048))
    np.savez(tmp_path / "ref.npz", arr_0=ref.numpy(), mu=mu, sigma=sigma)

    out = evaluate(samples, tmp_path / "ref.npz", profile="paper", weights=weights, cuda=False)
    with torch.no_grad():
        pool, logits = net(samples.permute(0, 3, 1, 2))
    pool = pool.double().numpy()
    expected = ((pool.mean(0) - mu) ** 2).sum() + np.trace(np.cov(pool, rowvar=False))
    assert out["fid"] == pytest.approx(expected, rel=1e-4)
    assert out["is_adm"] == _adm_reference(logits.softmax(1).numpy())  # 1,008 classes
    want = isc_features_to_metric(logits, 10, shuffle=True, rng_seed=2020)["inception_score_mean"]
    assert out["is_10_splits"] == pytest.approx(want, rel=1e-12)
    assert out["n_reference"] == 4 and 0 <= out["precision"] <= 1


# ----------------------------------------------------------------------------- IS protocols


def _adm_reference(preds: np.ndarray, split_size: int = 5000) -> float:
    """guided-diffusion evaluations/evaluator.py `compute_inception_score`, retyped after its
    TF softmax (`preds` are its float32 probabilities)."""
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i : i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        kl = np.mean(np.sum(kl, 1))
        scores.append(np.exp(kl))
    return float(np.mean(scores))


def _random_logits(n: int, k: int, scale: float = 3.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, k, generator=g)


def _one_hot_logits(labels, k: int, margin: float) -> torch.Tensor:
    return margin * torch.nn.functional.one_hot(torch.as_tensor(labels), k).float()


@pytest.mark.parametrize("n, split_size", [(6200, 5000), (1250, 500), (5000, 5000)])
def test_adm_protocol_equals_adm_code_on_random_logits(n, split_size):
    logits = _random_logits(n, 1008)
    ours = adm_inception_score(logits, split_size)
    # same float32 probabilities: the same numpy operations give the same bits
    assert ours == _adm_reference(logits.softmax(1).numpy(), split_size)
    assert ours == adm_inception_score(logits.softmax(1), split_size, from_logits=False)
    # another float32 softmax kernel (TF's in ADM) moves probabilities by a few ulp, and the
    # float32 sums over 1,008 classes and N samples by ~1e-7 relative: same IS to ~1e-6
    z = logits.numpy() - logits.numpy().max(1, keepdims=True)
    numpy_softmax = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert ours == pytest.approx(_adm_reference(numpy_softmax, split_size), rel=1e-5)
    p = logits.double().softmax(1).split(split_size)  # exact arithmetic, float64
    exact = np.mean([(q * (q.log() - q.mean(0).log())).sum(1).mean().exp().item() for q in p])
    assert ours == pytest.approx(exact, rel=1e-5)


def test_adm_protocol_counts_a_short_last_chunk_as_a_whole_one():
    probs = np.eye(10, dtype=np.float32)  # 10 classes, one sample each
    assert adm_inception_score(probs, 4, from_logits=False) == pytest.approx((4 + 4 + 2) / 3)
    assert adm_inception_score(probs, 10, from_logits=False) == pytest.approx(10)


@pytest.mark.parametrize("k", [10, 1008])
def test_identical_predictions_give_one_under_both_protocols(k):
    logits = _random_logits(1, k).expand(600, -1)
    # float32, as ADM: the mean of 600 equal numbers is off by a few ulp, log p - log p(y) too
    assert adm_inception_score(logits) == pytest.approx(1.0, abs=1e-5)
    assert split_inception_score(logits) == pytest.approx(1.0, abs=1e-12)


def test_distinct_one_hot_predictions_give_their_count_per_split():
    n = 50
    probs = np.eye(100, dtype=np.float32)[:n]
    assert adm_inception_score(probs, from_logits=False) == pytest.approx(n, rel=1e-6)
    # a margin of 200 underflows float32 exp to exactly 0 off the label: ADM's expression gives
    # NaN there (0 * log 0), the limit 0 log 0 = 0 gives N
    logits = _one_hot_logits(range(n), 100, margin=200.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.isnan(_adm_reference(logits.softmax(1).numpy()))
    assert adm_inception_score(logits) == pytest.approx(n, rel=1e-6)
    # 10 splits of 5 distinct classes each: IS 5, whatever the order
    assert split_inception_score(_one_hot_logits(range(n), 100, 50.0)) == pytest.approx(5.0)
    assert split_inception_score(
        _one_hot_logits(range(n), 100, 50.0), shuffle=False
    ) == pytest.approx(5.0)


def test_split_protocol_is_torch_fidelitys_default():
    logits = _random_logits(1003, 1008, seed=1)  # 10 splits of 100 or 101 samples
    want = isc_features_to_metric(logits, 10, shuffle=True, rng_seed=2020)["inception_score_mean"]
    assert split_inception_score(logits) == want
    assert split_inception_score(logits.numpy()) == want
    unshuffled = isc_features_to_metric(logits, 10, shuffle=False)["inception_score_mean"]
    assert split_inception_score(logits, shuffle=False) == unshuffled != want


def test_split_protocol_shuffles_so_a_class_major_order_keeps_its_score():
    labels = torch.arange(10).repeat_interleave(20)  # class-major, as `balanced_labels`
    logits = _one_hot_logits(labels, 10, margin=20.0)
    assert split_inception_score(logits, shuffle=False) == pytest.approx(1.0, abs=1e-6)
    assert split_inception_score(logits) > 7.0
    assert adm_inception_score(logits) == pytest.approx(10.0, rel=1e-5)  # one chunk


def test_inception_scores_runs_the_protocols_by_key():
    logits = _random_logits(120, 10)
    both = inception_scores(logits)
    assert list(both) == ["is_adm", "is_10_splits"] == list(IS_PROTOCOLS)
    assert both["is_adm"] == adm_inception_score(logits)
    assert both["is_10_splits"] == split_inception_score(logits)
    assert inception_scores(logits, ("is_adm",)) == {"is_adm": both["is_adm"]}
    assert IS_PROTOCOLS["is_adm"].label == "IS (ADM, 5,000 per split)"
    assert IS_PROTOCOLS["is_10_splits"].label == "IS (10 splits)"
    with pytest.raises(ValueError, match="subset of"):
        inception_scores(logits, ("is",))


def test_fewer_than_ten_samples_are_refused_by_the_ten_split_protocol():
    logits = _random_logits(9, 10)
    assert adm_inception_score(logits) >= 1.0
    with pytest.raises(ValueError, match="at least 10 samples, got 9"):
        split_inception_score(logits)
    with pytest.raises(ValueError, match=r"IS \(10 splits\) needs at least 10 samples, got 9"):
        evaluate(np.zeros((9, 8, 8, 3), dtype=np.uint8), metrics=("is",))


@pytest.mark.parametrize(
    "predictions, kwargs, message",
    [
        (np.zeros(10, dtype=np.float32), {}, r"\(N, K\)"),
        (np.zeros((10, 3), dtype=np.int64), {}, "float array"),
        (np.full((10, 3), np.nan, dtype=np.float32), {}, "finite"),
        (np.full((10, 3), 0.5, dtype=np.float32), {"from_logits": False}, "rows summing to 1"),
        (np.zeros((10, 3), dtype=np.float32), {"split_size": 0}, "split_size"),
    ],
)
def test_bad_predictions_are_refused(predictions, kwargs, message):
    with pytest.raises(ValueError, match=message):
        adm_inception_score(predictions, **kwargs)
