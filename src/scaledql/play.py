"""Watching an agent: a policy's episodes recorded as a GIF or an MP4 with a score overlay.

Any policy plays (``Policy``: Q-learners, the Decision Transformer, BC, random), one
environment, ε-greedy as in evaluation, in the game as the checkpoint was trained (its game
options). Each suite draws its own games (``Suite.render``): the emulator's colour screen for
Atari, a colour map of MinAtar's channel grid, a ``GymSuite``'s newest observation frame, so a
plugin suite plays as the built-in ones do. Below each frame a band reads: game, episode,
step, return. GIFs are written with pillow; MP4s with imageio-ffmpeg when installed (an
optional extra: its ffmpeg binary is ~30 MB). Files are written atomically.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.atomic_files import atomic_output
from scaledql.errors import UserError
from scaledql.policies import Policy, epsilon_greedy
from scaledql.suites import EnvOptions, Suite, get_suite

SUFFIXES = (".gif", ".mp4")
BAND = 24  # overlay height in pixels (even: yuv420p MP4s need even sizes)
HOLD_SECONDS = 1.0  # an episode's last frame stays this long
# pillow keeps a GIF's frames in memory until it writes (measured: ~0.35 MB a 320×344 frame,
# 680 MB peak for 1,000 frames); MP4s stream. Longer GIFs are refused before playing.
GIF_MAX_FRAMES = 5_000


@dataclass
class PlayConfig:
    episodes: int = 1
    seed: int = 0
    epsilon: float = 0.001
    max_steps: int = 1000  # agent steps recorded per episode; 0: the whole episode
    fps: int = 15  # Atari: 15 agent steps (60 emulator frames) a second is real time

    def __post_init__(self) -> None:
        if self.episodes <= 0:
            raise UserError(f"--episodes must be positive, got {self.episodes}")
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0, got {self.seed}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise UserError(f"--epsilon must be in [0, 1], got {self.epsilon}")
        if self.max_steps < 0:
            raise UserError(f"--max-steps must be >= 0 (0: whole episodes), got {self.max_steps}")
        if not 1 <= self.fps <= 120:
            raise UserError(f"--fps must be in [1, 120], got {self.fps}")


def check_video_path(path: Path) -> None:
    """A writable ``.gif``/``.mp4`` file path, and what writing it needs, before any work."""
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"--out {path}: unknown video type {path.suffix or '(none)'!r}; name a "
                        ".gif or .mp4 file")
    if path.is_dir():
        raise UserError(f"--out {path} is a directory; name a .gif or .mp4 file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"--out {path} cannot be made: {parent} is a file")
            break
    if path.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise UserError("--out .mp4 needs imageio-ffmpeg (pip install imageio-ffmpeg==0.6.0, "
                            "or pip install 'scaledql[video]'); or write a .gif") from None


def renderer(suite: Suite) -> Callable[[Any, np.ndarray], np.ndarray]:
    """The suite's own drawing of its games (``Suite.render``); a suite without one cannot be
    played."""
    draw = getattr(suite, "render", None)
    if not callable(draw):
        raise UserError(f"cannot render {suite.name!r} games (the suite has no render method: "
                        "scaledql.suites.base.Suite)")
    return draw


@functools.cache
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError, ImportError):  # pillow without FreeType: its bitmap font
        return ImageFont.load_default()


def overlay(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with a band below it holding ``text`` (white on dark grey), in the largest
    font up to 14 px that fits the width (long game names, long episodes)."""
    from PIL import Image, ImageDraw

    h, w, _ = frame.shape
    image = Image.new("RGB", (w, h + BAND), (32, 32, 32))
    image.paste(Image.fromarray(frame), (0, 0))
    draw = ImageDraw.Draw(image)
    size = 14
    while size > 8 and draw.textlength(text, font=_font(size)) > w - 12:
        size -= 1
    draw.text((6, h + (BAND - size) // 2), text, fill=(255, 255, 255), font=_font(size))
    return np.asarray(image)


class GifWriter:
    """Frames kept as palette images (a quarter of RGB's memory), written on ``close``."""

    def __init__(self, path: Path, fps: int) -> None:
        self.path, self.ms = path, max(20, round(1000 / fps))  # browsers clamp below 20 ms
        self.frames: list = []
        self.durations: list[int] = []

    def add(self, frame: np.ndarray, hold: float = 0.0) -> None:
        from PIL import Image

        self.frames.append(Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE))
        self.durations.append(max(self.ms, round(hold * 1000)))

    def close(self) -> None:
        first, *rest = self.frames
        first.save(self.path, format="GIF", save_all=True, append_images=rest,
                   duration=self.durations, loop=0)


class Mp4Writer:
    """H.264 through imageio-ffmpeg's ffmpeg, frames streamed as they come."""

    def __init__(self, path: Path, fps: int) -> None:
        self.path, self.fps = path, fps
        self.stream = None

    def add(self, frame: np.ndarray, hold: float = 0.0) -> None:
        import imageio_ffmpeg

        if self.stream is None:
            h, w, _ = frame.shape
            self.stream = imageio_ffmpeg.write_frames(
                str(self.path), (w, h), fps=self.fps, codec="libx264", macro_block_size=2,
                pix_fmt_out="yuv420p", output_params=["-f", "mp4"], ffmpeg_log_level="error")
            self.stream.send(None)
        for _ in range(max(1, round(hold * self.fps))):
            self.stream.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


def play_episodes(suite_name: str, game: str, policy: Policy, options: EnvOptions,
                  cfg: PlayConfig, emit: Callable[[np.ndarray, float], None]) -> list[dict]:
    """Play ``cfg.episodes`` episodes; ``emit(frame, hold)`` gets every overlaid frame (the
    start, then one per agent step). Returns per episode: steps, return, how it ended."""
    suite = get_suite(suite_name)
    render = renderer(suite)
    num_actions = suite.spec(game, options).num_actions
    env = suite.make_env(game, options)
    rng = np.random.default_rng([cfg.seed, 1])  # the ε draws, as evaluation seeds them
    summary = []
    try:
        for episode in range(1, cfg.episodes + 1):
            policy.reset(game, 1)  # a fresh history for stateful policies (DT)
            obs, _ = env.reset(seed=cfg.seed if episode == 1 else None)
            steps, total, ended = 0, 0.0, "cut"

            def label(steps: int = 0, total: float = 0.0, episode: int = episode) -> str:
                return (f"{game}  episode {episode}/{cfg.episodes}  step {steps}  "
                        f"return {total:g}")

            emit(overlay(render(env, obs), label()), 0.0)
            while not cfg.max_steps or steps < cfg.max_steps:
                action = epsilon_greedy(policy, obs[None], cfg.epsilon, num_actions, rng)
                obs, reward, terminated, truncated, _ = env.step(int(action[0]))
                done = bool(terminated or truncated)
                policy.observe(action, np.array([reward], dtype=np.float64), np.array([done]))
                steps, total = steps + 1, total + float(reward)
                last = done or steps == cfg.max_steps
                emit(overlay(render(env, obs), label(steps, total)),
                     HOLD_SECONDS if last else 0.0)
                if done:
                    ended = "terminated" if terminated else "truncated"
                    break
            summary.append({"episode": episode, "steps": steps, "return": total, "ended": ended})
    finally:
        env.close()
    return summary


def record(path: Path, suite_name: str, game: str, policy: Policy, options: EnvOptions,
           cfg: PlayConfig) -> list[dict]:
    """Play and write the video to ``path`` (``.gif`` or ``.mp4``), atomically."""
    path = Path(path)
    check_video_path(path)
    if path.suffix.lower() == ".gif":
        cap = options.max_episode_steps or get_suite(suite_name).default_max_episode_steps
        most = cfg.episodes * (min(cfg.max_steps or cap, cap) + 1)
        if most > GIF_MAX_FRAMES:
            raise UserError(f"this recording could reach {most:,} frames; a GIF holds them all in "
                            f"memory (at most {GIF_MAX_FRAMES:,}): lower --episodes or "
                            "--max-steps, or write an .mp4 (streamed)")
    with atomic_output(path) as tmp:
        writer = (Mp4Writer if path.suffix.lower() == ".mp4" else GifWriter)(tmp, cfg.fps)
        try:
            episodes = play_episodes(suite_name, game, policy, options, cfg, writer.add)
        except BaseException:
            if isinstance(writer, Mp4Writer):
                writer.close()  # stop ffmpeg; the temporary file is then removed
            raise
        writer.close()
    return episodes
