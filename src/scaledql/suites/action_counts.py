"""Minimal action-set sizes of the games, as static data.

Listing the suites (``scaledql suites``) and building a ``GameSpec`` need only each game's number
of actions. Reading it from ale-py means loading every ROM into an emulator (about 0.12 s each,
12 s for the 104 games), and MinAtar's gym ids import seaborn; these tables answer at once.
``tests/test_suites.py`` checks every entry against the emulator and the MinAtar environments, and
``ATARI_FOR_ALE`` names the ale-py version they were read from: under any other version the suite
asks the emulator instead, so a changed action set can never be served from here.
"""

from __future__ import annotations

ATARI_FOR_ALE = "0.12.1"

# ALE ROM id → len(ALEInterface.getMinimalActionSet()), read from ale-py 0.12.1.
ATARI_MINIMAL_ACTIONS: dict[str, int] = {
    "adventure": 18, "air_raid": 6, "alien": 18, "amidar": 10, "assault": 7, "asterix": 9,
    "asteroids": 14, "atlantis": 4, "atlantis2": 4, "backgammon": 3, "bank_heist": 18,
    "basic_math": 6, "battle_zone": 18, "beam_rider": 9, "berzerk": 18, "blackjack": 4,
    "bowling": 6, "boxing": 18, "breakout": 4, "carnival": 6, "casino": 4, "centipede": 18,
    "chopper_command": 18, "crazy_climber": 9, "crossbow": 18, "darkchambers": 18, "defender": 18,
    "demon_attack": 6, "donkey_kong": 18, "double_dunk": 18, "earthworld": 18,
    "elevator_action": 18, "enduro": 9, "entombed": 18, "et": 18, "fishing_derby": 18,
    "flag_capture": 18, "freeway": 3, "frogger": 5, "frostbite": 18, "galaxian": 6, "gopher": 8,
    "gravitar": 18, "hangman": 18, "haunted_house": 18, "hero": 18, "human_cannonball": 18,
    "ice_hockey": 18, "jamesbond": 18, "journey_escape": 16, "kaboom": 4, "kangaroo": 18,
    "keystone_kapers": 14, "king_kong": 6, "klax": 18, "koolaid": 9, "krull": 18,
    "kung_fu_master": 14, "laser_gates": 18, "lost_luggage": 9, "mario_bros": 18,
    "miniature_golf": 18, "montezuma_revenge": 18, "mr_do": 10, "ms_pacman": 9,
    "name_this_game": 6, "othello": 10, "pacman": 5, "phoenix": 8, "pitfall": 18, "pitfall2": 18,
    "pong": 6, "pooyan": 6, "private_eye": 18, "qbert": 6, "riverraid": 18, "road_runner": 18,
    "robotank": 18, "seaquest": 18, "sir_lancelot": 6, "skiing": 3, "solaris": 18,
    "space_invaders": 6, "space_war": 18, "star_gunner": 18, "superman": 18, "surround": 5,
    "tennis": 18, "tetris": 5, "tic_tac_toe_3d": 10, "time_pilot": 10, "trondead": 18,
    "turmoil": 12, "tutankham": 8, "up_n_down": 6, "venture": 18, "video_checkers": 5,
    "video_chess": 10, "video_cube": 18, "video_pinball": 9, "wizard_of_wor": 10,
    "word_zapper": 18, "yars_revenge": 18, "zaxxon": 18,
}

# MinAtar game → action_space.n of its gymnasium "-v1" id (each game's minimal action set).
MINATAR_ACTIONS: dict[str, int] = {
    "asterix": 5, "breakout": 3, "freeway": 3, "seaquest": 6, "space_invaders": 4,
}
