"""The command line's help: fast (no torch), every option explained with its default."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaledql.cli import build_parser

SRC = Path(__file__).resolve().parents[1] / "src"
# Runs the real entry point (``python -m scaledql ARGS``), then reports which heavy modules the
# process imported: --help must not pay for them.
PROBE = """
import runpy, sys
sys.argv = ["scaledql", *sys.argv[1:]]
try:
    runpy.run_module("scaledql", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
print("HEAVY:" + ",".join(m for m in ("torch", "gymnasium", "ale_py", "rliable", "matplotlib")
                           if m in sys.modules), "CODE:" + str(code))
"""


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield action


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every (sub)command's words and parser, the top level first."""
    yield prefix, parser
    for action in _subparsers(parser):
        for name, sub in action.choices.items():
            yield from command_paths(sub, (*prefix, name))


PATHS = [words for words, _ in command_paths(build_parser())]


def test_every_command_is_walked():
    # the walk itself must find the nested commands, or the tests below check nothing
    assert {("train",), ("evaluate",), ("data", "import", "dqn-replay"),
            ("finetune", "online")} <= set(PATHS)


@pytest.mark.parametrize("words", PATHS, ids=lambda w: " ".join(w) or "scaledql")
def test_help_starts_without_torch(words):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", PROBE, *words, "--help"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last == "HEAVY: CODE:0", f"{' '.join(words)} --help imported: {last}"
    assert "usage: scaledql" in proc.stdout


def _in_required_group(parser: argparse.ArgumentParser, action: argparse.Action) -> bool:
    return any(g.required and action in g._group_actions
               for g in parser._mutually_exclusive_groups)


@pytest.mark.parametrize("words", PATHS, ids=lambda w: " ".join(w) or "scaledql")
def test_every_option_has_help_and_a_default(words):
    parser = dict(command_paths(build_parser()))[words]
    parser.format_help()  # a bad %-format in any help text fails here
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:  # each subcommand's one-line help
                assert (choice.help or "").strip(), f"{words} {choice.dest}: no help"
            continue
        name = "/".join(action.option_strings) or action.dest
        assert (action.help or "").strip(), f"{' '.join(words)} {name}: no help"
        takes_value = action.option_strings and action.nargs != 0
        if takes_value and not action.required and not _in_required_group(parser, action):
            assert "default" in action.help, f"{' '.join(words)} {name}: default not shown"


def test_train_help_shows_the_presets_values(capsys):
    from scaledql.training.config import preset_layers

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    minatar, atari = preset_layers("minatar", "scaled-ql"), preset_layers("atari", "scaled-ql")
    assert minatar[0]["steps"] != atari[0]["steps"]  # so the per-suite form is exercised
    assert (f"gradient steps (default: minatar preset {minatar[0]['steps']:,}; atari preset "
            f"{atari[0]['steps']:,})") in text
    assert (f"(default: minatar preset {minatar[1]['encoder']}; atari preset "
            f"{atari[1]['encoder']})") in text
    assert f"n-step returns (default: {minatar[1]['n_step']} in both suite presets)" in text
    assert "max global gradient norm (default: none)" in text  # in no preset: the learner's


@pytest.mark.parametrize("words", [
    ["train", "--data", "no-such-dir", "--out", "r"],
    ["finetune", "offline", "--from", "r", "--data", "no-such-dir", "--out", "o"],
], ids=["train", "finetune offline"])
def test_a_missing_data_folder_is_one_line_before_torch_loads(words, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", PROBE, *words], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.stderr == "error: dataset directory no-such-dir does not exist\n"
    assert proc.stdout.split() == ["HEAVY:", "CODE:2"]
