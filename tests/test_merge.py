"""``scaledql data merge``: several runs' stores in one, each cut to its first share."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scaledql.cli import main
from scaledql.data.store.dataset import open_dataset

RUN1 = [(4, True, False), (6, True, False), (3, False, True), (5, False, False)]  # 18 steps
RUN2 = [(2, True, False), (7, True, False), (1, True, False)]  # 10 steps


def _runs(tmp_path, write_game, provenance2=None):
    write_game(tmp_path / "r1", "breakout", RUN1, provenance={"source": "collect", "seed": 0,
                                                              "env_options": {"sticky": None}})
    write_game(tmp_path / "r2", "breakout", RUN2, provenance=provenance2 or {
        "source": "collect", "seed": 10, "env_options": {"sticky": None}})
    return tmp_path / "r1", tmp_path / "r2"


def _labels(game):
    """The first frame label of every episode, in store order (write_game labels frames)."""
    return [int(np.asarray(sh.frames[s])[0, 0, 0])
            for sh in game.shards for s in np.asarray(sh.ep_frame_start).tolist()]


def test_merge_keeps_each_runs_first_share_in_order(tmp_path, write_game, capsys):
    r1, r2 = _runs(tmp_path, write_game)
    out = tmp_path / "merged"
    assert main(["data", "merge", str(r1), str(r2), "--out", str(out),
                 "--fractions", "0.5,1"]) == 0
    assert "wrote" in capsys.readouterr().out
    g = open_dataset(out).game("breakout")
    # run 1: the first episodes holding >= 50% of its 18 steps: 4 + 6 = 10
    assert g.num_transitions == 10 + 10
    assert _labels(g) == [1, 6, 1, 4, 12]  # run 1's first two, then run 2's three
    runs = g.manifest["provenance"]["merged_runs"]
    assert [(r["run"], r["fraction"], r["transitions"], r["episodes"], r["seed"]) for r in runs] \
        == [(1, 0.5, 10, 2, 0), (2, 1.0, 10, 3, 10)]
    assert runs[0]["shards"] == [0, 1] and runs[1]["shards"] == [1, 2]  # a run's own shards
    assert runs[0]["mean_return"] == pytest.approx(np.mean([10.0, 21.0]))
    # the sampler's cut for --data-fraction 0.5 is the same prefix
    from scaledql.data.sampling.sampler import fraction_of

    assert fraction_of(open_dataset(r1).game("breakout"), 0.5)["transitions"] == 10
    # the data card lists the runs
    assert main(["data", "card", str(out), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in card["games"]["breakout"]["merged_runs"]] == [0, 10]
    # (`data verify` checks MinAtar frame contents, which these labelled frames are not)


def test_merge_again_keeps_what_is_merged_and_refuses_other_runs(tmp_path, write_game, capsys):
    r1, r2 = _runs(tmp_path, write_game)
    out = tmp_path / "merged"
    assert main(["data", "merge", str(r1), str(r2), "--out", str(out)]) == 0
    before = (out / "breakout" / "manifest.json").read_bytes()
    capsys.readouterr()
    assert main(["data", "merge", str(r1), str(r2), "--out", str(out)]) == 0
    assert "already merged" in capsys.readouterr().out
    assert (out / "breakout" / "manifest.json").read_bytes() == before
    assert main(["data", "merge", str(r1), str(r2), "--out", str(out), "--fractions", "0.5"]) == 2
    assert "already holds other data" in capsys.readouterr().err


@pytest.mark.parametrize("case,message", [
    ("one", "needs at least two runs"),
    ("missing", "no such dataset directory"),
    ("fractions", "--fractions has 3 values for 2 runs"),
    ("notnumber", "not a comma list of numbers"),
    ("range", "data fraction must be in (0, 1]"),
    ("options", "environment options"),
])
def test_bad_merges_are_one_line(tmp_path, write_game, capsys, case, message):
    other = {"source": "collect", "seed": 10, "env_options": {"sticky": 0.3}}
    r1, r2 = _runs(tmp_path, write_game, other if case == "options" else None)
    args = {"one": [str(r1)], "missing": [str(r1), str(tmp_path / "nope")]}.get(case, [str(r1), str(r2)])
    extra = {"fractions": ["--fractions", "1,1,1"], "notnumber": ["--fractions", "a"],
             "range": ["--fractions", "0"]}.get(case, [])
    assert main(["data", "merge", *args, "--out", str(tmp_path / "m"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m" / "breakout").exists()
