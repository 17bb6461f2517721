"""Progress on stderr, decided in one place: a live bar on a terminal, plain lines elsewhere.

Every long loop (training, online interaction, evaluation, collection, imports) reports through
``ProgressBar``, which picks one of three forms:

- **bar**: stderr is a terminal (or a notebook) and the caller allows a bar — a tqdm bar;
- **lines**: stderr is a file or a pipe (CI, ``nohup``, ``> log 2>&1``), or the caller asked for
  no bar (``--no-progress``) — one plain line every ``LINE_SECONDS`` and one at the end, so a log
  reads line by line instead of holding one carriage-return-separated line of redraws;
- **off**: ``--quiet`` (``set_quiet``, process-wide like a logging level), or ``enabled=False``
  (the non-zero ranks of a distributed run).

tqdm is imported only when a bar or a line is first drawn, so importing this module is free.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

LINE_SECONDS = 30.0  # seconds between plain progress lines (tests lower it)

_quiet = False


def set_quiet(quiet: bool) -> None:
    """``--quiet``: no progress output at all in this process (results and errors still print)."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    return _quiet


def _interactive(file: TextIO) -> bool:
    """Can this stream redraw a bar in place? A terminal can; so can a notebook's stderr
    (tqdm.auto draws a widget there), which is not a TTY."""
    try:
        if file.isatty():
            return True
    except (AttributeError, ValueError):  # a closed or odd stream
        return False
    return file is sys.stderr and "ipykernel" in sys.modules


class ProgressBar:
    """tqdm's counting interface (``update``, ``set_postfix``, ``set_postfix_str``, ``close``,
    context manager) over whichever form applies; ``add_total`` grows the total (imports learn
    their size as they plan).

    ``bar``: the caller allows a live bar (False for ``--no-progress``: lines instead);
    ``enabled``: False draws nothing (other DDP ranks). ``unit_scale``: show 1.2GB rather than
    1234567890B (byte counts).
    """

    def __init__(self, total: int | None, desc: str, unit: str = "step", *, bar: bool = True,
                 enabled: bool = True, initial: int = 0, unit_scale: bool = False,
                 file: TextIO | None = None, **tqdm_kwargs: Any) -> None:
        self.file = file if file is not None else sys.stderr
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.unit_scale = unit_scale
        self.postfix = ""
        self.mode = ("off" if not enabled or _quiet else
                     "bar" if bar and _interactive(self.file) else "lines")
        self._tqdm: Any = None
        self._start = self._last = time.monotonic()
        self._start_n = initial
        self._closed = False
        if self.mode == "bar":
            from tqdm.auto import tqdm

            # leave=None: a bar at position 0 stays when done; one drawn below another (an
            # evaluation during training) is cleared
            self._tqdm = tqdm(total=total, initial=initial, desc=desc, unit=unit,
                              unit_scale=unit_scale, dynamic_ncols=True, file=self.file,
                              leave=None, **tqdm_kwargs)

    # -- tqdm's interface -----------------------------------------------------------------
    def update(self, n: int = 1) -> None:
        self.n += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        elif self.mode == "lines" and time.monotonic() - self._last >= LINE_SECONDS:
            self._line()

    def set_postfix(self, refresh: bool = True, **values: object) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())
        if self._tqdm is not None:
            self._tqdm.set_postfix(refresh=refresh, **values)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(text, refresh=refresh)

    def add_total(self, n: int) -> None:
        self.total = (self.total or 0) + n
        if self._tqdm is not None:
            self._tqdm.total = self.total
            self._tqdm.refresh()

    def close(self, last_line: bool = True) -> None:
        """Stop; in lines mode write a last line (``done:`` when the total was reached), unless
        ``last_line`` is False: a loop that failed leaves its error as the last word."""
        if self._closed:
            return
        self._closed = True
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.mode == "lines" and self.n > self._start_n and last_line:
            self._line(final=True)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(last_line=exc_type is None)

    # -- plain lines ----------------------------------------------------------------------
    def _amount(self, n: float) -> str:
        from tqdm import tqdm

        return tqdm.format_sizeof(n, self.unit) if self.unit_scale else f"{n:,.0f}"

    def _line(self, final: bool = False) -> None:
        """``[desc] 1,200/8,000 step (15%), 12.3 step/s, 1:37 elapsed, eta 9:12; loss=0.12``."""
        from tqdm import tqdm

        now = time.monotonic()
        self._last = now
        elapsed = now - self._start
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        unit = "" if self.unit_scale else f" {self.unit}"
        parts = [f"{self._amount(self.n)}" + (f"/{self._amount(self.total)}" if self.total else "")
                 + unit + (f" ({100 * self.n / self.total:.0f}%)" if self.total else "")]
        parts.append(f"{self._amount(rate) if self.unit_scale else human_rate(rate)}"
                     f"{'' if self.unit_scale else f' {self.unit}'}/s")
        parts.append(f"{tqdm.format_interval(elapsed)} elapsed")
        done = final and (not self.total or self.n >= self.total)
        if self.total and rate > 0 and not done:
            parts.append(f"eta {tqdm.format_interval((self.total - self.n) / rate)}")
        text = f"[{self.desc}] {'done: ' if done else ''}{', '.join(parts)}"
        if self.postfix:
            text += f"; {self.postfix}"
        print(text, file=self.file, flush=True)


def human_bytes(n: float) -> str:
    """A size as a person reads it: ``812 B``, ``4.1 kB``, ``2.0 MB``, ``1.24 GB`` (never
    ``0.0 MB`` for a small file)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:,.2f} {unit}" if unit == "GB" else f"{value:,.1f} {unit}"
    return f"{n:,.0f} B"


def human_rate(rate: float) -> str:
    """A rate as a person reads it: ``1,760``, ``12.3``, ``5.9``, ``0.042`` (never ``1.76e+03``:
    whole numbers from 100 up, one decimal from 10, two significant digits below)."""
    if rate >= 100:
        return f"{rate:,.0f}"
    if rate >= 10:
        return f"{rate:.1f}"
    if rate >= 1e-4:  # .2g switches to an exponent below 1e-4
        return f"{rate:.2g}"
    return "0" if rate <= 0 else "<0.0001"
