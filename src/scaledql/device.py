"""Device choice: CUDA when present, else CPU; ``--device`` forces one."""

from __future__ import annotations

from typing import Any

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


def machine_record(device: str | torch.device | None = None) -> dict[str, str | int]:
    """What numbers are computed on: CPU model and vector ISA, cores, torch, device (and its
    GPU's name).
    Runs keep it (``run_folder.record_machine``): another CPU make changes the floating-point
    results, and whether bf16 is native (so the default precision) with it."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if not sep:
                    break  # the first processor's block ends at a blank line
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = info.get("model name", cpu)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    # The model name alone does not tell CPU generations apart ("AMD EPYC" has been an AVX2
    # part, a Zen 4 and a Zen 5 here, at very different speeds); the vector ISA torch uses and
    # the CPU's family/model do.
    record: dict[str, str | int] = {"cpu": cpu, "isa": torch.backends.cpu.get_cpu_capability(),
                                    "cores": os.cpu_count() or 1, "torch": torch.__version__,
                                    "device": str(dev)}
    if "cpu family" in info and "model" in info:
        record["cpu_id"] = f"family {info['cpu family']} model {info['model']}"
    if dev.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(dev)
    return record


def describe_machine(device: str | torch.device | None = None,
                     record: dict[str, Any] | None = None) -> str:
    """One line naming what numbers were computed on (CPU model, cores, torch, device); of
    ``record`` (a ``machine_record``) when given, else of this machine."""
    m = record if record is not None else machine_record(device)
    gpu = f", {m['gpu']}" if m.get("gpu") else ""
    # Records from before the ISA and family/model were kept lack them.
    details = [str(m[k]) for k in ("cpu_id", "isa") if m.get(k)]
    isa = f" ({', '.join(details)})" if details else ""
    return f"{m['cpu']}{isa}, {m['cores']} cores, torch {m['torch']}, device {m['device']}{gpu}"
