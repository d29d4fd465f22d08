"""The pruning hook: spec validation, selection, masks at the initial step, schedules, baseline."""

import pytest
import torch

from semantic_bottleneck import sampling as S
from semantic_bottleneck.core import metrics
from semantic_bottleneck.sampling.pruning import (
    PruneHook,
    PruneSpec,
    make_masks,
    prune_hook,
    select,
    validate,
)
from semantic_bottleneck.zoo import build_model, denoiser

NUM_CLASSES = 10


def tiny_repa():
    model = build_model(
        "repa",
        input_size=8,
        patch_size=2,
        in_channels=4,
        hidden_size=32,
        decoder_hidden_size=32,
        depth=1,
        encoder_depth=1,
        num_heads=2,
        num_classes=NUM_CLASSES,
        z_dims=[8],
        projector_dim=16,
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@pytest.mark.parametrize(
    "spec, steps",
    [
        (PruneSpec(side="tail", tau=-0.1), 10),
        (PruneSpec(side="tail", tau=float("nan")), 10),
        (PruneSpec(side="tail"), 10),  # neither tau nor count
        (PruneSpec(side="tail", tau=0.1, count=3), 10),  # both
        (PruneSpec(side="tail", count=-1), 10),
        (PruneSpec(side="middle", tau=0.1), 10),
        (PruneSpec(side="tail", tau=0.1, schedule="sometimes"), 10),
        (PruneSpec(side="tail", tau=0.1, schedule="last_k"), 10),  # k missing
        (PruneSpec(side="tail", tau=0.1, schedule="last_k", k=0), 10),
        (PruneSpec(side="tail", tau=0.1, schedule="last_k", k=11), 10),
        (PruneSpec(side="tail", tau=0.1, schedule="every", k=3), 10),  # k for another schedule
        (PruneSpec(side="head", tau=1.0), 0),
    ],
)
def test_bad_specs_fail_before_any_model_call(spec, steps):
    calls = []

    def condition_fn(t, y):
        calls.append(1)
        return torch.ones(len(y), 8)

    with pytest.raises(ValueError):
        validate(spec, steps)
    with pytest.raises(ValueError):
        prune_hook(condition_fn, torch.arange(2), 1.0, spec, steps)
    assert calls == []


def test_tau_selection_matches_the_paper_definition():
    c = torch.tensor([[0.125, -0.5, 3.0, -7.0, 0.0, 0.25]])  # exact in float32
    tail = select(c, PruneSpec(side="tail", tau=0.25))
    assert tail.tolist() == [[True, False, False, False, True, False]]  # |c| < tau, strict
    head = select(c, PruneSpec(side="head", tau=5.0))
    assert head.tolist() == [[False, False, False, True, False, False]]  # |c| > tau
    assert torch.equal(tail, metrics.tail_mask(c, 0.25))


def test_count_selection_takes_the_smallest_or_largest_magnitudes():
    c = torch.tensor([[0.3, -0.1, 2.0, -5.0, 0.2], [1.0, 1.0, 1.0, -1.0, 0.5]])
    tail = select(c, PruneSpec(side="tail", count=2))
    assert tail.tolist() == [[False, True, False, False, True], [True, False, False, False, True]]
    head = select(c, PruneSpec(side="head", count=1))
    assert head.tolist() == [[False, False, False, True, False], [True, False, False, False, False]]
    assert select(c, PruneSpec(side="tail", count=0)).sum() == 0
    with pytest.raises(ValueError):
        select(c, PruneSpec(side="tail", count=6))


def test_masks_come_from_each_rows_c_at_the_initial_time():
    seen = []
    table = torch.tensor([[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0], [1.0, 0.0, 3.0, 2.0]])

    def condition_fn(t, y):
        seen.append(t.clone())
        return table[y] * (1 + t.float()).view(-1, 1)

    y = torch.tensor([0, 2, 1])
    mask = make_masks(condition_fn, y, 999, PruneSpec(side="tail", count=1))
    assert seen[0].dtype == torch.int64 and seen[0].tolist() == [999, 999, 999]
    assert mask.tolist() == [
        [True, False, False, False],
        [False, True, False, False],
        [False, False, False, True],
    ]
    make_masks(condition_fn, y, 1.0, None)
    assert seen[1].dtype == torch.float32 and seen[1].tolist() == [1.0, 1.0, 1.0]


def test_schedules_prune_at_the_right_steps():
    steps = 10
    expected = {
        PruneSpec(side="tail", tau=0.5): list(range(10)),
        PruneSpec(side="tail", tau=0.5, schedule="initial"): [0],
        PruneSpec(side="tail", tau=0.5, schedule="last_k", k=3): [7, 8, 9],
    }
    mask = torch.tensor([[True, False, True]])
    for spec, pruned_steps in expected.items():
        hook = PruneHook(spec, steps, mask)
        c = torch.tensor([[1.0, 2.0, 3.0]])
        got = [s for s in range(steps) if not torch.equal(hook(s)(c), c)]
        assert got == pruned_steps, spec.schedule
        assert all(hook(s)(c) is c for s in range(steps) if s not in pruned_steps)


class CSpy:
    """Wraps a model_fn: records every (c, c_fn(c)) pair and the step order of the calls."""

    def __init__(self, model_fn):
        self.model_fn, self.pairs = model_fn, []

    def __call__(self, x, t, y, c_fn=None):
        def spy(c):
            out = c if c_fn is None else c_fn(c)
            self.pairs.append((c.detach().clone(), out.detach().clone()))
            return out

        return self.model_fn(x, t, y, c_fn=spy)


@pytest.mark.parametrize("schedule, k", [("every", None), ("initial", None), ("last_k", 2)])
def test_pruning_changes_exactly_the_selected_coordinates_of_c(schedule, k):
    model = tiny_repa()
    config = S.default_config("repa", null_class=NUM_CLASSES, num_steps=6, interval=(0.0, 1.0))
    y, seeds = torch.tensor([1, 2]), [0, 1]
    spec = PruneSpec(side="tail", count=12, schedule=schedule, k=k)
    hook = prune_hook(
        model.condition, y, S.initial_t(config), spec, S.num_steps(config), NUM_CLASSES
    )
    spy = CSpy(denoiser(model))
    S.sample(
        spy, S.sample_noise((4, 8, 8), seeds), y, config, S.sample_generators(seeds), c_fn_at=hook
    )
    masks = torch.cat([hook.mask, hook.null_mask])  # guided batch: [conditional; null] rows
    assert len(spy.pairs) == 6
    for step, (c, out) in enumerate(spy.pairs):
        if S.pruning.scheduled(spec, step, 6):
            assert torch.equal(out[~masks], c[~masks]) and (out[masks] == 0).all()
        else:
            assert torch.equal(out, c)
    assert hook.removed.tolist() == [12, 12]
    report = hook.report()
    assert report["removed_per_row"] == [12, 12] and report["removed_mean"] == 12.0
    assert report["null_removed_per_row"] == [12, 12]


def test_tau_masks_use_c_at_the_initial_ddpm_step():
    model = build_model(
        "dit",
        input_size=8,
        patch_size=2,
        in_channels=4,
        hidden_size=32,
        depth=1,
        num_heads=2,
        num_classes=NUM_CLASSES,
    ).eval()
    config = S.default_config("dit", null_class=NUM_CLASSES, num_sampling_steps=5)
    y = torch.tensor([3, 4])
    c0 = model.condition(torch.full((2,), 999), y).detach()
    tau = float(c0.abs().median())
    hook = prune_hook(
        model.condition, y, S.initial_t(config), PruneSpec(side="tail", tau=tau), 5, NUM_CLASSES
    )
    assert torch.equal(hook.mask, metrics.tail_mask(c0, tau))
    assert 0 < hook.removed.sum() < c0.numel()


def _paired(hook_spec, config, model, sampler_hook=True):
    y, seeds = torch.tensor([1, 2, 3]), [4, 5, 6]
    noise = S.sample_noise((4, 8, 8), seeds)
    hook = None
    if sampler_hook:
        hook = prune_hook(
            model.condition, y, S.initial_t(config), hook_spec, S.num_steps(config), NUM_CLASSES
        )
    return S.sample(denoiser(model), noise, y, config, S.sample_generators(seeds), c_fn_at=hook)


@pytest.mark.parametrize(
    "spec",
    [
        None,
        PruneSpec(side="tail", tau=0.0),
        PruneSpec(side="head", count=0),
        PruneSpec(side="head", tau=1e9),
    ],
)
def test_empty_prune_reproduces_the_baseline_bit_for_bit(spec):
    model = tiny_repa()
    config = S.default_config("repa", null_class=NUM_CLASSES, num_steps=5)
    baseline = _paired(None, config, model, sampler_hook=False)
    assert torch.equal(_paired(spec, config, model), baseline)
    # a real prune does change the samples (the comparison above can fail)
    pruned = _paired(PruneSpec(side="head", count=4), config, model)
    assert not torch.equal(pruned, baseline)


def test_a_hook_for_another_step_count_fails_before_sampling():
    calls = []

    def model_fn(x, t, y, c_fn=None):
        calls.append(1)
        return torch.zeros_like(x)

    hook = PruneHook(PruneSpec(side="tail", tau=0.1), 10, torch.zeros(2, 4, dtype=torch.bool))
    noise, y = S.sample_noise((4, 2, 2), [0, 1]), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="steps"):
        S.repa_sde_sample(
            model_fn,
            noise,
            y,
            S.REPASDEConfig(num_steps=5),
            S.sample_generators([0, 1]),
            c_fn_at=hook,
        )
    assert calls == []


def test_a_guided_batch_needs_null_masks():
    hook = PruneHook(PruneSpec(side="tail", tau=0.1), 3, torch.ones(2, 4, dtype=torch.bool))
    assert (hook(0)(torch.ones(2, 4)) == 0).all()
    with pytest.raises(ValueError, match="null_mask"):
        hook(0)(torch.ones(4, 4))


def test_a_guided_sampler_rejects_a_hook_without_null_masks_before_sampling():
    calls = []

    def model_fn(x, t, y, c_fn=None):
        calls.append(1)
        return torch.zeros_like(x)

    hook = PruneHook(PruneSpec(side="tail", tau=0.1), 5, torch.zeros(2, 4, dtype=torch.bool))
    noise, y = S.sample_noise((4, 2, 2), [0, 1]), torch.tensor([0, 1])
    config = S.REPASDEConfig(num_steps=5)  # guided (scale 1.8)
    with pytest.raises(ValueError, match="null_class"):
        S.repa_sde_sample(model_fn, noise, y, config, S.sample_generators([0, 1]), c_fn_at=hook)
    assert calls == []


@pytest.mark.parametrize(
    "spec, fields, message",
    [
        # a value's own rule comes before the rules between values
        (PruneSpec(side="tail", tau=-0.1, count=3), ("tau",), "tau: expected a finite number"),
        (PruneSpec(side="tail", count=2, k=0), ("k",), "k: expected an integer >= 1, got 0"),
        (PruneSpec(side="tail", tau=0.1, count=3), ("tau", "count"), "exactly one of tau and"),
        (PruneSpec(side="tail"), ("tau", "count"), "exactly one of tau and count, got neither"),
        (PruneSpec(side="tail", tau=0.1, k=3), ("k", "schedule"), "k: only schedule 'last_k'"),
        (PruneSpec(side="mid", tau=0.1), ("side",), "side: expected one of"),
    ],
)
def test_spec_errors_name_their_fields_for_callers_to_rename(spec, fields, message):
    with pytest.raises(S.pruning.PruneSpecError) as err:
        validate(spec, 10)
    assert err.value.fields == fields and message in str(err.value)
    flags = {f: f"--{f}" for f in fields}
    assert all(f"--{f}" in err.value.render(flags) for f in fields)


def test_check_spec_leaves_only_the_step_bound_to_validate():
    spec = PruneSpec(side="tail", tau=0.1, schedule="last_k", k=50)
    S.pruning.check_spec(spec)  # no sampler yet: k <= steps cannot be known
    with pytest.raises(S.pruning.PruneSpecError, match=r"k <= steps = 10, got 50") as err:
        validate(spec, 10)
    assert err.value.fields == ("k", "schedule", "steps")
    with pytest.raises(S.pruning.PruneSpecError, match="tau: expected"):
        S.pruning.check_settings(tau=float("inf"))


def test_a_value_with_braces_is_shown_as_is():
    with pytest.raises(S.pruning.PruneSpecError, match=r"got \{'a': 1\}"):
        validate(PruneSpec(side="tail", count={"a": 1}), 10)


# ----------------------------------------------------------------------------- controls


def additive_condition(num_classes: int = 4, d: int = 12):
    """c = T(t) + Y(y) with fixed random tables, as the zoo models' c."""
    g = torch.Generator().manual_seed(3)
    table = torch.randn(num_classes + 1, d, generator=g)
    time_dir = torch.randn(d, generator=g)

    def condition_fn(t, y):
        return t.double().float()[:, None] * time_dir + table[y]

    return condition_fn, table


@pytest.mark.parametrize(
    "spec",
    [
        PruneSpec(side="tail", tau=0.1, select="sometimes"),
        PruneSpec(side="tail", tau=0.1, replace="one"),
        PruneSpec(side="tail", tau=0.1, draw=2),  # draw without select random
        PruneSpec(side="tail", tau=0.1, select="random", draw=-1),
        PruneSpec(side="head", count=2, select="variance"),  # classes missing
        PruneSpec(side="tail", tau=0.1, replace="mean", classes=1),
        PruneSpec(side="tail", tau=0.1, classes=10),  # classes unused
        PruneSpec(side="tail", count=2, select="all"),  # all takes no count
        PruneSpec(side="tail", tau=0.1, schedule="window"),  # window missing
        PruneSpec(side="tail", tau=0.1, schedule="window", window=(3, 3)),
        PruneSpec(side="tail", tau=0.1, schedule="window", window=(2, 11)),  # past steps
        PruneSpec(side="tail", tau=0.1, window=(0, 2)),  # window for another schedule
    ],
)
def test_bad_control_settings_fail_before_any_model_call(spec):
    test_bad_specs_fail_before_any_model_call(spec, 10)


def test_random_control_removes_the_same_count_elsewhere_and_draws_differ():
    c = torch.randn(6, 40, generator=torch.Generator().manual_seed(1))
    paper = select(c, PruneSpec(side="tail", tau=0.5))
    draws = [select(c, PruneSpec(side="tail", tau=0.5, select="random", draw=k)) for k in (0, 1)]
    for mask in draws:
        assert torch.equal(mask.sum(1), paper.sum(1))  # same count per row
    assert not torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], paper)
    again = select(c, PruneSpec(side="tail", tau=0.5, select="random", draw=1))
    assert torch.equal(again, draws[1])  # a draw is reproducible


def test_variance_control_ranks_by_variance_across_classes():
    class_c = torch.zeros(5, 6)
    class_c[:, 4] = torch.arange(5.0) * 3  # largest variance
    class_c[:, 1] = torch.arange(5.0)  # second
    c = torch.tensor([[9.0, 0.1, 0.2, 8.0, 0.3, 0.4]])  # magnitude head: 0 and 3
    spec = PruneSpec(side="head", count=2, select="variance", classes=5)
    assert select(c, spec, class_c).tolist() == [[False, True, False, False, True, False]]
    magnitude = select(c, PruneSpec(side="head", count=2))
    assert magnitude.tolist() == [[True, False, False, True, False, False]]


def test_all_control_removes_every_coordinate():
    c = torch.randn(3, 7)
    assert select(c, PruneSpec(side="tail", select="all")).all()


def test_window_schedule_prunes_only_inside_its_steps():
    spec = PruneSpec(side="tail", tau=0.1, schedule="window", window=(2, 5))
    assert [S.scheduled(spec, i, 8) for i in range(8)] == [i in (2, 3, 4) for i in range(8)]


@pytest.mark.parametrize("guided", [False, True])
def test_mean_control_sets_removed_coordinates_to_the_class_mean_at_every_t(guided):
    condition_fn, table = additive_condition()
    y = torch.tensor([0, 1, 3])
    spec = PruneSpec(side="tail", count=5, replace="mean", classes=4)
    null = 4 if guided else None
    hook = prune_hook(condition_fn, y, 1.0, spec, 4, null_class=null)
    zero = prune_hook(condition_fn, y, 1.0, PruneSpec(side="tail", count=5), 4, null_class=null)
    rows = torch.cat([y, torch.full_like(y, 4)]) if guided else y
    mask = torch.cat([hook.mask, hook.null_mask]) if guided else hook.mask
    assert torch.equal(mask, torch.cat([zero.mask, zero.null_mask]) if guided else zero.mask)
    for t in (1.0, 0.3):  # the class mean at this t, not at t0
        c = condition_fn(torch.full((len(rows),), t), rows)
        class_mean = condition_fn(torch.full((4,), t), torch.arange(4)).mean(0)
        out = hook(0)(c)
        torch.testing.assert_close(out[mask], class_mean.expand_as(c)[mask])
        assert torch.equal(out[~mask], c[~mask])  # every kept coordinate bit-identical
        assert torch.equal(zero(0)(c)[mask], torch.zeros(int(mask.sum())))
