"""Reference scores for normalization: normalized = (score − random) / (reference − random).

Atari: the standard Atari-57 random and human scores (Mnih et al., 2015; Badia et al., 2020),
as tabulated in DeepMind's ``dqn_zoo/atari_data.py`` (30-minute episodes, 108k frames) — the table
rliable and the Scaled QL / multi-game DT papers normalize with. Carnival and Pooyan are not in
Atari-57; see the notes at their entries.

MinAtar: there are no human scores. ``random`` is a uniformly random policy and ``reference`` an
online DQN trained by this project; both were measured here with the commands given in
``MINATAR_SOURCES`` and can be re-measured with them.

Registered suites (docs/extending.md) bring their own table or none: without one, their
evaluations report raw returns and no normalized score.
"""

from __future__ import annotations

import numpy as np

from scaledql.errors import UserError

# game: (random, human)
ATARI_SCORES: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7),
    "Amidar": (5.8, 1719.5),
    "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3),
    "Asteroids": (719.1, 47388.7),
    "Atlantis": (12850.0, 29028.1),
    "BankHeist": (14.2, 753.1),
    "BattleZone": (2360.0, 37187.5),
    "BeamRider": (363.9, 16926.5),
    "Berzerk": (123.7, 2630.4),
    "Bowling": (23.1, 160.7),
    "Boxing": (0.1, 12.1),
    "Breakout": (1.7, 30.5),
    "Centipede": (2090.9, 12017.0),
    "ChopperCommand": (811.0, 7387.8),
    "CrazyClimber": (10780.5, 35829.4),
    "Defender": (2874.5, 18688.9),
    "DemonAttack": (152.1, 1971.0),
    "DoubleDunk": (-18.6, -16.4),
    "Enduro": (0.0, 860.5),
    "FishingDerby": (-91.7, -38.7),
    "Freeway": (0.0, 29.6),
    "Frostbite": (65.2, 4334.7),
    "Gopher": (257.6, 2412.5),
    "Gravitar": (173.0, 3351.4),
    "Hero": (1027.0, 30826.4),
    "IceHockey": (-11.2, 0.9),
    "Jamesbond": (29.0, 302.8),
    "Kangaroo": (52.0, 3035.0),
    "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3),
    "MontezumaRevenge": (0.0, 4753.3),
    "MsPacman": (307.3, 6951.6),
    "NameThisGame": (2292.3, 8049.0),
    "Phoenix": (761.4, 7242.6),
    "Pitfall": (-229.4, 6463.7),
    "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3),
    "Qbert": (163.9, 13455.0),
    "Riverraid": (1338.5, 17118.0),
    "RoadRunner": (11.5, 7845.0),
    "Robotank": (2.2, 11.9),
    "Seaquest": (68.4, 42054.7),
    "Skiing": (-17098.1, -4336.9),
    "Solaris": (1236.3, 12326.7),
    "SpaceInvaders": (148.0, 1668.7),
    "StarGunner": (664.0, 10250.0),
    "Surround": (-10.0, 6.5),
    "Tennis": (-23.8, -8.3),
    "TimePilot": (3568.0, 5229.2),
    "Tutankham": (11.4, 167.6),
    "UpNDown": (533.4, 11693.2),
    "Venture": (0.0, 1187.5),
    # Random exceeds some other tables' 0.0 here; dqn_zoo's value is kept (see its own note).
    "VideoPinball": (16256.9, 17667.9),
    "WizardOfWor": (563.5, 4756.5),
    "YarsRevenge": (3092.9, 54576.9),
    "Zaxxon": (32.5, 9173.3),
    # Not in Atari-57. Random 700.8 appears in extended dqn_zoo-style tables; the human score 3800
    # is the value our notes on the paper give for the Scaled QL / multi-game DT setting.
    # UNCONFIRMED against the paper's own table.
    "Carnival": (700.8, 3800.0),
    # Not in Atari-57. Random 371.2 as in extended dqn_zoo-style tables; human 3004.3 is one
    # published extended table's value (its author's own play). UNCONFIRMED.
    "Pooyan": (371.2, 3004.3),
}

# game: (random, reference), mean raw returns over 1,000 (random) / 100 (reference) episodes,
# default options (sticky 0.1, 10,000-step cap). The reference is a trained DQN: the end of
# each game's 1M-step run that made `data/minatar-1m`, so a normalized score reads "share of a
# trained DQN". See MINATAR_SOURCES.
MINATAR_SCORES: dict[str, tuple[float, float]] = {
    "asterix": (0.475, 7.56),
    "breakout": (0.395, 16.77),
    "freeway": (0.358, 60.32),
    "seaquest": (0.114, 21.44),
    "space_invaders": (4.014, 50.0),
}

MINATAR_SOURCES = {
    "random": "uniform random actions: `scaledql evaluate --suite minatar --policy random "
              "--episodes 1000 --seed 0 --json`",
    "reference": (
        "per game, the online DQN at the end of its 1M-environment-step run, the run whose "
        "every transition is the `claims` study's data (DQN Replay's recipe at MinAtar scale): "
        "`scaledql collect --suite minatar --games all --steps 1000000 --num-envs 8 --out "
        "data/minatar-1m --seed 0 --jobs 2 --snapshot-every 100000 "
        "--dqn-epsilon-decay-steps 100000 --dqn-epsilon-end 0.01 --dqn-learning-starts 5000 "
        "--dqn-replay-capacity 100000 --dqn-update-period 4` (also the study's `data` job), "
        "evaluated with `scaledql evaluate --checkpoint data/minatar-1m/_agents/GAME.pt "
        "--episodes 100 --seed 0`, measured on 2026-11-23 (commit 492fdad). Until then the "
        "reference was a 60k-step CPU DQN or an offline agent on its data (asterix 0.68, "
        "breakout 4.07, freeway 18.9, seaquest 0.41, space_invaders 23.57): barely above "
        "random on two games, so normalized scores from before 2026-11-23 are not comparable."
    ),
}


def _table(suite: str):
    """A suite's reference table: the built-in ones here, a registered suite's own
    ``reference_scores`` (``suites.registered_scores``; empty: raw returns only)."""
    builtin = {"atari": ATARI_SCORES, "minatar": MINATAR_SCORES}.get(suite)
    if builtin is not None:
        return builtin
    from scaledql.suites import registered_scores

    return registered_scores(suite)


def reference_scores(suite: str, game: str) -> tuple[float, float]:
    """(random, reference) for a game; ``UserError`` when the game has no reference scores."""
    table = _table(suite)
    if game not in table:
        raise UserError(f"no reference scores for {suite} game {game!r}: cannot normalize")
    return table[game]


def has_reference(suite: str, game: str) -> bool:
    return game in _table(suite)


def normalize(suite: str, game: str, score: float | np.ndarray) -> float | np.ndarray:
    """(score − random) / (reference − random): 0 is random play, 1 the reference (human)."""
    random, reference = reference_scores(suite, game)
    return (np.asarray(score, dtype=np.float64) - random) / (reference - random)
