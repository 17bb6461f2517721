"""The readers of untrusted data, fuzzed (``fuzz_cases``): a few hundred cases per run, the
same every run (derandomized); ``benchmarks/fuzz_readers.py`` runs ten thousand and more.
Every case either refuses with one ``UserError`` or reads correctly, never another exception,
never a hang, never a write outside its output."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_cases import TARGETS, count_case

EXAMPLES = {"manifest": 90, "npy": 90, "dqn-gz": 50, "minari": 70, "rlu": 60}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_damaged_input_is_refused_cleanly_or_read_correctly(target, tmp_path):
    strategy, run = TARGETS[target]
    seen = {"refused": 0, "read": 0}

    @settings(max_examples=EXAMPLES[target], deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy())
    def check(damage):
        count_case(run, tmp_path, damage, seen)

    check()
    assert seen["refused"] and seen["read"], seen  # the damage reaches both outcomes
