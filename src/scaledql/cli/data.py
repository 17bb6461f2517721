"""``scaledql data``: inspect, import and export offline datasets.

    scaledql data info DIR [--json]
    scaledql data verify DIR [--games G] [--json]
    scaledql data card DIR [--json]
    scaledql data import dqn-replay SRC (--game GAME | --games train40) --out DIR [--runs 1-5]
        [--checkpoints 0-9 | --fraction 0.2] [--jobs N]
    scaledql data import rlu-atari PATH (--game GAME | --games train40) --out DIR [--runs 1-5]
        [--checkpoints 0-9 | --fraction 0.2] [--jobs N]
    scaledql data import minari PATH_OR_ID --out DIR [--game GAME]
    scaledql data export minari DIR --game GAME --dataset-id NAMESPACE/NAME-v0 [--out ROOT]
    scaledql data compress SRC --out DST [--games G] [--level 3] [--block-transitions 4096]
    scaledql data merge RUN1 RUN2 ... --out DIR [--fractions 0.2] [--games G]
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from scaledql.data.store.frame_blocks import DEFAULT_LEVEL
from scaledql.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect, import and export offline datasets",
                       description=__doc__.splitlines()[0])
    p.set_defaults(func=lambda args: p.print_help() or 2)
    groups = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(p))

    info = groups.add_parser("info", help="per game: transitions, episodes, behaviour returns")
    info.add_argument("dir", type=Path, help="dataset directory (one subdirectory per game)")
    info.add_argument("--games", default=None, help="comma list of games (default: all)")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=run_info)

    ver = groups.add_parser("verify", help="full scan: every action in range, every reward "
                            "finite, episode tables, flags, counts and returns consistent")
    ver.add_argument("dir", type=Path, help="dataset directory (or one game's directory)")
    ver.add_argument("--games", default=None, help="comma list of games (default: all)")
    ver.add_argument("--json", action="store_true", help="machine-readable output")
    ver.set_defaults(func=run_verify)

    card = groups.add_parser("card", help="data card: sources, counts, behaviour scores, IQM; "
                             "written to DIR/DATACARD.md and printed")
    card.add_argument("dir", type=Path, help="dataset directory (one subdirectory per game)")
    card.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    card.set_defaults(func=run_card)

    imp = groups.add_parser("import", help="import a dataset into the scaledql store")
    sources = imp.add_subparsers(dest="source", metavar="SOURCE", parser_class=type(p))
    dqn = sources.add_parser("dqn-replay", help="the DQN Replay Dataset (Dopamine logs)")
    dqn.add_argument("src", type=Path, help="root holding GAME/RUN/replay_logs/")
    _add_selection(dqn, checkpoints="checkpoint ranges, inclusive, e.g. 0-9 or 0-4,20-29",
                   jobs="checkpoint files of all games and runs are copied in parallel")
    dqn.set_defaults(func=run_import_dqn)

    rlu = sources.add_parser("rlu-atari", help="the same data as RL Unplugged / TFDS republished "
                             "it (rlu_atari_checkpoints_ordered or atari_episodes_ordered); no "
                             "TensorFlow needed")
    rlu.add_argument("src", type=Path, help="a TFDS data directory (holding "
                     "rlu_atari_checkpoints_ordered/GAME_run_N/VERSION/) or RL Unplugged's "
                     "atari_episodes_ordered directory (holding GAME/run_N-XXXXX-of-YYYYY)")
    _add_selection(rlu, checkpoints="checkpoints (TFDS splits checkpoint_NN, raw file numbers), "
                   "inclusive, e.g. 0-9", jobs="the files of all games and runs are decoded in "
                   "parallel")
    rlu.set_defaults(func=run_import_rlu)

    mi = sources.add_parser("minari", help="a local Minari dataset (path or id)")
    mi.add_argument("path_or_id", help="dataset directory or id in MINARI_DATASETS_PATH")
    mi.add_argument("--out", type=Path, required=True, help="dataset directory to write into")
    mi.add_argument("--game", default=None,
                    help="game name (default: what a scaledql export recorded, else the env "
                         "spec's id)")
    mi.add_argument("--overwrite", action="store_true", help="replace an existing game store")
    mi.set_defaults(func=run_import_minari)

    cp = groups.add_parser("compress", help="copy a dataset with its frames as zstd blocks of "
                           "whole episodes (train on it with --resident-gb)")
    cp.add_argument("src", type=Path, help="dataset directory (or one game's directory)")
    cp.add_argument("--out", type=Path, required=True,
                    help="dataset directory to write the compressed games into")
    cp.add_argument("--games", default=None, help="comma list of games (default: all)")
    cp.add_argument("--level", type=int, default=DEFAULT_LEVEL,
                    help="zstd level, 1-22 (default: %(default)s; benchmarks/README.md)")
    cp.add_argument("--block-transitions", type=int, default=4096,
                    help="frames per block, whole episodes (a longer episode is a block of its "
                         "own); the pool's unit of RAM (default: %(default)s)")
    cp.add_argument("--overwrite", action="store_true",
                    help="replace compressed games already in --out (default: a game "
                         "compressed from the same source is skipped, another one refused)")
    cp.set_defaults(func=run_compress)

    mg = groups.add_parser("merge", help="one store per game from several runs' stores, each "
                           "cut to its first share of transitions, in run order (the DQN Replay "
                           "way: the first 20%% of each of five runs)")
    mg.add_argument("src", type=Path, nargs="+", help="the runs' dataset directories, in order")
    mg.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    mg.add_argument("--fractions", default=None, metavar="F[,F...]",
                    help="each run's first share of each game's transitions: one value for "
                         "every run or one per run (default: 1, all of it)")
    mg.add_argument("--games", default=None, help="comma list of games (default: all of the "
                                                  "first run's)")
    mg.add_argument("--overwrite", action="store_true",
                    help="replace merged games in --out (default: a game merged from the same "
                         "runs is kept, another one refused)")
    mg.set_defaults(func=run_merge)

    exp = groups.add_parser("export", help="export a game store to another format")
    targets = exp.add_subparsers(dest="target", metavar="TARGET", parser_class=type(p))
    mo = targets.add_parser("minari", help="a local Minari dataset (the game and the store's "
                            "layout recorded: import gives back the same store)")
    mo.add_argument("dir", type=Path, help="dataset directory")
    mo.add_argument("--game", required=True, help="the game to export")
    mo.add_argument("--dataset-id", required=True, help="Minari id, e.g. scaledql/pong-v0")
    mo.add_argument("--out", type=Path, default=None,
                    help="Minari datasets root to write into (default: MINARI_DATASETS_PATH, "
                         "else ~/.minari/datasets)")
    mo.add_argument("--author", default=None,
                    help="author recorded in the dataset's metadata (default: none)")
    mo.set_defaults(func=run_export_minari)


def _add_selection(parser: argparse.ArgumentParser, checkpoints: str, jobs: str) -> None:
    """The options the Atari importers share: games, output, runs and checkpoints, workers."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--game", help="one Atari game, e.g. Pong")
    which.add_argument("--games", help="comma list of games or a named list (train40, "
                                      "heldout5, all)")
    parser.add_argument("--out", type=Path, required=True, help="dataset directory to write into")
    parser.add_argument("--runs", default=None,
                        help="runs, e.g. 1-5 or 1,3 (default: all of each game's runs)")
    sel = parser.add_mutually_exclusive_group()
    sel.add_argument("--checkpoints", default=None, help=f"{checkpoints} (default: all)")
    sel.add_argument("--fraction", type=float, default=None,
                     help="the first FRACTION of each run's checkpoints, e.g. 0.2 (the paper's "
                          "sub-optimal data); default: all (near-optimal)")
    parser.add_argument("--jobs", type=int, default=1, help=f"processes: {jobs} (default 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing game stores (an interrupted import of the same "
                             "selection resumes without it)")


def _command(*words: object, **options: object) -> str:
    """The command line that reproduces this run, rebuilt from the parsed arguments (so it is
    right however ``main`` was called), for the dataset's provenance."""
    argv = ["scaledql", *map(str, words)]
    for key, value in options.items():
        if value is None or value is False:
            continue
        argv.append("--" + key.replace("_", "-"))
        if value is not True:
            argv.append(str(value))
    return shlex.join(argv)


def _games(spec: str | None) -> list[str] | None:
    """``--games`` of a dataset command: None (all) or a non-empty list."""
    if spec is None:
        return None
    games = [g.strip() for g in spec.split(",") if g.strip()]
    if not games:
        raise UserError(f"--games {spec!r}: no games given")
    return games


def run_info(args: argparse.Namespace) -> int:
    from scaledql.cli.common import print_json
    from scaledql.data.store.dataset import open_dataset

    info = open_dataset(args.dir, _games(args.games)).info()
    if args.json:
        print_json(info)
        return 0
    print(f"{info['root']}: {len(info['games'])} games, {info['total_transitions']:,} transitions")
    print(f"  {'game':<18} {'suite':<8} {'transitions':>12} {'episodes':>9} {'mean return':>12} "
          f"{'normalized':>10}  source")
    for name, g in info["games"].items():
        mean = "-" if g["mean_return"] is None else f"{g['mean_return']:.1f}"
        norm = "-" if g["normalized_score"] is None else f"{g['normalized_score']:.3f}"
        print(f"  {name:<18} {g['suite']:<8} {g['transitions']:>12,} {g['episodes']:>9,} "
              f"{mean:>12} {norm:>10}  {g['provenance'].get('source', '?')}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Each game opened (cheap checks) and scanned (full checks) on its own, so one damaged
    game does not hide the others; any failure is the exit code and one stderr line."""
    from scaledql.cli.common import print_json
    from scaledql.data.store.dataset import GameData, game_directories
    from scaledql.data.store.validate import verify_game

    results: dict[str, dict] = {}
    for d in game_directories(args.dir, _games(args.games)):
        try:
            results[d.name] = {"ok": True, **verify_game(GameData(d))}
        except UserError as exc:
            results[d.name] = {"ok": False, "problem": str(exc)}
    if args.json:
        print_json(results)
    else:
        for name, r in results.items():
            print(f"{'ok ' if r['ok'] else 'BAD'} {name:<18} " + (
                f"{r['transitions']:,} transitions, {r['episodes']:,} finished episodes, "
                f"{r['shards']} shard(s)" if r["ok"] else r["problem"]))
    bad = [r["problem"] for r in results.values() if not r["ok"]]
    if bad:
        more = f" (and {len(bad) - 1} more damaged games)" if len(bad) > 1 else ""
        raise UserError(bad[0] + more)
    return 0


def run_card(args: argparse.Namespace) -> int:
    from scaledql.cli.common import print_json
    from scaledql.data.store.datacard import data_card, write_card

    card = data_card(args.dir)
    text = write_card(card, args.dir)
    if args.json:
        print_json(card)
    else:
        print(text, end="")
    return 0


def run_import_dqn(args: argparse.Namespace, source: str = "dqn-replay") -> int:
    from scaledql.data.importers.atari_import import ImportOptions, import_games
    from scaledql.data.importers.dqn_replay import parse_checkpoint_spec, parse_runs_spec
    from scaledql.suites import get_suite

    suite = get_suite("atari")
    games = suite.resolve_games(args.game if args.game is not None else args.games)
    if args.game is not None and len(games) != 1:
        raise UserError(f"--game takes one game, got {args.game!r} (use --games for several)")
    runs = parse_runs_spec(args.runs) if args.runs else None
    checkpoints = parse_checkpoint_spec(args.checkpoints) if args.checkpoints else None
    # --jobs and --overwrite change how, not what: left out so that a resumed import with other
    # values writes the same bytes
    command = _command("data", "import", source, args.src, game=args.game,
                       games=args.games, out=args.out, runs=args.runs,
                       checkpoints=args.checkpoints, fraction=args.fraction)
    opts = ImportOptions(src=args.src, out=args.out, runs=runs, checkpoints=checkpoints,
                         fraction=args.fraction, overwrite=args.overwrite, command=command,
                         source=source)
    summaries = import_games(dict.fromkeys(games), opts, jobs=args.jobs, progress=True)
    for s in summaries:
        what = "already imported" if s.skipped else "wrote"
        print(f"{what} {s.game_dir}: {s.transitions:,} transitions, {s.episodes:,} finished "
              f"episodes from runs {', '.join(s.runs)}")
    return 0


def run_import_rlu(args: argparse.Namespace) -> int:
    return run_import_dqn(args, source="rlu-atari")


def run_import_minari(args: argparse.Namespace) -> int:
    from scaledql.data.importers.minari_io import import_minari
    from scaledql.data.store.dataset import open_dataset

    game_dir = import_minari(args.path_or_id, args.out, game=args.game,
                             overwrite=args.overwrite,
                             command=_command("data", "import", "minari", args.path_or_id,
                                              out=args.out, game=args.game))
    g = open_dataset(game_dir.parent, [game_dir.name]).game(game_dir.name)
    print(f"wrote {game_dir}: {g.num_transitions:,} transitions, {g.num_episodes:,} "
          "finished episodes")
    return 0


def run_compress(args: argparse.Namespace) -> int:
    from scaledql.data.store.compress import compress_dataset
    from scaledql.progress import human_bytes

    # --overwrite changes how, not what (the same bytes are written)
    command = _command("data", "compress", args.src, out=args.out, games=args.games,
                       level=args.level, block_transitions=args.block_transitions)
    summaries = compress_dataset(args.src, args.out, _games(args.games), level=args.level,
                                 block_frames=args.block_transitions, overwrite=args.overwrite,
                                 command=command, progress=True)
    raw = sum(s.raw_frame_bytes for s in summaries)
    packed = sum(s.compressed_frame_bytes + s.other_bytes for s in summaries)
    print(f"wrote {args.out}: {len(summaries)} game(s), {human_bytes(raw)} of frames in "
          f"{human_bytes(packed)} with the tables")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from scaledql.data.store.merge import RunSource, merge

    fractions = [1.0] * len(args.src)
    if args.fractions is not None:
        try:
            given = [float(f) for f in args.fractions.split(",")]
        except ValueError:
            raise UserError(f"--fractions {args.fractions!r}: not a comma list of numbers") from None
        if len(given) not in (1, len(args.src)):
            raise UserError(f"--fractions has {len(given)} values for {len(args.src)} runs "
                            "(give one, or one per run)")
        fractions = given * len(args.src) if len(given) == 1 else given
    command = shlex.join(["scaledql", "data", "merge", *map(str, args.src), "--out",
                          str(args.out), *(["--fractions", args.fractions] if args.fractions
                                           else []),
                          *(["--games", args.games] if args.games else [])])
    sources = [RunSource(path, f) for path, f in zip(args.src, fractions, strict=True)]
    for s in merge(sources, args.out, _games(args.games), command, overwrite=args.overwrite):
        what = "already merged" if s["skipped"] else "wrote"
        print(f"{what} {args.out / s['game']}: {s['transitions']:,} transitions from "
              f"{len(s['runs'])} runs (" + ", ".join(
                  f"run {r['run']} {r['transitions']:,}" for r in s["runs"]) + ")")
    return 0


def run_export_minari(args: argparse.Namespace) -> int:
    from scaledql.data.importers.minari_io import export_minari

    r = export_minari(args.dir, args.game, args.dataset_id, out=args.out, author=args.author)
    print(f"wrote Minari dataset {args.dataset_id} to {r['path']}: {r['episodes']:,} episodes, "
          f"{r['steps']:,} steps")
    if r["left_out"]:
        print(f"note: {r['left_out']} terminated zero-step episode(s) left out (Minari episodes "
              "need a step)")
    print(f"import it with: scaledql data import minari {shlex.quote(r['path'])} --out DIR")
    return 0
