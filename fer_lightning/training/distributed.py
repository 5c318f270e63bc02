"""Gradient averaging that DistributedDataParallel does not do itself."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def average_gradients(params: Sequence[nn.Parameter], world_size: int) -> None:
    """Replace each parameter's gradient by its mean over the ``world_size`` ranks of the
    default process group: one all-reduce of the gradients flattened together. Parameters
    without a gradient are left alone; nothing happens on one process."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or world_size < 2 or not torch.distributed.is_initialized():
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world_size
    for g, mean in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(mean.view_as(g))
