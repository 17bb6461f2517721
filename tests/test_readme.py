"""The README a newcomer reads: the two commands, then the commands table within the first
120 lines; the claims summary in one delimited block; every relative link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_the_commands_table_comes_within_the_first_120_lines():
    lines = README.read_text().splitlines()
    assert lines.index("| command | what it does |") < 120
    assert lines.index("./run scaledql demo     # main job: collect MinAtar data, train Scaled "
                       "QL and the DT / BC baselines on it, evaluate, report") < 20


def test_the_claims_summary_is_one_block_that_can_be_replaced():
    text = README.read_text()
    assert text.count("<!-- claims-summary:begin") == 1 and text.count("<!-- claims-summary:end")
    block = text.split("<!-- claims-summary:begin", 1)[1].split("<!-- claims-summary:end")[0]
    assert "(docs/results.md)" in block and "| **C1**" not in text  # the tables are there


@pytest.mark.parametrize("doc", [README, *sorted((ROOT / "docs").glob("*.md"))],
                         ids=lambda p: p.name)
def test_every_relative_link_resolves(doc):
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert missing == []
