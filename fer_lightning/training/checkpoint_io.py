"""Checkpoints written atomically: a run killed while saving (a SLURM preemption that outlives
its grace period, an out-of-memory kill) leaves the previous checkpoint intact and only a
stray ``.tmp`` file beside it (removed when that checkpoint is next saved), never a truncated
``.ckpt`` that a requeued job would fail on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from fer_lightning.io import atomic_path, probe_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that saves local files under a temporary name, then renames."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        protocol = get_filesystem(path).protocol
        if "file" not in (protocol if isinstance(protocol, tuple) else (protocol,)):
            return super().save_checkpoint(checkpoint, path, storage_options)  # object stores: one PUT
        with atomic_path(path, keep_suffix=False) as tmp:
            try:
                super().save_checkpoint(checkpoint, str(tmp), storage_options)
            except (OSError, RuntimeError) as err:
                # torch.save on a full disk says "unexpected pos": name the cause and the file
                cause = probe_write(Path(path).parent)
                if cause is None:
                    raise
                raise OSError(cause.errno, cause.strerror, str(path)) from err
        # a run killed mid-save left its temporary file (as large as the checkpoint): gone once
        # this name is saved again (only rank zero writes a given checkpoint)
        final = Path(path)
        for stale in final.parent.glob(f".{final.stem}.*{final.suffix}.tmp"):
            stale.unlink(missing_ok=True)
        return None
