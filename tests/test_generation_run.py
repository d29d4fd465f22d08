"""Generation runs on tiny zoo models: shapes, determinism, paired pruning, sharding, the CLI."""

import json

import numpy as np
import pytest
import torch
from fakes import tiny_sd_vae

from semantic_bottleneck import cli as top_cli
from semantic_bottleneck import sampling as S
from semantic_bottleneck.generation import cli as G_cli
from semantic_bottleneck.generation import decode as D
from semantic_bottleneck.generation import npz as N
from semantic_bottleneck.generation import run as R
from semantic_bottleneck.sampling import PruneSpec
from semantic_bottleneck.zoo import build_model, denoiser

NUM_CLASSES = 10
KW = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=1, num_heads=2)
LATENT = (4, 8, 8)
# (zoo family, sampler family, sampler overrides, weight scale); the weight scales are large
# enough that c visibly steers the samples, small enough that no image saturates
CASES = {
    "sit-sde": ("sit", "sit", dict(num_steps=8), 0.3),
    "dit-ddpm": ("dit", "dit", dict(num_sampling_steps=8), 0.1),
    "lightningdit-ode": ("sit", "lightningdit", dict(num_steps=8), 0.3),
}


def tiny_model(family: str = "sit", scale: float = 0.3, seed: int = 0):
    model = build_model(family, num_classes=NUM_CLASSES, **KW)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random weights: the official init zeroes the output layer
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def tiny_decoder(pixels: str = "dit") -> D.LatentDecoder:
    return D.LatentDecoder(tiny_sd_vae(), pixels)


def setup(case: str = "sit-sde"):
    zoo, family, overrides, scale = CASES[case]
    model = tiny_model(zoo, scale)
    config = S.default_config(family, null_class=NUM_CLASSES, **overrides)
    return model, family, config


def gen(model, family, config, labels, seeds, **kw):
    kw = dict(latent_shape=LATENT, progress=False, batch_size=2) | kw
    decoder = kw.pop("decode", None) or tiny_decoder()
    return R.generate(
        denoiser(model), model.condition, family, labels, seeds, config, decoder, **kw
    )


LABELS, SEEDS = [1, 2, 3, 4, 5], [10, 11, 12, 13, 14]


# ----------------------------------------------------------------------------- generate


def test_shapes_dtypes_and_info():
    model, family, config = setup()
    images, info = gen(model, family, config, LABELS, SEEDS)
    assert images.shape == (5, 16, 16, 3) and images.dtype == torch.uint8
    assert images.device.type == "cpu"
    assert info["family"] == "sit" and info["sampler"] == "SiTSDEConfig" and info["steps"] == 8
    assert info["removed"] == [0] * 5 and info["null_removed"] == [0] * 5  # guided (scale 1.5)
    assert info["prune"] is None and info["initial_t"] == 0.0
    json.dumps(info)  # every value is JSON-serialisable


@pytest.mark.parametrize("case", list(CASES))
def test_bitwise_determinism_and_seed_dependence(case):
    model, family, config = setup(case)
    a, _ = gen(model, family, config, LABELS, SEEDS)
    b, _ = gen(model, family, config, LABELS, SEEDS)
    c, _ = gen(model, family, config, LABELS, [99, *SEEDS[1:]])
    assert torch.equal(a, b)
    assert torch.equal(a[1:], c[1:]) and not torch.equal(a[0], c[0])  # seeds are per sample


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("empty", [PruneSpec("tail", count=0), PruneSpec("tail", tau=0.0)])
def test_empty_prune_reproduces_the_baseline_bit_for_bit(case, empty):
    model, family, config = setup(case)
    base, _ = gen(model, family, config, LABELS, SEEDS)
    same, info = gen(model, family, config, LABELS, SEEDS, prune=empty)
    assert torch.equal(base, same) and info["removed"] == [0] * 5


def test_pruned_run_differs_and_reports_counts():
    model, family, config = setup("dit-ddpm")
    base, _ = gen(model, family, config, LABELS, SEEDS)
    pruned, info = gen(model, family, config, LABELS, SEEDS, prune=PruneSpec("head", count=10))
    assert not torch.equal(base, pruned)
    assert info["removed"] == [10] * 5 and info["null_removed"] == [10] * 5
    assert info["prune"] == dict(
        side="head", tau=None, count=10, schedule="every", k=None,
        select="magnitude", replace="zero", draw=0, classes=None, window=None,
    )  # fmt: skip
    # tau: the count is |c_i| < tau of c at the initial step (DDPM: t = 999)
    tau = 0.5
    _, info = gen(model, family, config, LABELS, SEEDS, prune=PruneSpec("tail", tau=tau))
    with torch.no_grad():
        c0 = model.condition(torch.full((5,), 999), torch.tensor(LABELS))
    assert info["removed"] == (c0.abs() < tau).sum(dim=1).tolist()
    assert 0 < info["removed_mean"] < 32


@pytest.mark.parametrize("case", list(CASES))
def test_pruned_runs_reuse_the_baselines_calls_before_their_first_pruned_step(case):
    model, family, config = setup(case)
    steps = S.num_steps(config)
    calls = R.ModelCalls(denoiser(model))
    kw = dict(latent_shape=LATENT, progress=False, batch_size=2)

    def run(fn, prune=None):
        return R.generate(fn, model.condition, family, LABELS, SEEDS, config, tiny_decoder(),
                          prune=prune, **kw)[0]  # fmt: skip

    base = run(calls.recording())
    assert torch.equal(base, run(denoiser(model)))  # recording changes nothing
    per_step = len(calls.kept) // (3 * steps)  # 3 batches; Heun's ODE calls twice a step
    specs = {
        "last_k": (PruneSpec("head", count=10, schedule="last_k", k=3), steps - 3),
        "window": (PruneSpec("head", count=10, schedule="window", window=(2, 5)), 2),
        "initial": (PruneSpec("head", count=10, schedule="initial"), 0),
        "every": (PruneSpec("head", count=10), 0),
    }
    for name, (spec, shared_steps) in specs.items():
        before = calls.reused
        got = run(calls.replaying(), spec)
        assert torch.equal(got, run(denoiser(model), spec)), name  # bit for bit the same run
        assert not torch.equal(got, base), name
        assert calls.reused - before == 3 * per_step * shared_steps, name
    other = R.ModelCalls(denoiser(model))  # nothing kept: every call goes to the model
    assert torch.equal(run(other.replaying(), specs["last_k"][0]), run(denoiser(model),
                       specs["last_k"][0])) and other.reused == 0  # fmt: skip
    with pytest.raises(ValueError, match="unpruned"):
        run(calls.recording(), specs["every"][0])


def test_batch_size_does_not_change_the_samples():
    model, family, config = setup()
    small, _ = gen(model, family, config, LABELS, SEEDS, batch_size=2)
    whole, _ = gen(model, family, config, LABELS, SEEDS, batch_size=5)
    # same noise per sample; only float summation order may differ between batch shapes
    assert (small.int() - whole.int()).abs().max() <= 1


class Spy:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(family="unet"), "unknown family"),
        (dict(family="repa"), "samples with"),
        (dict(prune=PruneSpec("middle", count=1)), "side"),
        (dict(prune=PruneSpec("tail", tau=0.1, count=2)), "exactly one of tau and count"),
        (dict(prune=PruneSpec("tail", count=1, schedule="last_k", k=9)), "k: schedule"),
        (dict(prune=PruneSpec("tail", count=33)), "count"),
        (dict(labels=[1, 2, 3, 4, NUM_CLASSES]), "labels"),
        (dict(seeds=SEEDS[:4]), "equal non-zero lengths"),
        (dict(seeds=[-1, 1, 2, 3, 4]), "seeds"),
        (dict(batch_size=0), "batch_size"),
        (dict(latent_shape=(4, 8)), "latent_shape"),
    ],
)
def test_bad_requests_fail_before_any_sampling(change, match):
    model, family, config = setup()
    model_fn, condition_fn = Spy(denoiser(model)), Spy(model.condition)
    args = dict(family=family, labels=LABELS, seeds=SEEDS, latent_shape=LATENT) | change
    with pytest.raises(ValueError, match=match):
        R.generate(
            model_fn, condition_fn, args.pop("family"), args.pop("labels"), args.pop("seeds"),
            config, tiny_decoder(), progress=False, **args,
        )  # fmt: skip
    assert model_fn.calls == 0  # the sampler never ran
    if "prune" not in change or change["prune"].count != 33:
        assert condition_fn.calls == 0  # only a count above d needs c to be known


def test_model_in_train_mode_is_rejected():
    model, family, config = setup()
    with pytest.raises(ValueError, match="eval"):
        gen(model.train(), family, config, LABELS, SEEDS)


# ----------------------------------------------------------------------------- files and shards


def test_generate_npz_writes_what_generate_returns(tmp_path):
    model, family, config = setup()
    spec = PruneSpec("tail", count=4)
    images, info = gen(model, family, config, LABELS, SEEDS, prune=spec)
    path = R.generate_npz(
        tmp_path / "s.npz", denoiser(model), model.condition, family, LABELS, SEEDS, config,
        tiny_decoder(), latent_shape=LATENT, prune=spec, batch_size=2, progress=False,
        extra_info={"model": "tiny"},
    )  # fmt: skip
    got = N.load_samples(path)
    assert np.array_equal(got.images, images.numpy()) and got.labels.tolist() == LABELS
    assert got.seeds.tolist() == SEEDS and got.removed.tolist() == info["removed"]
    assert got.null_removed.tolist() == info["null_removed"]
    assert got.info["model"] == "tiny" and got.info["prune"]["count"] == 4
    assert got.info["world_size"] == 1 and "removed" not in got.info


# ----------------------------------------------------------------------------- command line


def test_generate_is_a_cli_subcommand():
    args = top_cli.build_parser().parse_args(["generate", "dit-xl-2", "--out", "x.npz"])
    assert args.func is G_cli._cmd_generate and args.per_class == 5 and args.prune_side is None


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--prune-side", "tail", "--prune-tau", "1", "--prune-count", "3"], "exactly one"),
        (["--prune-count", "3"], "--prune-side is required"),
        (["--prune-side", "head", "--prune-count", "1", "--prune-schedule", "last_k"], "k: "),
        (["--mode", "ode"], "modes"),
        (["--vae", "vavae-f16d32"], "32-channel"),
        (["--per-class", "0"], "--per-class"),
    ],
)
def test_cli_rejects_bad_settings_before_loading(tmp_path, capsys, flags, match):
    # an empty cache: any attempt to load the checkpoint would fail with a different message
    code = G_cli.main(["dit-xl-2", "--out", str(tmp_path / "x.npz"), "--cache-dir", str(tmp_path),
                       "--no-progress", *flags])  # fmt: skip
    assert code == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_cli_names_the_missing_checkpoint_and_fetch_command(tmp_path, capsys):
    code = G_cli.main(["sit-xl-2", "--out", str(tmp_path / "x.npz"), "--cache-dir", str(tmp_path),
                       "--device", "cpu", "--no-progress"])  # fmt: skip
    assert code == 2
    assert "semantic-bottleneck fetch sit-xl-2" in capsys.readouterr().err


def test_cli_unknown_model(tmp_path, capsys):
    assert G_cli.main(["dit-xxl", "--out", str(tmp_path / "x.npz")]) == 2
    assert "dit-xxl" in capsys.readouterr().err


def test_cli_sampler_overrides():
    args = G_cli.build_parser().parse_args(["dit-xl-2", "--out", "x.npz", "--num-steps", "20",
                                            "--cfg-scale", "4.0"])  # fmt: skip
    config = G_cli.sampler_from_args(G_cli.resolve_model("dit-xl-2"), args)
    assert config.num_sampling_steps == 20 and config.guidance.scale == 4.0
    config = G_cli.sampler_from_args(G_cli.resolve_model("repa-sit-xl-2"), args)
    assert config.num_steps == 20 and config.guidance.interval == (0.0, 0.7)


def test_cli_writes_the_npz_with_paired_seeds(tmp_path, monkeypatch, capsys):
    # the wiring only: a tiny model and decoder stand in for the released checkpoint and VAE
    source = G_cli.ModelSource("dit-xl-2", "dit", NUM_CLASSES, LATENT, "sd-vae-ft-ema")
    monkeypatch.setattr(G_cli, "resolve_model", lambda name: source)
    monkeypatch.setattr(G_cli, "load_model", lambda *a: tiny_model("dit", 0.1))
    monkeypatch.setattr(G_cli, "load_decoder", lambda *a: tiny_decoder())
    out = tmp_path / "x.npz"
    flags = ["dit-xl-2", "--out", str(out), "--per-class", "1", "--num-steps", "4"]
    flags += ["--base-seed", "7", "--prune-side", "tail", "--prune-count", "5", "--no-progress"]
    assert G_cli.main(flags) == 0
    assert capsys.readouterr().out.strip() == str(out)
    got = N.load_samples(out)
    assert got.images.shape == (10, 16, 16, 3) and got.labels.tolist() == list(range(10))
    assert got.seeds.tolist() == list(range(7, 17)) and got.removed.tolist() == [5] * 10
    assert got.info["model"] == "dit-xl-2" and got.info["sampler_config"]["num_sampling_steps"] == 4
