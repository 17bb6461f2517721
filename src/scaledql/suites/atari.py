"""The Atari suite: real Atari 2600 games through ale-py, with the DQN-Replay/Dopamine conventions.

Preprocessing (Machado et al., 2018; Dopamine's ``atari_lib``):
- 4 emulator frames per agent step, max-pooled over the last two (flicker removal);
- grayscale, resized to 84×84 with area interpolation (``cv2.INTER_AREA``);
- 4 most recent frames stacked, zero frames before an episode's first (Dopamine's agent state);
- sticky actions, p = 0.25, applied by the emulator on every frame; no no-op starts;
- episodes truncated at 27,000 agent steps (108,000 frames); life loss is not terminal;
- raw game score as reward (clipping to [−1, 1] is the learner's business, not the game's);
- each game's minimal action set, or the full 18 actions; ALE modes and difficulties selectable.
"""

from __future__ import annotations

import functools
import re

import gymnasium as gym
import numpy as np

from scaledql.errors import UserError
from scaledql.suites.action_counts import ATARI_FOR_ALE, ATARI_MINIMAL_ACTIONS
from scaledql.suites.base import EnvOptions, GameSpec, normalize_key, resolve_from
from scaledql.suites.wrappers import stack_frames

DEFAULT_STICKY = 0.25
DEFAULT_MAX_EPISODE_STEPS = 27_000
FRAME_SKIP = 4
SCREEN = 84
STACK = 4
RENDER_SCALE = 2  # 210×160 → 420×320: room for play's overlay text

# Kumar et al. (2023), Appendix: the 40 training games and the 5 held-out games.
TRAIN_40 = [
    "Amidar", "Assault", "Asterix", "Atlantis", "BankHeist", "BattleZone", "BeamRider", "Boxing",
    "Breakout", "Carnival", "Centipede", "ChopperCommand", "CrazyClimber", "DemonAttack",
    "DoubleDunk", "Enduro", "FishingDerby", "Freeway", "Frostbite", "Gopher", "Gravitar", "Hero",
    "IceHockey", "Jamesbond", "Kangaroo", "Krull", "KungFuMaster", "NameThisGame", "Phoenix",
    "Pooyan", "Qbert", "Riverraid", "Robotank", "Seaquest", "TimePilot", "UpNDown",
    "VideoPinball", "WizardOfWor", "YarsRevenge", "Zaxxon",
]
HELD_OUT_5 = ["Alien", "MsPacman", "Pong", "SpaceInvaders", "StarGunner"]


@functools.cache
def _registry() -> dict[str, str]:
    """Canonical game name (``SpaceInvaders``) → ALE ROM id (``space_invaders``). Registers
    the ALE environments and keeps the emulator's banner ("A.L.E: Arcade Learning Environment
    ... [Powered by Stella]", printed by every new ALEInterface at its default log level) off
    stderr."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    gym.register_envs(ale_py)
    out = {}
    for env_id, env_spec in gym.registry.items():
        match = re.fullmatch(r"ALE/(\w+)-v5", env_id)
        if match:
            out[match.group(1)] = env_spec.kwargs["game"]
    return out


class AddChannel(gym.ObservationWrapper):
    """uint8[84, 84] → uint8[1, 84, 84]: every suite's frames are (C, H, W)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        h, w = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (1, h, w), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[None]


class AtariSuite:
    name = "atari"
    default_sticky = DEFAULT_STICKY
    default_max_episode_steps = DEFAULT_MAX_EPISODE_STEPS
    binary_frames = False
    # scores are human-normalized, as the paper's: its reference point for a behaviour score
    variant_options = "--mode/--difficulty"  # what makes a variant (a ROM's other game)
    data_card_note = ("Paper reference: the sub-optimal dataset (the first 20% of each DQN "
                      "Replay run) has a behaviour policy at {paper_behaviour_score:.0%} "
                      "human-normalized.")

    def __init__(self) -> None:
        self._canonical = {normalize_key(g): g for g in _registry()}

    def games(self) -> list[str]:
        return sorted(_registry())

    def named_lists(self) -> dict[str, list[str]]:
        return {
            "default": list(TRAIN_40),
            "train40": list(TRAIN_40),
            "heldout5": list(HELD_OUT_5),
            "all": self.games(),
        }

    def resolve_games(self, spec: str | None) -> list[str]:
        return resolve_from(self.name, self.named_lists(), spec, self._canonical)

    def rom_id(self, game: str) -> str:
        try:
            return _registry()[game]
        except KeyError:
            raise UserError(f"unknown atari game {game!r} (see `scaledql suites`)") from None

    def available_modes(self, game: str) -> tuple[list[int], list[int]]:
        """(modes, difficulties) the ROM supports, read from the emulator."""
        return _modes_and_difficulties(self.rom_id(game))

    def _check(self, game: str, options: EnvOptions | None) -> EnvOptions:
        options = options or EnvOptions()
        self.rom_id(game)
        if options.reversed_controls:
            raise UserError("--reversed-controls applies to the minatar suite only")
        if options.mode is not None or options.difficulty is not None:
            modes, difficulties = self.available_modes(game)
            if options.mode is not None and options.mode not in modes:
                raise UserError(f"{game} has no mode {options.mode} (available: {modes})")
            if options.difficulty is not None and options.difficulty not in difficulties:
                raise UserError(
                    f"{game} has no difficulty {options.difficulty} (available: {difficulties})"
                )
        return options

    def spec(self, game: str, options: EnvOptions | None = None) -> GameSpec:
        options = self._check(game, options)
        return GameSpec(
            self.name, game, _num_actions(self.rom_id(game), options.full_action_space),
            (1, SCREEN, SCREEN), stack=STACK,
        )

    def make_env(self, game: str, options: EnvOptions | None = None) -> gym.Env:
        options = self._check(game, options)
        _registry()  # registered, and the banner off
        sticky = DEFAULT_STICKY if options.sticky is None else options.sticky
        env = gym.make(
            f"ALE/{game}-v5",
            frameskip=1,  # frame skipping and max-pooling happen in AtariPreprocessing
            repeat_action_probability=sticky,
            full_action_space=options.full_action_space,
            mode=options.mode,
            difficulty=options.difficulty,
            max_num_frames_per_episode=None,
            max_episode_steps=None,
        )
        env = gym.wrappers.AtariPreprocessing(
            env, noop_max=0, frame_skip=FRAME_SKIP, screen_size=SCREEN,
            terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False,
        )
        env = stack_frames(AddChannel(env), STACK)
        cap = options.max_episode_steps or DEFAULT_MAX_EPISODE_STEPS
        return gym.wrappers.TimeLimit(env, max_episode_steps=cap)

    def render(self, env: gym.Env, obs: np.ndarray) -> np.ndarray:
        """The emulator's colour screen (not the 84×84 grayscale the agent sees), doubled."""
        screen = env.unwrapped.ale.getScreenRGB()
        return screen.repeat(RENDER_SCALE, 0).repeat(RENDER_SCALE, 1)

    def make_vector_env(
        self, game: str, num_envs: int, options: EnvOptions | None = None
    ) -> gym.vector.VectorEnv:
        options = self._check(game, options)
        if options.mode is None and options.difficulty is None:
            return self._ale_vector_env(game, num_envs, options)
        # ale-py's vector env cannot select modes/difficulties: fall back to gymnasium's.
        return gym.vector.SyncVectorEnv(
            [lambda: self.make_env(game, options) for _ in range(num_envs)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )

    def _ale_vector_env(self, game: str, num_envs: int, options: EnvOptions) -> gym.vector.VectorEnv:
        """ale-py's C++ vector env: the same preprocessing, stepped in native threads."""
        from ale_py import AtariVectorEnv

        sticky = DEFAULT_STICKY if options.sticky is None else options.sticky
        cap = options.max_episode_steps or DEFAULT_MAX_EPISODE_STEPS
        return AtariVectorEnv(
            self.rom_id(game),
            num_envs,
            repeat_action_probability=sticky,
            full_action_space=options.full_action_space,
            max_num_frames_per_episode=cap * FRAME_SKIP,
            autoreset_mode="SameStep",
            img_height=SCREEN,
            img_width=SCREEN,
            grayscale=True,
            stack_num=STACK,
            frameskip=FRAME_SKIP,
            maxpool=True,
            noop_max=0,
            episodic_life=False,
            reward_clipping=False,
            use_fire_reset=False,
        )


@functools.cache
def _ale(rom_id: str):
    from ale_py import ALEInterface, LoggerMode, roms

    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.loadROM(roms.get_rom_path(rom_id))
    return ale


def _modes_and_difficulties(rom_id: str) -> tuple[list[int], list[int]]:
    ale = _ale(rom_id)
    return [int(m) for m in ale.getAvailableModes()], [int(d) for d in ale.getAvailableDifficulties()]


def _num_actions(rom_id: str, full_action_space: bool) -> int:
    if full_action_space:
        return 18
    # The static table saves loading the ROM (12 s for `scaledql suites`); it is trusted only
    # under the ale-py version it was read from (``action_counts``), else the emulator answers.
    if _ale_version() == ATARI_FOR_ALE and rom_id in ATARI_MINIMAL_ACTIONS:
        return ATARI_MINIMAL_ACTIONS[rom_id]
    return len(_ale(rom_id).getMinimalActionSet())


@functools.cache
def _ale_version() -> str:
    import ale_py

    return str(ale_py.__version__)
