"""The update metrics of the offline loop between two log rows, kept on the device.

Per step the update's metrics stay on the device and are summed there; they are read back
(one host-device synchronisation) only when a row is logged or a checkpoint is due, which is
also when a non-finite loss is noticed: the run stops before writing any checkpoint after it,
naming the first bad step, so the last good checkpoint is kept.
"""

from __future__ import annotations

from pathlib import Path

import torch

from scaledql.errors import UserError


class NonFiniteLoss(UserError):
    pass


class DeviceWindow:
    """Sums of the update metrics since the last log, kept on the device, and the first step
    whose loss was not finite (-1 while none was)."""

    def __init__(self, device: torch.device, step: int) -> None:
        self.names: list[str] = []
        self.sums: torch.Tensor | None = None
        self.count = 0
        self.step = torch.tensor(step, device=device)
        self.first_bad_step = torch.tensor(-1, device=device)
        self.first_bad_loss = torch.tensor(0.0, device=device)

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        if not self.names:
            self.names = list(metrics)
        values = torch.stack([metrics[k].detach().float() for k in self.names])
        self.sums = values if self.sums is None else self.sums + values
        self.count += 1
        self.step += 1
        loss = metrics["loss"].detach().float()
        bad = ~torch.isfinite(loss) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(bad, self.step, self.first_bad_step)
        self.first_bad_loss = torch.where(bad, loss, self.first_bad_loss)

    def check_finite(self, checkpoint: Path) -> None:
        step = int(self.first_bad_step.item())
        if step >= 0:
            raise NonFiniteLoss(
                f"loss became {self.first_bad_loss.item()} at step {step}; stopped. The last "
                f"good checkpoint ({checkpoint}) is kept: try a lower learning rate")

    def take(self) -> dict[str, float]:
        """Means since the last take (one device→host copy), and reset."""
        if self.sums is None:
            return {}
        means = (self.sums / self.count).tolist()
        self.sums, self.count = None, 0
        return dict(zip(self.names, means, strict=True))
