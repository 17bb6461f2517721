"""``./run``: relative paths mean the caller's directory; ``./run test`` runs in the clone.

Run on a copy of the script in a stand-in clone whose virtualenv is already set up (its stamp
matches), with stand-ins for python and ruff that print where they run: nothing is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clone(tmp_path) -> Path:
    root = tmp_path / "clone"
    (root / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(REPO / "run", root / "run")
    for name in ("requirements.txt", "pyproject.toml"):
        (root / name).write_text(f"stand-in {name}\n")
    stamp = hashlib.sha256(b"".join((root / n).read_bytes() for n in
                                    ("requirements.txt", "pyproject.toml"))).hexdigest()
    (root / ".venv" / ".scaledql-installed").write_text(stamp + "\n")
    for tool in ("python", "ruff", "scaledql"):
        exe = root / ".venv" / "bin" / tool
        exe.write_text(f'#!/bin/sh\necho "{tool} in $(pwd): $*"\n')
        exe.chmod(0o755)
    return root


def _run(clone: Path, cwd: Path, *args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    out = subprocess.run([str(clone / "run"), *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return out.stdout.splitlines()


def test_commands_run_where_they_were_typed(clone, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _run(clone, elsewhere, "scaledql", "data", "info", "data") == [
        f"scaledql in {elsewhere}: data info data"]


def test_the_test_suite_runs_in_the_clone_from_anywhere(clone, tmp_path, monkeypatch):
    monkeypatch.delenv("SCALEDQL_TEST_WORKERS", raising=False)
    assert _run(clone, tmp_path, "test", "-q") == [f"ruff in {clone}: check src tests benchmarks",
                                                   f"python in {clone}: -m pytest -n auto -q"]
    monkeypatch.setenv("SCALEDQL_TEST_WORKERS", "0")  # one process, as before the workers
    assert _run(clone, tmp_path, "test")[-1] == f"python in {clone}: -m pytest -n 0"
