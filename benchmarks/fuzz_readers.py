"""Fuzz the readers of untrusted data: ten thousand and more damaged inputs, one contract.

    python benchmarks/fuzz_readers.py [--cases 10000] [--seed 0] [--targets manifest,npy,...]

Targets and the contract are in ``tests/fuzz_cases.py`` (the test suite runs a few hundred of
the same cases, derandomized): damaged game-store manifests and ``.npy`` files (headers and
contents) opened as training opens them and sampled from, damaged DQN Replay ``.gz``
checkpoint files imported, damaged Minari datasets (metadata and HDF5) imported, damaged RL
Unplugged / TFDS episode files (framing, records, ``features.json``, PNGs) imported. Every case
must either be refused with one ``UserError`` or read correctly; any other exception, a hang
(60 s) or a write outside the output stops the run, and Hypothesis prints the smallest damage
that does it (add it to ``tests/corpus_fuzz.py``). ``--cases`` is split over the targets in
proportion to ``WEIGHTS``; cases are counted as they run. One JSON line per target, then a
total; exit 1 if a case broke the contract. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hypothesis import HealthCheck, given, seed, settings

from fuzz_cases import TARGETS, count_case

WEIGHTS = {"manifest": 3, "npy": 3, "dqn-gz": 2, "minari": 2, "rlu": 2}


def run_target(name: str, cases: int, rng_seed: int, tmp: Path) -> dict:
    strategy, run = TARGETS[name]
    seen = {"refused": 0, "read": 0}
    failure: list[str] = []
    t0 = time.perf_counter()

    @seed(rng_seed)
    @settings(max_examples=cases, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(strategy())
    def check(damage):
        count_case(run, tmp, damage, seen)

    try:
        check()
    except BaseException as exc:  # the falsifying cases: reported, then the run fails
        failure.append(" | ".join(_describe(e) for e in getattr(exc, "exceptions", [exc])))
    return {"target": name, "cases": seen["refused"] + seen["read"], **seen,
            "seconds": round(time.perf_counter() - t0, 1), "ok": not failure,
            **({"failure": failure[0]} if failure else {})}


def _describe(exc: BaseException) -> str:
    """The exception, where it was raised, and Hypothesis's falsifying example."""
    import traceback

    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    notes = " ".join(" ".join(getattr(exc, "__notes__", [])).split())
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}{at}; {notes[:1500]}"


def _machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=10_000, help="total cases (default 10,000)")
    p.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default 0)")
    p.add_argument("--targets", default=",".join(WEIGHTS), help="comma list of targets")
    args = p.parse_args()
    names = [t for t in args.targets.split(",") if t]
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        p.error(f"unknown targets {unknown} (known: {', '.join(TARGETS)})")
    weight = sum(WEIGHTS.get(t, 1) for t in names)
    results = []
    with tempfile.TemporaryDirectory(prefix="scaledql-fuzz-run-") as tmp:
        for name in names:
            share = max(1, round(args.cases * WEIGHTS.get(name, 1) / weight))
            r = run_target(name, share, args.seed, Path(tmp))
            results.append(r)
            print(json.dumps(r), flush=True)
    total = {"total_cases": sum(r["cases"] for r in results),
             "refused": sum(r["refused"] for r in results),
             "read": sum(r["read"] for r in results),
             "seconds": round(sum(r["seconds"] for r in results), 1),
             "failures": sum(not r["ok"] for r in results), "seed": args.seed,
             "machine": _machine()}
    print(json.dumps(total), flush=True)
    return 1 if total["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
