"""rliable's statistics over normalized score matrices, seeded: one place for every aggregate.

A score matrix is ``float64[rows, games]``: one row per independent draw — an evaluation
*episode* when one agent is scored (``evaluate``), a *run* (seed) when several are
(``reports``). Following Agarwal et al. (2021) every estimate is a point plus a 95% stratified
bootstrap interval (rows resampled within each game) computed by ``rliable``:

- ``interval_estimates``: IQM, median, mean and optimality gap of each method (``aggregate``:
  IQM, median and mean of one matrix);
- ``per_game_estimates``: each game's mean, per method;
- ``improvement_probabilities``: P(X > Y) for every pair of methods;
- ``performance_profiles``: the fraction of rows × games scoring above each threshold τ.

rliable's bootstrap draws from NumPy's *global* generator (its ``random_state`` argument does
not reach the index draws), so each estimate seeds it with ``seed`` and restores the caller's
state afterwards. Each method is bootstrapped on its own with the same seed, so a method's
interval does not depend on which other methods are in the report. A method with one row has
nothing to resample: its interval is its point.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import combinations

import numpy as np

METRIC_NAMES = {"iqm": "IQM", "median": "Median", "mean": "Mean",
                "optimality_gap": "Optimality gap"}
ALL_METRICS = tuple(METRIC_NAMES)
REPS = 2000  # bootstrap replications of aggregates (rliable's examples use 2,000)
IMPROVEMENT_REPS = 1000


def iqm(scores: np.ndarray) -> float:
    """rliable's ``metrics.aggregate_iqm`` — scipy's 25% ``trim_mean`` over every score of the
    ``[rows, games]`` matrix — computed as scipy does (partition, mean of the middle half) but
    without its per-call checks: ~0.4 ms a call, run 2,000 times by each bootstrap, a third of
    every evaluation's CI. The same numbers, NaN included (``tests/test_stats.py``)."""
    a = np.asarray(scores, dtype=np.float64).ravel()
    if a.size == 0 or np.isnan(a).any():
        return float("nan")
    low = int(0.25 * a.size)
    high = a.size - low
    return float(np.mean(np.partition(a, (low, high - 1))[low:high]))


def _metric(name: str) -> Callable[[np.ndarray], float]:
    from rliable import metrics

    return {"iqm": iqm, "median": metrics.aggregate_median, "mean": metrics.aggregate_mean,
            "optimality_gap": metrics.aggregate_optimality_gap}[name]


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded with ``seed`` for the block, the caller's state after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def check_matrix(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"{name}: expected a [runs, games] score matrix, got shape {x.shape}")
    return x


def bootstrap(data: np.ndarray | Sequence[np.ndarray], fn: Callable[..., np.ndarray],
              reps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point, lower, upper) of ``fn`` on one matrix (or a tuple of matrices, resampled
    independently) with rliable's stratified bootstrap, 95% percentile intervals."""
    from rliable import library as rly

    args = [data] if isinstance(data, np.ndarray) else list(data)
    point = np.asarray(fn(*args), dtype=np.float64)
    if all(a.shape[0] == 1 for a in args):
        return point, point.copy(), point.copy()
    # rliable hands arch a RandomState, which arch warns about on every call.
    with _seeded(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _, intervals = rly.get_interval_estimates({"x": data if len(args) == 1 else args}, fn,
                                                  reps=reps)
    lo, hi = np.asarray(intervals["x"], dtype=np.float64)
    return point, lo, hi


def interval_estimates(scores: Mapping[str, np.ndarray], metrics: Sequence[str] = ALL_METRICS,
                       reps: int = REPS, seed: int = 0) -> dict[str, dict]:
    """method → ``{metric: point, f"{metric}_ci": [lower, upper]}`` for each of ``metrics``."""
    fns = [_metric(m) for m in metrics]

    def fn(x: np.ndarray) -> np.ndarray:
        return np.array([f(x) for f in fns])

    out = {}
    for method, matrix in scores.items():
        point, lo, hi = bootstrap(check_matrix(matrix, method), fn, reps, seed)
        out[method] = {}
        for i, name in enumerate(metrics):
            out[method][name] = float(point[i])
            out[method][f"{name}_ci"] = [float(lo[i]), float(hi[i])]
    return out


def aggregate(normalized: np.ndarray, reps: int = REPS, seed: int = 0) -> dict:
    """IQM, median and mean of one ``[rows, games]`` score matrix with 95% stratified-bootstrap
    CIs (``interval_estimates``; one row: the interval is the point).

    >>> aggregate(np.array([[0.0, 1.0, 2.0, 3.0]]))["iqm"]   # middle half of {0,1,2,3}
    1.5
    """
    return interval_estimates({"agent": normalized}, ("iqm", "median", "mean"), reps, seed)["agent"]


def per_game_estimates(scores: Mapping[str, np.ndarray], reps: int = REPS,
                       seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """method → (mean, lower, upper), each ``float64[games]``: every game's mean over rows."""
    return {method: bootstrap(check_matrix(m, method), lambda x: np.mean(x, axis=0), reps, seed)
            for method, m in scores.items()}


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """rliable's ``metrics.probability_of_improvement`` — per game the Mann-Whitney U of x's runs
    over y's (ties count half) over runs_x · runs_y, averaged over games — in one numpy
    expression: scipy's per-call overhead (~1.3 ms a game) made a study's bootstraps take
    minutes. ``tests/test_study.py`` checks both agree. x: [runs_x, games], y: [runs_y, games].
    """
    diff = x[:, None, :] - y[None, :, :]  # [runs_x, runs_y, games]
    return float(((diff > 0).mean(axis=(0, 1)) + 0.5 * (diff == 0).mean(axis=(0, 1))).mean())


def improvement_probabilities(scores: Mapping[str, np.ndarray], reps: int = IMPROVEMENT_REPS,
                              seed: int = 0) -> dict[tuple[str, str], dict]:
    """(X, Y) → ``{"p": P(X > Y), "ci": [lower, upper]}`` for every pair of methods, X listed
    before Y (P(Y > X) = 1 − P(X > Y)): the probability that a run of X beats a run of Y on a
    game, averaged over games (rliable's Mann-Whitney estimate); runs resampled independently."""
    def fn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.array([probability_of_improvement(x, y)])

    out = {}
    for x, y in combinations(scores, 2):
        a, b = check_matrix(scores[x], x), check_matrix(scores[y], y)
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"{x} and {y} are scored on different numbers of games")
        point, lo, hi = bootstrap((a, b), fn, reps, seed)
        out[(x, y)] = {"p": float(point[0]), "ci": [float(lo[0]), float(hi[0])]}
    return out


def profile_taus(scores: Mapping[str, np.ndarray], points: int = 101) -> np.ndarray:
    """Thresholds from min(0, lowest score) to max(1, highest score rounded up to a quarter)."""
    low = min(0.0, min(float(np.min(m)) for m in scores.values()))
    top = max(float(np.max(m)) for m in scores.values())
    return np.linspace(low, max(1.0, np.ceil(top * 4) / 4), points)


def performance_profiles(scores: Mapping[str, np.ndarray], taus: np.ndarray,
                         reps: int = REPS, seed: int = 0
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(method → fraction of rows × games above each τ, method → its [2, taus] 95% band);
    methods with one row have no band."""
    from rliable import library as rly

    profiles, bands = {}, {}
    for method, matrix in scores.items():
        x = check_matrix(matrix, method)
        if x.shape[0] == 1:  # nothing to resample: rliable's profile function alone
            profiles[method] = np.asarray(rly.score_distributions(x, taus), dtype=np.float64)
            continue
        with _seeded(seed):
            profile, band = rly.create_performance_profile({method: x}, taus, reps=reps)
        profiles[method] = np.asarray(profile[method], dtype=np.float64)
        bands[method] = np.asarray(band[method], dtype=np.float64)
    return profiles, bands
