"""The Python API: docs/api.md's example runs as written, and ``import scaledql`` stays cheap."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import scaledql

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_documented_example_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__api_doc__"}
    for block in blocks:  # one notebook: later blocks use earlier names
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "runs/no-such-run does not exist" in out  # the error example printed its line
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert list(report["methods"]) == ["scaled-ql", "bc"]
    assert all(m["seeds"] == [0, 1] for m in report["methods"].values())
    assert (tmp_path / "report" / "improvement.png").is_file()


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
