"""A study's claims: each claim's verdict from its methods' scores over runs × games
(``method_scores``) only.

A ``[[claim]]`` names ``pairs`` of methods ``[a, b]`` and a ``test``:

- ``above``: a scores above b. Per pair, the probability of improvement P(a > b) (rliable; the
  Mann-Whitney statistic averaged over games) with a 95% stratified-bootstrap CI over runs:
  **held** when the CI lies above 0.5, **not held** when it lies below 0.5 (b is above a),
  **unclear** otherwise;
- ``matches``: a is not below b: **held** unless the CI lies below 0.5.

Guards (``pair_verdict``): a point CI counts only when its ordering of runs is unlikely by
chance, and b's IQM CI wholly above a's makes a pair not held (3+ runs a side) or at best
unclear. A claim of several pairs is held when every pair is, not held when any pair is not
(even with other pairs still without runs), incomplete while some pairs have no runs yet,
unclear otherwise. Seeds, games and data of every method go in the row.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scaledql import stats
from scaledql.errors import UserError
from scaledql.experiments.method_scores import MethodScores, method_scores, steps_text

TESTS = ("above", "matches")
ALPHA = 0.05  # the chance below which a complete ordering of runs counts as evidence
TIE = 1e-9  # P(a > b) bounds within this of 0.5 are 0.5 (floating-point sums of fractions)
REPS = 2000


def _common(a: MethodScores, b: MethodScores) -> tuple[np.ndarray, np.ndarray, list[str]]:
    games = [g for g in a.games if g in b.games]
    if not games:
        raise UserError(f"methods {a.name!r} and {b.name!r} share no game")
    return (a.matrix[:, [a.games.index(g) for g in games]],
            b.matrix[:, [b.games.index(g) for g in games]], games)


_IQM_CACHE: dict[bytes, tuple[float, float, float]] = {}


def iqm_ci(matrix: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """IQM over runs × games with its 95% stratified-bootstrap CI (``stats``, rliable); one
    bootstrap per distinct matrix (a method appears in several pairs)."""
    key = np.ascontiguousarray(matrix, np.float64).tobytes() + repr((matrix.shape, seed)).encode()
    if key not in _IQM_CACHE:
        estimate = stats.interval_estimates({"m": matrix}, ("iqm",), REPS, seed)["m"]
        _IQM_CACHE[key] = (estimate["iqm"], *estimate["iqm_ci"])
    return _IQM_CACHE[key]


def improvement(a: MethodScores, b: MethodScores, seed: int = 0) -> tuple[float, float, float]:
    """P(a > b) with its 95% CI (rliable: runs of each resampled independently, per game)."""
    x, y, _ = _common(a, b)
    p = stats.improvement_probabilities({"a": x, "b": y}, REPS, seed)[("a", "b")]
    return p["p"], p["ci"][0], p["ci"][1]


def episode_delta(a: MethodScores, b: MethodScores, seed: int = 0
                  ) -> tuple[float, float, float] | None:
    """IQM(a) − IQM(b) over runs × their shared games with a 95% bootstrap CI over *episodes*:
    each run's evaluation episodes of each game resampled with replacement (runs and games
    kept), the difference recomputed ``REPS`` times — how much of a gap the evaluations'
    own noise could make, which a CI over runs leaves out. None when either side has no
    episodes (a dataset, an AUC reading)."""
    if a.episodes is None or b.episodes is None:
        return None
    from scipy.stats import trim_mean

    games = [g for g in a.games if g in b.games]
    rng = np.random.default_rng(seed)

    def resampled(m: MethodScores) -> np.ndarray:  # [REPS, runs * games] of resampled means
        cols = []
        for row in m.episodes or []:
            for g in games:
                eps = row[g]
                cols.append(eps[rng.integers(0, len(eps), size=(REPS, len(eps)))].mean(axis=1))
        return np.stack(cols, axis=1)

    x, y, _ = _common(a, b)
    point = float(trim_mean(x.ravel(), 0.25) - trim_mean(y.ravel(), 0.25))
    deltas = trim_mean(resampled(a), 0.25, axis=1) - trim_mean(resampled(b), 0.25, axis=1)
    low, high = np.percentile(deltas, [2.5, 97.5])
    return point, float(low), float(high)


def ordering_chance(runs_a: int, runs_b: int, games: int) -> float:
    """The chance, were a and b the same method, that on each of ``games`` games every run of
    one given arm scores above every run of the other: 1 / C(runs_a + runs_b, runs_a) per game,
    games independent (a dataset counts as one run). Such orderings (and ties) are what a point
    CI of P(a > b) shows; with two runs per arm on one game it happens once in six."""
    return float(math.comb(runs_a + runs_b, runs_a)) ** -games


def ordered_games(x: np.ndarray, y: np.ndarray) -> int:
    """Games on which every run of x is above every run of y, or every one below.
    x: [runs_x, games], y: [runs_y, games]."""
    diff = x[:, None, :] - y[None, :, :]  # [runs_x, runs_y, games]
    return int(np.sum((diff > 0).all(axis=(0, 1)) | (diff < 0).all(axis=(0, 1))))


def pair_verdict(test: str, p_ci: tuple[float, float], a_iqm: tuple[float, float, float],
                 b_iqm: tuple[float, float, float], x: np.ndarray, y: np.ndarray,
                 seeded: tuple[bool, bool]) -> tuple[str, str]:
    """(verdict, note) of one pair. From P(a > b)'s 95% CI first:

    - a seeded arm with one run: **unclear (1 run)** — the bootstrap has nothing to resample;
    - the CI above 0.5: **held**; below: **not held**; else **unclear** (``matches``: held);
    - a point CI (on every game every run of one arm above, below or tied with every run of the
      other) decides only when its orderings are unlikely by chance (``ordering_chance`` over
      the ordered games ≤ ``ALPHA``).

    Then the IQMs, since the paper's claims are about aggregate scores: b's IQM CI wholly above
    a's is **not held** when every seeded arm has at least 3 runs (with 2, the bootstrap interval
    of an IQM is little more than the two runs' range), and turns a *held* into **unclear**
    otherwise. The note says which of these applied."""
    runs = (len(x), len(y))
    seeded_runs = [n for n, s in zip(runs, seeded, strict=True) if s]
    if seeded_runs and min(seeded_runs) < 2:
        return "unclear (1 run)", ""
    low, high = p_ci
    # P is an average of win fractions: a bound that is 0.5 can come out of the bootstrap's sums
    # as 0.5000000000000001, which must not read as "above 0.5".
    above, below = low > 0.5 + TIE, high < 0.5 - TIE
    verdict = ("held" if above else "not held" if below
               else "held" if test == "matches" else "unclear")
    notes = []
    chance = ordering_chance(*runs, ordered_games(x, y))
    if high - low < 1e-12 and chance > ALPHA and verdict != "unclear":
        verdict = "held" if test == "matches" and low >= 0.5 - TIE else "unclear"
        notes.append(f"P's CI is a point: per game every run of one arm beat (or tied) every "
                     f"run of the other, which happens by chance {chance:.2g} of the time")
    if b_iqm[1] > a_iqm[2]:  # b's IQM CI wholly above a's: against "above" and "matches"
        notes.append("b's IQM CI lies wholly above a's")
        if all(n >= 3 for n in seeded_runs):
            verdict = "not held"
        elif verdict == "held":
            verdict = "unclear"
    return verdict, "; ".join(notes)


def episodes_verdict(test: str, verdict: str, note: str, delta: tuple[float, float, float]
                     ) -> tuple[str, str]:
    """A pair of a claim with ``episodes = true`` keeps a *held* (or *not held*) only when the
    bootstrap over episodes agrees: IQM(a) − IQM(b)'s CI above 0 (below 0); otherwise it is
    **unclear**, with a note. ``matches`` keeps *held* unless that CI lies below 0."""
    d, low, high = delta
    against = high < 0
    agrees = {"held": low > 0 if test == "above" else not against, "not held": against}
    if verdict in agrees and not agrees[verdict]:
        extra = (f"over episodes the IQM gap is {d:+.3f} [{low:+.3f}, {high:+.3f}]: within "
                 "the evaluations' own noise")
        return "unclear", f"{note}; {extra}" if note else extra
    return verdict, note


PARTIAL = "partial"  # a pair scored on fewer than the claim's games


def judge(claim: dict[str, Any], scores: dict[str, MethodScores]) -> dict[str, Any]:
    """One claim's row: per pair the IQMs with CIs, P(a > b) with CI and a verdict. A claim
    that names its ``games`` judges a pair only once both methods are scored on all of them
    (every seed): before that the pair is *partial*, with what it would read now in its note."""
    cid = claim.get("id", "?")
    test = claim.get("test", "above")
    if test not in TESTS:
        raise UserError(f"claim {cid}: test must be one of {', '.join(TESTS)}, got {test!r}")
    wanted = claim.get("games") or []
    rows = []
    for pair in claim.get("pairs") or []:
        missing = [m for m in pair if m not in scores]
        if len(pair) != 2 or missing:
            rows.append({"a": pair[0] if pair else "?", "b": pair[-1] if pair else "?",
                         "verdict": "no data", "missing": missing})
            continue
        a, b = scores[pair[0]], scores[pair[1]]
        x, y, games = _common(a, b)
        p, low, high = improvement(a, b)
        a_iqm, b_iqm = iqm_ci(x), iqm_ci(y)
        verdict, note = pair_verdict(test, (low, high), a_iqm, b_iqm, x, y,
                                     (bool(a.runs), bool(b.runs)))
        delta = episode_delta(a, b) if claim.get("episodes") else None
        if delta is not None:
            verdict, note = episodes_verdict(test, verdict, note, delta)
        if a.curve_steps and b.curve_steps and a.curve_steps != b.curve_steps:
            verdict, note = "unclear", (f"areas over other steps: a's curves span "
                                        f"{steps_text(a.curve_steps)}, b's "
                                        f"{steps_text(b.curve_steps)}")
        lacking = [g for g in wanted if g not in games]
        if lacking:  # runs still landing: a verdict on some of the claim's games is none yet
            verdict, note = PARTIAL, (f"on {', '.join(games)} only, as it would read now: "
                                      f"{verdict}; {', '.join(lacking)} not yet scored by "
                                      "every seed of both")
        rows.append({"a": a.name, "b": b.name, "games": games, "a_iqm": a_iqm, "b_iqm": b_iqm,
                     "a_runs": len(x), "b_runs": len(y), "a_seeds": a.seeds, "b_seeds": b.seeds,
                     "a_data": a.data, "b_data": b.data, "a_params": a.params,
                     "b_params": b.params, "p_improvement": (p, low, high), "verdict": verdict,
                     "note": note, "episode_delta": delta})
    verdicts = [r["verdict"] for r in rows]
    judged = [v for v in verdicts if v not in ("no data", PARTIAL)]
    if not judged:
        verdict = "no data" if PARTIAL not in verdicts else \
            f"incomplete (0 of {len(verdicts)} pairs judged)"
    elif "not held" in judged:  # one pair against the claim settles it, whatever is missing
        verdict = "not held"
    elif len(judged) < len(verdicts):  # a study still running: say how far it got
        verdict = f"incomplete ({len(judged)} of {len(verdicts)} pairs judged)"
    elif all(v == "held" for v in verdicts):
        verdict = "held"
    else:
        verdict = "unclear"
    return {"id": cid, "text": claim.get("text", ""), "test": test, "pairs": rows,
            "verdict": verdict}


def _ci(t: tuple[float, float, float]) -> str:
    return f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"


def _method_cell(row: dict[str, Any], side: str) -> str:
    data = row.get(f"{side}_data")
    return f"{row[side]}<br><sub>{data}</sub>" if data else row[side]


def _runs_cell(row: dict[str, Any], side: str) -> str:
    seeds = row.get(f"{side}_seeds")
    return f"{row[f'{side}_runs']} (seeds {', '.join(map(str, seeds))})" if seeds else (
        f"{row[f'{side}_runs']} (dataset)")


def claims_markdown(judged: list[dict[str, Any]]) -> list[str]:
    """The claims table: one row per compared pair (each method with its data, runs and
    seeds), the claim's verdict on its first row; a pair's note follows its verdict."""
    lines = ["| claim | a | IQM a [95% CI] | runs a | b | IQM b [95% CI] | runs b | "
             "P(a > b) [95% CI] | pair | claim verdict |", "|---" * 10 + "|"]
    for claim in judged:
        for i, row in enumerate(claim["pairs"] or [{"a": "-", "b": "-", "verdict": "no data"}]):
            head = f"**{claim['id']}** {claim['text']}" if i == 0 else ""
            verdict = f"**{claim['verdict']}**" if i == 0 else ""
            if "p_improvement" not in row:
                lines.append(f"| {head} | {row['a']} | – | – | {row['b']} | – | – | – | "
                             f"{row['verdict']} | {verdict} |")
                continue
            pair = f"{row['verdict']} ({row['note']})" if row.get("note") else row["verdict"]
            if row.get("episode_delta") and "over episodes" not in pair:
                d, lo, hi = row["episode_delta"]
                pair += f"; over episodes IQM a − b {d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
            lines.append(
                f"| {head} | {_method_cell(row, 'a')} | {_ci(row['a_iqm'])} | "
                f"{_runs_cell(row, 'a')} | {_method_cell(row, 'b')} | {_ci(row['b_iqm'])} | "
                f"{_runs_cell(row, 'b')} | {_ci(row['p_improvement'])} | {pair} | {verdict} |")
    return lines


def judge_study(methods: list[dict[str, Any]], claims: list[dict[str, Any]], suite: str
                ) -> tuple[dict[str, MethodScores], dict[str, str], list[dict[str, Any]]]:
    """Scores of every method that has data (others: why not), and every claim judged."""
    scores: dict[str, MethodScores] = {}
    missing: dict[str, str] = {}
    for method in methods:
        try:
            scores[method["name"]] = method_scores(method, suite)
        except UserError as exc:
            missing[str(method.get("name"))] = str(exc)
    return scores, missing, [judge(c, scores) for c in claims]
