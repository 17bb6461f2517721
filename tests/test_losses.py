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


# -- histogram targets: HL-Gauss and two-hot ------------------------------------------------
# Four bins of width 1 over [-2, 2]: edges [-2, -1, 0, 1, 2], centres [-1.5, -0.5, 0.5, 1.5].
EDGES = losses.histogram_edges(-2.0, 2.0, 4)
CENTRES = losses.bin_centres(EDGES)


def hl_gauss(y: float, sigma: float = 0.75, edges=EDGES) -> torch.Tensor:
    return losses.hl_gauss_probs(torch.tensor([y]), edges, sigma)[0]


def test_histogram_bins():
    close(EDGES, [-2, -1, 0, 1, 2])
    close(CENTRES, [-1.5, -0.5, 0.5, 1.5])


def test_hl_gauss_inside_the_support_by_hand():
    # y = 0 sits on the middle edge: by symmetry [a, b, b, a], b = Φ(1/0.75) − Φ(0) = 0.408789,
    # a = Φ(2/0.75) − Φ(1/0.75) = 0.087381, renormalized by their sum 2(a + b) = 0.992340.
    close(hl_gauss(0.0), [0.088055, 0.411945, 0.411945, 0.088055])
    # y = 0.3: Φ((e − 0.3)/0.75) at the edges is 0.000233, 0.041096, 0.345731, 0.825749,
    # 0.991802; differences over (0.991802 − 0.000233).
    close(hl_gauss(0.3), [0.040960, 0.306986, 0.486317, 0.165738])


def test_hl_gauss_at_and_beyond_the_edge_by_hand():
    # y = 2 (v_max): half the Gaussian is beyond the support and is dropped, the rest
    # renormalized: Φ(0) − Φ(−4/3) = 0.408789, then 0.087381, 0.003798, 0.000032, over 0.5.
    at_edge = [0.000063, 0.007597, 0.174762, 0.817578]
    close(hl_gauss(2.0), at_edge)
    close(hl_gauss(7.5), at_edge)  # beyond the support: clipped to its end first
    close(hl_gauss(-2.0), at_edge[::-1])
    close(hl_gauss(-1e6), at_edge[::-1])


def test_hl_gauss_rows_sum_to_one_and_are_vectorized():
    y = torch.linspace(-30, 30, 601)
    edges = losses.histogram_edges(-10.0, 10.0, 51)
    probs = losses.hl_gauss_probs(y, edges, 0.75 * 20 / 51)
    assert probs.shape == (601, 51) and (probs >= 0).all()
    close(probs.sum(-1), [1.0] * 601, atol=1e-5)
    for i in (0, 17, 300, 600):  # each row as if it were alone
        torch.testing.assert_close(probs[i], losses.hl_gauss_probs(y[i:i + 1], edges,
                                                                   0.75 * 20 / 51)[0])


def test_hl_gauss_mean_is_the_target_away_from_the_ends():
    """51 bins over ±10 (the default support), σ = 0.75 bin widths: the discretized Gaussian's
    mean equals y to 1e-5 bin widths wherever the support holds ±5σ around it (the bins'
    rounding of a smooth density); within 3σ of an end the dropped tail pulls the mean inward
    (by less than σ·√(2/π), the half-Gaussian's, plus half a bin, the centres')."""
    edges = losses.histogram_edges(-10.0, 10.0, 51).double()
    centres, width = losses.bin_centres(edges), 20 / 51
    sigma = 0.75 * width
    y = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    mean = losses.hl_gauss_probs(y, edges, sigma) @ centres
    inner = y.abs() <= 10 - 5 * sigma
    assert (mean - y)[inner].abs().max() < 1e-5 * width
    near = y.abs() >= 10 - 3 * sigma
    assert ((mean - y)[near] * y[near].sign() < 0).all()  # inward
    assert (mean - y).abs().max() < sigma * math.sqrt(2 / math.pi) + width / 2


def test_hl_gauss_with_sigma_to_zero_is_one_hot_on_the_bin_of_the_target():
    """σ → 0 turns HL-Gauss into a histogram of a point mass: all probability on the bin that
    holds y. Two-hot is not that limit: it splits y between two centres, keeping its mean. The
    two agree where y is a bin centre (both one-hot there)."""
    tiny = 1e-4
    close(hl_gauss(0.3, tiny), [0, 0, 1, 0])
    close(hl_gauss(-1.9, tiny), [1, 0, 0, 0])
    close(hl_gauss(9.0, tiny), [0, 0, 0, 1])  # clipped into the last bin (the edge: half of a
    # Gaussian, all of it in that bin)
    for y in (-1.5, -0.5, 0.5, 1.5):
        torch.testing.assert_close(hl_gauss(y, tiny), losses.two_hot_probs(torch.tensor([y]),
                                                                           CENTRES)[0])
    assert not torch.allclose(hl_gauss(0.3, tiny), losses.two_hot_probs(torch.tensor([0.3]),
                                                                        CENTRES)[0])


def test_hl_gauss_widens_with_sigma():
    # More σ, more mass away from the target's own bin; the mean stays put (y = 0).
    narrow, wide = hl_gauss(0.0, 0.5), hl_gauss(0.0, 1.0)
    assert narrow[1] > hl_gauss(0.0)[1] > wide[1]
    for probs in (narrow, wide):
        assert float(probs @ CENTRES) == pytest.approx(0.0, abs=1e-6)


def test_two_hot_by_hand():
    two_hot = lambda y: losses.two_hot_probs(torch.tensor([y]), CENTRES)[0]  # noqa: E731
    close(two_hot(0.0), [0, 0.5, 0.5, 0])  # half-way between −0.5 and 0.5
    close(two_hot(0.3), [0, 0.2, 0.8, 0])  # 0.8 of the way from −0.5 to 0.5
    close(two_hot(1.5), [0, 0, 0, 1])  # on a centre
    close(two_hot(1.8), [0, 0, 0, 1])  # beyond the last centre: clipped to it
    close(two_hot(-40.0), [1, 0, 0, 0])


def test_two_hot_mean_is_the_clipped_target():
    y = torch.linspace(-3, 3, 601)
    probs = losses.two_hot_probs(y, CENTRES)
    close(probs.sum(-1), [1.0] * 601)
    close(probs @ CENTRES, y.clamp(-1.5, 1.5).tolist(), atol=1e-6)
    assert ((probs > 0).sum(-1) <= 2).all()


def test_c51_projection_mean_is_the_mean_of_the_clipped_shifted_atoms():
    """C51's target keeps the mean of the clipped backup ``clip(r + d·z_i)`` under Z's
    probabilities (the projection's two-hot split of every atom keeps each atom's mean)."""
    g = torch.Generator().manual_seed(1)
    support = losses.make_support(-10.0, 10.0, 51)
    probs = torch.softmax(torch.randn(32, 51, generator=g) * 3, dim=-1)
    reward, discount = torch.randn(32, generator=g) * 6, torch.rand(32, generator=g)
    projected = losses.categorical_projection(probs, reward, discount, support)
    clipped = (reward[:, None] + discount[:, None] * support).clamp(-10, 10)
    torch.testing.assert_close(projected @ support, (probs * clipped).sum(-1), atol=1e-4,
                               rtol=0)
