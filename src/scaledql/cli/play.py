"""``scaledql play``: record a trained policy's episodes as a GIF or MP4 with a score overlay.
Light at import: the work happens in ``scaledql.play``."""

from __future__ import annotations

import argparse
from pathlib import Path

from scaledql.cli.common import add_device_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "play", help="record a policy's episodes as a GIF or MP4 with a score overlay",
        description="Plays any learner's policy (ε-greedy, as evaluation) in one game, with the "
                    "game options it was trained with, and records every step with an overlay: "
                    "game, episode, step, return.")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="a run folder, a checkpoint file or an exported agent")
    p.add_argument("--game", required=True, help="one of the games the checkpoint was trained on")
    p.add_argument("--episodes", type=int, default=1, help="episodes to record (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="environment and ε seed (default: 0)")
    p.add_argument("--epsilon", type=float, default=0.001, help="ε-greedy (default: 0.001)")
    p.add_argument("--max-steps", type=int, default=1000,
                   help="agent steps recorded per episode (default: 1000; 0: whole episodes, "
                        "up to the game's cap)")
    p.add_argument("--fps", type=int, default=15, help="agent steps per second of video "
                                                       "(default: 15, real time on Atari)")
    # dest "video": --out is a file here, not the folder every other command's --out is
    p.add_argument("--out", dest="video", type=Path, required=True,
                   help="FILE.gif (pillow) or FILE.mp4 (needs imageio-ffmpeg)")
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from scaledql.checkpoint import check_policy_games, load_policy
    from scaledql.errors import UserError
    from scaledql.play import PlayConfig, check_video_path, record
    from scaledql.suites import EnvOptions, get_suite

    cfg = PlayConfig(episodes=args.episodes, seed=args.seed, epsilon=args.epsilon,
                     max_steps=args.max_steps, fps=args.fps)
    check_video_path(args.video)  # before the checkpoint loads: a wrong name fails fast
    policy, payload = load_policy(args.checkpoint, args.device)
    suite = get_suite(payload["suite"])
    games = suite.resolve_games(args.game)
    if len(games) != 1:
        raise UserError(f"--game {args.game!r}: one game, please")
    # The game as the agent learned it (sticky actions, cap, action set, mode, difficulty).
    known = {f.name for f in fields(EnvOptions)}
    options = EnvOptions(**{k: v for k, v in (payload.get("env_options") or {}).items()
                            if k in known})
    check_policy_games(payload, games, options)
    episodes = record(args.video, suite.name, games[0], policy, options, cfg)
    for e in episodes:
        cut = " (recording cut at --max-steps)" if e["ended"] == "cut" else ""
        print(f"[play] {games[0]} episode {e['episode']}: return {e['return']:g} in "
              f"{e['steps']} steps{cut}")
    print(f"[play] {args.video}: {sum(e['steps'] + 1 for e in episodes)} frames, "
          f"{args.video.stat().st_size:,} bytes")
    return 0
