"""Observation wrappers more than one suite uses: every suite's observations end as
``uint8[S*C, H, W]`` (``suites.base``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from scaledql.errors import UserError

ON = 255  # a set boolean cell: every suite's pixels mean the same to a network scaling by 1/255


class MergeStack(gym.ObservationWrapper):
    """uint8[S, C, H, W] → uint8[S*C, H, W], oldest frame first."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        s, c, h, w = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (s * c, h, w), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation).reshape(self.observation_space.shape)


def stack_frames(env: gym.Env, stack: int) -> gym.Env:
    """``stack`` most recent frames on the channel axis, zero frames before an episode's first
    (Dopamine's agent state; the sampler re-stacks stored frames the same way)."""
    if stack == 1:
        return env
    env = gym.wrappers.FrameStackObservation(env, stack, padding_type="zero")
    return MergeStack(env)


def image_layout(shape: tuple[int, ...], layout: str = "auto") -> str:
    """``hw``, ``hwc`` or ``chw`` for an image space's shape. ``auto``: 2 axes are ``hw``; 3
    are ``hwc`` (gymnasium's convention for images) unless only the first axis is channel-sized
    (at most 4)."""
    if len(shape) == 2:
        return "hw"
    if len(shape) != 3:
        raise UserError(f"observations of shape {shape} are not images (H, W), (H, W, C) or "
                        "(C, H, W)")
    if layout in ("hwc", "chw"):
        return layout
    if layout != "auto":
        raise ValueError(f"layout must be auto, hwc or chw, got {layout!r}")
    return "chw" if shape[0] <= 4 < shape[-1] else "hwc"


class ImageFrames(gym.ObservationWrapper):
    """Any uint8 or boolean image observation → one uint8[C, H, W] frame (channels first, as
    the store keeps frames): booleans become 0/255, ``grayscale`` averages RGB to one channel
    with the ITU-R 601 luma weights, ``size`` (H, W) resizes with area
    interpolation (as the Atari suite's 84×84)."""

    def __init__(self, env: gym.Env, *, layout: str = "auto", grayscale: bool = False,
                 size: tuple[int, int] | None = None):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or space.dtype not in (np.uint8, np.bool_):
            raise UserError(f"observations must be uint8 or boolean images, the environment's "
                            f"space is {space}")
        self.layout = image_layout(space.shape, layout)
        h, w, c = self._hwc(np.zeros(space.shape, space.dtype)).shape
        if grayscale and c not in (1, 3):
            raise UserError(f"grayscale needs 1 or 3 channels (RGB), the images have {c}")
        self.grayscale = grayscale and c == 3
        self.size = None if size is None or tuple(size) == (h, w) else (int(size[0]), int(size[1]))
        if self.size is not None and min(self.size) < 1:
            raise UserError(f"frame size must be positive, got {size}")
        out_h, out_w = self.size or (h, w)
        self.observation_space = gym.spaces.Box(0, 255, (1 if self.grayscale else c, out_h, out_w),
                                                np.uint8)

    def _hwc(self, obs: np.ndarray) -> np.ndarray:
        if self.layout == "hw":
            return obs[:, :, None]
        return np.moveaxis(obs, 0, -1) if self.layout == "chw" else obs

    def observation(self, observation: np.ndarray) -> np.ndarray:
        img = np.asarray(observation)
        img = img.astype(np.uint8) * ON if img.dtype == np.bool_ else img.astype(np.uint8, copy=False)
        img = self._hwc(img)
        if self.grayscale:
            weights = np.array([0.299, 0.587, 0.114], np.float32)
            img = np.rint(img.astype(np.float32) @ weights).astype(np.uint8)[:, :, None]
        if self.size is not None:
            import cv2

            h, w = self.size
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1)
        return np.ascontiguousarray(np.moveaxis(img, -1, 0))


MIN_PICTURE_WIDTH = 160  # pixels: room for play's overlay text under a small frame


def frame_picture(obs: np.ndarray, channels: int) -> np.ndarray:
    """An observation's newest frame (its last ``channels`` channels) as uint8[H, W, 3],
    scaled up by a whole, even factor to at least ``MIN_PICTURE_WIDTH`` pixels (even sides:
    yuv420p MP4s need them). Three channels are RGB; one is grayscale; any other count shows
    each cell's brightest channel."""
    frame = np.asarray(obs)[-channels:]
    if channels == 3:
        image = np.moveaxis(frame, 0, -1)
    else:
        image = np.repeat(frame.max(0)[..., None], 3, axis=-1)
    scale = 2 * max(1, -(-MIN_PICTURE_WIDTH // (2 * image.shape[1])))
    return np.ascontiguousarray(image.astype(np.uint8).repeat(scale, 0).repeat(scale, 1))
