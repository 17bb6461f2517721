"""Progress output: a bar on a terminal, plain lines in a log, nothing with --quiet."""

from __future__ import annotations

import io

import pytest

from scaledql import progress
from scaledql.cli import main
from scaledql.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def not_quiet():
    progress.set_quiet(False)
    yield
    progress.set_quiet(False)


def count(bar: ProgressBar, n: int) -> None:
    with bar:
        bar.set_postfix(loss="0.5")
        for _ in range(n):
            bar.update(1)


def test_log_file_gets_plain_lines(monkeypatch):
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)  # a line at every update
    log = io.StringIO()
    count(ProgressBar(4, "train dqn", "step", file=log), 4)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("[train dqn] 1/4 step (25%), ") and "eta" in lines[0]
    assert lines[0].endswith("; loss=0.5")
    assert lines[-1].startswith("[train dqn] done: 4/4 step (100%), ")
    assert len(lines) == 5  # four periodic lines and the final one


def test_lines_are_rate_limited(monkeypatch):
    monkeypatch.setattr(progress, "LINE_SECONDS", 3600.0)
    log = io.StringIO()
    count(ProgressBar(1000, "evaluate", "ep", file=log), 1000)
    assert log.getvalue().splitlines() == [line for line in log.getvalue().splitlines()
                                           if line.startswith("[evaluate] done: 1,000/1,000")]
    assert len(log.getvalue().splitlines()) == 1


def test_terminal_gets_a_bar_and_no_progress_gets_lines():
    tty = Terminal()
    count(ProgressBar(3, "collect", "step", file=tty), 3)
    assert "\r" in tty.getvalue() and "[collect]" not in tty.getvalue()
    tty = Terminal()
    count(ProgressBar(3, "collect", "step", file=tty, bar=False), 3)  # --no-progress
    assert "\r" not in tty.getvalue() and tty.getvalue().startswith("[collect] done: 3/3")


@pytest.mark.parametrize("quiet,enabled", [(False, False), (True, True)])
def test_quiet_and_disabled_draw_nothing(quiet, enabled):
    progress.set_quiet(quiet)  # --quiet; enabled=False: another DDP rank
    for stream in (io.StringIO(), Terminal()):
        count(ProgressBar(3, "x", file=stream, enabled=enabled), 3)
        assert stream.getvalue() == ""


def test_byte_counts_and_growing_totals(monkeypatch):
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)
    log = io.StringIO()
    with ProgressBar(0, "import", "B", unit_scale=True, file=log) as bar:
        bar.add_total(3_000_000)
        bar.update(1_500_000)
    assert log.getvalue().splitlines()[0].startswith("[import] 1.50MB/3.00MB (50%), ")
    assert "B/s" in log.getvalue()


def test_cli_progress_levels(capsys, monkeypatch):
    """A real command with stderr captured (not a terminal): lines; --no-progress: lines;
    --quiet: none, while the results still print."""
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)
    base = ["evaluate", "--policy", "random", "--games", "breakout", "--episodes", "3",
            "--max-episode-steps", "5"]
    for extra, lines in (([], True), (["--no-progress"], True), (["--quiet"], False),
                         (["--no-progress", "--quiet"], False)):
        assert main([*base, *extra]) == 0
        out, err = capsys.readouterr()
        assert "IQM" in out
        assert ("[evaluate] done: 3/3 ep" in err) is lines, (extra, err)
        assert ("[evaluate] 1/3 ep" in err) is lines
        assert "\r" not in err


def test_a_failed_loop_ends_on_its_error_not_a_progress_line(monkeypatch):
    monkeypatch.setattr(progress, "LINE_SECONDS", 3600.0)
    log = io.StringIO()
    with pytest.raises(ValueError), ProgressBar(4, "import", file=log) as bar:
        bar.update(2)
        raise ValueError("damaged file")
    assert log.getvalue() == ""
    bar = ProgressBar(4, "train dqn", file=log)  # stopped early (Ctrl-C): a status, not "done"
    bar.update(3)
    bar.close()
    assert log.getvalue().startswith("[train dqn] 3/4 step (75%), ") and "eta" in log.getvalue()


@pytest.mark.parametrize("rate,text", [(1762.4, "1,762"), (100.0, "100"), (12.34, "12.3"),
                                       (5.94, "5.9"), (0.0423, "0.042"), (0.0, "0"),
                                       (3e-6, "<0.0001"), (1_234_567.0, "1,234,567")])
def test_rates_read_as_numbers_not_exponents(rate, text):
    assert progress.human_rate(rate) == text


def test_a_fast_loop_prints_its_rate_without_an_exponent(monkeypatch):
    """A loop at ~1,760 step/s once printed ``1.76e+03 step/s``."""
    clock = iter([0.0, 0.0, 1.0, 1.0])  # start, then the final line after one second
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    log = io.StringIO()
    with ProgressBar(None, "collect", "step", file=log) as bar:
        bar.update(1760)
    line = log.getvalue().strip()
    assert "1,760 step/s" in line and "e+" not in line, line


def test_human_bytes_never_prints_zero_megabytes_for_a_small_file():
    from scaledql.progress import human_bytes

    assert human_bytes(812) == "812 B"
    assert human_bytes(4_100) == "4.1 kB"
    assert human_bytes(2_000_000) == "2.0 MB"
    assert human_bytes(1_240_000_000) == "1.24 GB"
