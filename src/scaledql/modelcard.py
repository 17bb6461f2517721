"""The model card (``README.md``) of an exported agent, written from its ``config.json`` alone:
what it plays, what it learned from, how well it played, how to use and reproduce it."""

from __future__ import annotations

from typing import Any

from scaledql.data.store.episodes import share_text
from scaledql.errors import UserError

LABELS = {"scaled-ql": "Scaled QL", "dqn": "Double DQN", "dt": "Decision Transformer",
          "bc": "Behaviour cloning", "mae": "MAE-pretrained encoder"}


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def _ci(agg: dict, key: str) -> str:
    lo, hi = agg.get(f"{key}_ci", [None, None])
    return "—" if lo is None else f"[{lo:.3f}, {hi:.3f}]"


def _summary(algo: str) -> str:
    from scaledql.agents.registry import learner_class

    try:
        return learner_class(algo).summary
    except UserError:  # a learner this installation lacks: the card still says its name
        return ""


def _agent(c: dict[str, Any], name: str) -> list[str]:
    learner = c.get("learner_config") or {}
    run = c.get("run_config") or {}
    counts = c.get("param_counts") or {}
    parts = ", ".join(f"{k} {v:,}" for k, v in counts.items() if k != "total")
    options = {k: v for k, v in (c.get("env_options") or {}).items() if v not in (None, False)}
    knobs = ", ".join(f"{k} {learner[k]}" for k in ("encoder", "width", "feature_dim",
                                                    "d_model", "num_layers", "context",
                                                    "loss", "cql_alpha", "n_step")
                      if k in learner)
    games = ", ".join(f"{g} ({a} actions)" for g, a in zip(c["games"], c["num_actions"],
                                                          strict=True))
    w = c.get("weights") or {}
    default_options = f"the {c['suite']} defaults"
    channels = c["frame_channels"]
    return [
        "| | |", "|---|---|",
        f"| learner | `{c['algo']}`: {_summary(c['algo'])} |",
        f"| games (head order) | {games} |",
        f"| observation | uint8{list(c['obs_shape'])} ({channels} channel"
        f"{'s' if channels != 1 else ''} a frame) |",
        f"| game options | {options or default_options} |",
        f"| network | {knobs} |",
        f"| parameters | {counts.get('total', 0):,} ({parts}) |",
        f"| training | {c['step']:,} gradient steps, batch {learner.get('batch_size', '?')}, "
        f"seed {run.get('seed', '?')} |",
        f"| files | `model.safetensors` (networks: {', '.join(w.get('networks', []))}; "
        f"{w.get('tensors', '?')} tensors), `config.json` (the full configuration) |",
        "", f"Load it wherever scaledql takes a run: `evaluate --checkpoint {name}`, `play "
        f"--checkpoint {name}`; a learner with a torso (Scaled QL, DQN, BC, MAE) also as "
        f"`train --init-from {name}`, a Scaled QL agent as `finetune ... --from {name}`.",
    ]


def _data(c: dict[str, Any]) -> list[str]:
    d = c.get("data") or {}
    lines = ["## Data", ""]
    ident = d.get("identity")
    where = f"Store `{d.get('path')}`"
    if d.get("found_at") not in (None, d.get("path")):
        where += f" (found at `{d['found_at']}`)"
    if ident:
        where += f", identity `sha256:{ident[:16]}…` (the full fingerprint of its games' " \
                 "manifests is in `config.json`)"
    if d.get("fraction", 1.0) != 1.0:
        where += f"; {share_text(d['fraction'], d.get('sample', 'first'))} of each game's data"
    lines.append(where + ".")
    if not d.get("found"):
        lines += ["", "The store was not found when this agent was exported: per-game counts and "
                      "provenance are not recorded."]
        return lines
    if d.get("identity_at_export"):
        lines += ["", "The run did not record its data's identity; the one above is the store's "
                      "at export time."]
    elif d.get("identity_matches") is False:
        lines += ["", "**The store at that path has changed since training**: the table below "
                      "describes the store now, not the data the agent learned from."]
    lines += ["", "| game | transitions | episodes | behaviour mean return | normalized | source |",
              "|---|---|---|---|---|---|"]
    for g, v in d["games"].items():
        prov = v.get("provenance") or {}
        src = "; ".join(str(prov[k]) for k in ("source", "behaviour") if k in prov)
        lines.append(f"| {g} | {v['transitions']:,} | {v['episodes']:,} | "
                     f"{_num(v['mean_return'], '.2f')} | {_num(v['normalized'])} | {src or '—'} |")
    return lines


def _evaluation(c: dict[str, Any]) -> list[str]:
    e = c.get("evaluation")
    lines = ["## Evaluation", ""]
    if not e:
        return [*lines, f"The run holds no evaluation of step {c['step']:,} or before; "
                        "`scaledql evaluate --checkpoint` this folder to get one."]
    episodes = sorted({v["episodes"] for v in e["games"].values()})
    note = "" if e["step"] == c["step"] else f" (the agent is at step {c['step']:,})"
    lines.append(f"From the run's `{e['file']}`: step {e['step']:,}{note}, "
                 f"{'/'.join(map(str, episodes))} episodes per game in the real games, "
                 f"ε = {e.get('epsilon')}, seed {e.get('seed')}. Normalized scores; aggregates "
                 "over episodes × games with 95% stratified-bootstrap confidence intervals "
                 "(rliable).")
    agg = e.get("aggregate") or {}
    if agg:
        lines += ["", "| aggregate | normalized score | 95% CI |", "|---|---|---|"]
        for key in ("iqm", "median", "mean"):
            if key in agg:
                lines.append(f"| {key.upper() if key == 'iqm' else key} | {agg[key]:.3f} | "
                             f"{_ci(agg, key)} |")
    lines += ["", "| game | episodes | mean return | normalized |", "|---|---|---|---|"]
    for g, v in e["games"].items():
        lines.append(f"| {g} | {v['episodes']} | {v['mean']:.2f} | {_num(v['normalized'])} |")
    return lines


def _reproduce(c: dict[str, Any], name: str) -> list[str]:
    from scaledql.training.config import RunConfig, to_toml

    run = c.get("run_config")
    game = c["games"][0]
    lines = ["## Use", "", "```bash",
             f"scaledql evaluate --checkpoint {name} --episodes 30",
             f"scaledql play --checkpoint {name} --game {game} --out {game}.gif",
             f"scaledql train --data NEW_DATA --out RUN --init-from {name}   # its torso's "
             "encoder, fresh heads",
             "```", "", "## Reproduce", ""]
    commands = sorted({str(v["provenance"]["command"]) for v in
                       ((c.get("data") or {}).get("games") or {}).values()
                       if "command" in (v.get("provenance") or {})})
    if commands:
        lines += [f"The data was made by `{'`, `'.join(commands)}`.", ""]
    if not run:
        return [*lines, "The checkpoint carried no run configuration (not an offline "
                        "training run)."]
    try:
        toml = to_toml(RunConfig.from_dict(run))
    except (UserError, TypeError, ValueError, KeyError) as exc:  # another version's config
        toml = f"# not readable as this version's run config ({exc}); see config.json"
    lines += ["Training (the run's own configuration, seeds included), with `train.toml` "
              "below:", "", "```bash",
              f"scaledql train --data {run.get('data')} --out {run.get('out')} --algo "
              f"{c['algo']} --config train.toml", "```", "", "```toml", toml.rstrip(), "```", "",
              "On CPU the same command on the same data gives the same weights on the same "
              "machine; another CPU make or a GPU rounds differently, so numbers differ within "
              "the spread over seeds."]
    return lines


def model_card(c: dict[str, Any], name: str = "AGENT") -> str:
    """The card of the export whose ``config.json`` is ``c``; ``name``: its folder as the card's
    commands name it (``export_agent`` gives the absolute path, so they run verbatim from any
    directory; a bare folder name only worked from the folder's parent)."""
    title = f"# {LABELS.get(c['algo'], c['algo'])} on {len(c['games'])} {c['suite']} games"
    lines = [title, "", f"A scaledql agent exported from `{c.get('source')}` at step "
                        f"{c['step']:,}.", "", *_agent(c, name), "", *_data(c), "",
             *_evaluation(c), "", *_reproduce(c, name)]
    return "\n".join(lines) + "\n"
