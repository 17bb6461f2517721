"""Device choice: CUDA when present, else CPU; ``--device`` forces one."""

from __future__ import annotations

import torch

from scaledql.errors import UserError


def pick_device(name: str | None = None) -> torch.device:
    """Return ``torch.device(name)``, or the best available device when ``name`` is None/"auto"."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and \
            device.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA "
                        "device(s)")
    return device


def describe_machine(device: str | None = None) -> str:
    """One line naming what numbers were computed on (CPU model, cores, torch, device)."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    dev = pick_device(device)
    gpu = f", {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else ""
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, device {dev}{gpu}"
