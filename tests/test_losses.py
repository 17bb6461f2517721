"""The loss functions against hand-computed cases."""

import math

import pytest
import torch

from scaledql import losses

# Small tensors: one thread avoids OpenMP contention on the shared 2-core machine.
torch.set_num_threads(1)

# Support z = [-2, -1, 0, 1, 2] (Δz = 1) keeps the hand arithmetic readable.
Z = losses.make_support(-2.0, 2.0, 5)


def project(probs, reward, discount, support=Z):
    return losses.categorical_projection(
        torch.tensor([probs], dtype=torch.float32),
        torch.tensor([reward], dtype=torch.float32),
        torch.tensor([discount], dtype=torch.float32),
        support,
    )[0]


def close(actual, expected, atol=1e-6):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float32), atol=atol, rtol=0)


def test_projection_lands_exactly_on_atoms():
    # r = 1, d = 1 shifts every atom up by one; the top two both clip to z = 2.
    close(project([0.1, 0.2, 0.3, 0.15, 0.25], 1.0, 1.0), [0.0, 0.1, 0.2, 0.3, 0.4])
    close(project([0, 0, 1, 0, 0], -1.0, 1.0), [0, 1, 0, 0, 0])


def test_projection_splits_mass_between_atoms():
    # One atom at 0 moved to 0.25 gives 3/4 to z=0 and 1/4 to z=1.
    close(project([0, 0, 1, 0, 0], 0.25, 1.0), [0, 0, 0.75, 0.25, 0])
    # d = 0.5 squeezes z to [-1, -0.5, 0, 0.5, 1]; the half-way atoms split evenly.
    close(project([0.2] * 5, 0.0, 0.5), [0.0, 0.3, 0.4, 0.3, 0.0])


def test_projection_clips_at_the_support_edges():
    close(project([0.2] * 5, 5.0, 1.0), [0, 0, 0, 0, 1])
    close(project([0.2] * 5, -7.0, 0.99), [1, 0, 0, 0, 0])


def test_done_collapses_target_to_the_reward():
    # discount = γ^k · (1 − done) = 0 → the target is the point mass at r, whatever Z was.
    close(project([0.5, 0.1, 0.1, 0.1, 0.2], 0.3, 0.0), [0, 0, 0.7, 0.3, 0])
    close(project([0.5, 0.1, 0.1, 0.1, 0.2], 1.0, 0.0), [0, 0, 0, 1, 0])


def test_projection_matches_floor_ceil_reference_on_random_inputs():
    """The textbook floor/ceil scatter of Bellemare et al. (2017) on the default support."""
    g = torch.Generator().manual_seed(0)
    support = losses.make_support(-10.0, 10.0, 51)
    probs = torch.softmax(torch.randn(64, 51, generator=g), dim=-1)
    reward = torch.randn(64, generator=g) * 4
    discount = torch.rand(64, generator=g) * (torch.rand(64, generator=g) > 0.2)
    got = losses.categorical_projection(probs, reward, discount, support)
    want = torch.zeros(64, 51)
    dz = 20.0 / 50
    for b in range(64):
        for i in range(51):
            tz = min(max(reward[b].item() + discount[b].item() * support[i].item(), -10.0), 10.0)
            pos = (tz + 10.0) / dz
            lo, hi = math.floor(pos), math.ceil(pos)
            if lo == hi:
                want[b, lo] += probs[b, i]
            else:
                want[b, lo] += probs[b, i] * (hi - pos)
                want[b, hi] += probs[b, i] * (pos - lo)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.sum(-1), torch.ones(64), atol=1e-5, rtol=0)


def test_cross_entropy_td_loss_is_cross_entropy():
    logits = torch.zeros(1, 4)
    close(losses.cross_entropy_td_loss(logits, torch.tensor([[0.0, 1.0, 0.0, 0.0]])), [math.log(4)])
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [1/4, 3/4]
    target = torch.tensor([[0.5, 0.5]])
    close(losses.cross_entropy_td_loss(logits, target), [-(0.5 * math.log(0.25) + 0.5 * math.log(0.75))])


def test_cross_entropy_td_loss_sends_no_gradient_into_the_target():
    logits = torch.zeros(1, 3, requires_grad=True)
    target = torch.tensor([[0.2, 0.3, 0.5]], requires_grad=True)
    losses.cross_entropy_td_loss(logits, target).sum().backward()
    assert target.grad is None
    close(logits.grad, [[1 / 3 - 0.2, 1 / 3 - 0.3, 1 / 3 - 0.5]])


def test_expected_q_and_masked_argmax():
    logits = torch.tensor([[0.0] * 5, [-1e4, -1e4, -1e4, 0.0, -1e4]])
    close(losses.expected_q(logits, Z), [0.0, 1.0])
    q = torch.tensor([[1.0, 2.0, 9.0], [3.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert losses.masked_argmax(q, mask).tolist() == [1, 0]


def test_cql_term_by_hand():
    q = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 100.0]])
    action = torch.tensor([0, 1])
    mask = torch.tensor([[True, True, True], [True, True, False]])  # game 2 has 2 actions
    expected = [
        math.log(math.e**1 + math.e**2 + math.e**3) - 1.0,
        math.log(math.e**1 + math.e**2) - 2.0,  # the padded 100 is left out
    ]
    close(losses.cql_term(q, action, mask), expected, atol=1e-5)


def test_cql_gradient_pushes_data_action_up_and_others_down():
    q = torch.zeros(1, 3, requires_grad=True)
    losses.cql_term(q, torch.tensor([2]), torch.ones(1, 3, dtype=torch.bool)).sum().backward()
    close(q.grad, [[1 / 3, 1 / 3, 1 / 3 - 1]])


@pytest.mark.parametrize(
    ("q", "target", "delta", "expected"),
    [
        (1.0, 3.0, None, 2.0),  # ½·2²
        (1.0, 3.0, 1.0, 1.5),  # δ(|e| − ½δ)
        (1.0, 1.5, None, 0.125),
        (1.0, 1.5, 1.0, 0.125),  # quadratic zone: same as ½e²
    ],
)
def test_mse_and_huber_td_loss(q, target, delta, expected):
    got = losses.mse_td_loss(torch.tensor([q]), torch.tensor([target]), delta)
    close(got, [expected])


def test_scalar_td_target():
    got = losses.scalar_td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.0]), torch.tensor([4.0, 4.0]))
    close(got, [3.0, 1.0])
