"""The Python API: docs/api.md's examples run as written, and ``import scaledql`` stays cheap."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import scaledql

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
OBJECTS = "## Objects:"  # the object API's section: its example stands alone


def python_blocks(objects: bool) -> list[str]:
    """The doc's Python blocks, of the object API's section or of the rest."""
    text = DOC.read_text()
    start = text.index(OBJECTS)
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else len(text)]
    return re.findall(r"```python\n(.*?)```", section if objects else text.replace(section, ""),
                      re.S)


def run_blocks(blocks: list[str]) -> None:
    namespace: dict = {"__name__": "__api_doc__"}
    for block in blocks:  # one notebook: later blocks use earlier names
        exec(compile(block, str(DOC), "exec"), namespace)


@pytest.mark.heavy
def test_the_documented_example_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(objects=False)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    run_blocks(blocks)
    out = capsys.readouterr().out
    assert "runs/no-such-run does not exist" in out  # the error example printed its line
    assert "scaled-ql 30 True" in out and "data is not a run folder" in out  # sq.Run's example
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert list(report["methods"]) == ["scaled-ql", "bc"]
    assert all(m["seeds"] == [0, 1] for m in report["methods"].values())
    assert (tmp_path / "report" / "improvement.png").is_file()


def test_the_documented_object_example_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(objects=True)
    assert len(blocks) == 1 and "sq.make(" in blocks[0] and ".predict(obs" in blocks[0]
    monkeypatch.chdir(tmp_path)
    run_blocks(blocks)
    out = capsys.readouterr().out.splitlines()
    # the example's own prints (fit's evaluations also print their tables)
    first = next(i for i, line in enumerate(out) if line.startswith("Agent("))
    lines = [*out[first:first + 3], out[-1]]
    # fit: evaluated at step 10 and at the end; the agent took the run's checkpoint
    assert lines[0].startswith("Agent(scaled-ql, games=['breakout', 'freeway'], suite='minatar', "
                               "step=20, run='runs/agent') [10, 20] ")
    # predict on one observation: the saved-and-loaded agent acts as the one that was saved
    one = re.fullmatch(r"uint8 \(10, 10, 10\) ([0-2]) ([0-2])", lines[1])
    assert one is not None and one[1] == one[2], lines[1]
    assert lines[2] == f"[{one[1]} {one[1]}]"  # the batch of two copies of that observation
    assert lines[3] == "30 runs/agent"  # the run continued to 30 steps
    assert (tmp_path / "agent.pt").is_file() and (tmp_path / "runs/agent/eval").is_dir()
    assert scaledql.load(tmp_path / "agent.pt").step == 20


def test_import_is_lazy_and_every_exported_name_resolves():
    env_path = str(Path(scaledql.__file__).parents[1])
    code = ("import sys, scaledql as sq\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules\n"
            "missing = [n for n in sq.__all__ if getattr(sq, n, None) is None]\n"
            "assert not missing, missing\n"
            "assert sq.report_runs.__module__ == 'scaledql.reports.over_runs'\n"
            "try:\n    sq.no_such_name\nexcept AttributeError:\n    pass\n"
            "else:\n    raise SystemExit('an unknown name resolved')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
