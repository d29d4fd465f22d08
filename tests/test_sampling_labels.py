"""Balanced labels and per-sample seeds: paired runs share all their noise in any batching."""

import pytest
import torch

from semantic_bottleneck.sampling.labels import (
    balanced_labels,
    sample_generators,
    sample_noise,
    sample_seeds,
    stream_seed,
)


def test_balanced_labels_are_class_major():
    assert balanced_labels(3, 2).tolist() == [0, 0, 1, 1, 2, 2]
    labels = balanced_labels(1000, 5)  # the paper's 5 x 1000 evaluation set
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert torch.equal(torch.bincount(labels), torch.full((1000,), 5))
    with pytest.raises(ValueError):
        balanced_labels(0, 5)
    with pytest.raises(ValueError):
        balanced_labels(10, 0)


def test_sample_noise_row_i_comes_from_its_own_seed():
    noise = sample_noise((4, 3, 3), [11, 12, 13])
    assert noise.shape == (3, 4, 3, 3) and noise.dtype == torch.float32
    for i, seed in enumerate([11, 12, 13]):
        expected = torch.randn((4, 3, 3), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(noise[i], expected)
    # the same seed gives the same row in any batch
    assert torch.equal(sample_noise((4, 3, 3), [13])[0], noise[2])
    assert sample_noise((2,), [0], dtype=torch.float64).dtype == torch.float64


def test_sampler_generators_are_per_sample_and_independent_of_the_initial_noise():
    a = [torch.randn(16, generator=g) for g in sample_generators([1, 2])]
    b = [torch.randn(16, generator=g) for g in sample_generators([2])]
    assert torch.equal(a[1], b[0])  # batch-independent
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], sample_noise((16,), [1])[0])  # not a replay of the initial noise
    assert stream_seed(1, 1) != stream_seed(1, 2) and 0 <= stream_seed(2**62, 1) < 2**63


def test_seed_helpers_validate():
    assert sample_seeds(100, 3) == [100, 101, 102]
    for bad in ([], [-1], [1.5], [2**63]):
        with pytest.raises(ValueError):
            sample_noise((2,), bad)
    with pytest.raises(ValueError):
        sample_generators([1], stream=0)
    with pytest.raises(ValueError):
        sample_seeds(-1, 3)
