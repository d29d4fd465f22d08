import torch

from semantic_bottleneck.training.objectives import (
    ddpm_loss,
    dit_process,
    linear_flow_loss,
    normal_kl,
)


def test_linear_flow_loss_is_zero_for_the_exact_velocity():
    # with x0 = 0, x_t = t * eps and the target v = eps - x0 = x_t / t
    x0 = torch.zeros(16, 1, 4, 4)
    loss = linear_flow_loss(
        lambda x, t, y: x / t.view(-1, 1, 1, 1),
        x0,
        torch.zeros(16),
        torch.Generator().manual_seed(0),
    )
    assert loss.item() < 1e-10


def test_ddpm_loss_is_zero_for_the_exact_epsilon_and_positive_otherwise():
    process = dit_process()
    s = torch.from_numpy((1 - process.alphas_cumprod) ** 0.5).float()
    x0 = torch.zeros(8, 1, 4, 4)
    oracle = ddpm_loss(
        lambda x, t, y: x / s[t].view(-1, 1, 1, 1),
        x0,
        None,
        torch.Generator().manual_seed(0),
        process,
    )
    assert oracle.item() < 1e-8
    wrong = ddpm_loss(
        lambda x, t, y: torch.zeros_like(x), x0, None, torch.Generator().manual_seed(0), process
    )
    assert wrong.item() > 0.5


def test_ddpm_loss_adds_the_variational_term_for_a_variance_head():
    process = dit_process()
    x0 = torch.rand(8, 1, 4, 4) * 2 - 1
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    eps_only = ddpm_loss(lambda x, t, y: torch.zeros_like(x), x0, None, gen(), process)
    with_var = ddpm_loss(lambda x, t, y: torch.zeros(8, 2, 4, 4), x0, None, gen(), process)
    assert with_var.item() > eps_only.item()


def test_normal_kl_is_zero_for_equal_gaussians_and_matches_a_hand_value():
    m, lv = torch.tensor([0.3]), torch.tensor([-1.0])
    assert normal_kl(m, lv, m, lv).abs().item() < 1e-12
    # KL(N(0,1) || N(1,1)) = 1/2
    assert (
        abs(
            normal_kl(
                torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([0.0])
            ).item()
            - 0.5
        )
        < 1e-7
    )
