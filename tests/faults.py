"""Faults the scale-out tests inject through the CLI (``--trainer.callbacks+=faults.ExitOnRank``,
with this folder on PYTHONPATH): a rank that dies mid-training, as an out-of-memory kill or a
lost node would end it."""

from __future__ import annotations

import os

import lightning as L


class ExitOnRank(L.Callback):
    """End this process abruptly (no clean-up, no exception) on ``rank`` at ``step``."""

    def __init__(self, rank: int = 1, step: int = 2, code: int = 3) -> None:
        self.rank, self.step, self.code = rank, step, code

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            print(f"faults.ExitOnRank: rank {self.rank} exits with code {self.code} at step {trainer.global_step}",
                  flush=True)
            os._exit(self.code)
