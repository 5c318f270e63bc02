"""Checkpoints written atomically: a run killed while saving (a SLURM preemption that outlives
its grace period, an out-of-memory kill) leaves the previous checkpoint intact and only a
stray ``.tmp`` file beside it, never a truncated ``.ckpt`` that a requeued job would fail on."""

from __future__ import annotations

from typing import Any

from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from fer_lightning.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that saves local files under a temporary name, then renames."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        protocol = get_filesystem(path).protocol
        if "file" not in (protocol if isinstance(protocol, tuple) else (protocol,)):
            return super().save_checkpoint(checkpoint, path, storage_options)  # object stores: one PUT
        with atomic_path(path, keep_suffix=False) as tmp:
            super().save_checkpoint(checkpoint, str(tmp), storage_options)
        return None
