"""Callbacks the scale-out tests inject through the CLI (``--trainer.callbacks+=faults.ExitOnRank``,
with this folder on PYTHONPATH): a rank that dies mid-training, as an out-of-memory kill or a
lost node would end it; every rank's weights saved, to compare the ranks."""

from __future__ import annotations

import os

import lightning as L
import torch


class ExitOnRank(L.Callback):
    """End this process abruptly (no clean-up, no exception) on ``rank`` at ``step``."""

    def __init__(self, rank: int = 1, step: int = 2, code: int = 3) -> None:
        self.rank, self.step, self.code = rank, step, code

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            print(f"faults.ExitOnRank: rank {self.rank} exits with code {self.code} at step {trainer.global_step}",
                  flush=True)
            os._exit(self.code)


class SaveRankWeights(L.Callback):
    """Each rank writes its model's state to ``dirpath/rank<R>-epoch<E>.pt`` after every epoch."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        os.makedirs(self.dirpath, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, os.path.join(self.dirpath, f"rank{trainer.global_rank}-epoch{trainer.current_epoch}.pt"))


class SignalAtEpoch(L.Callback):
    """This process sends itself ``signum`` (9: SIGKILL, as ``kill -9`` or an out-of-memory kill;
    15: SIGTERM, as a scheduler) when training epoch ``epoch`` starts, i.e. after the previous
    epoch's checkpoints are written."""

    def __init__(self, epoch: int = 1, signum: int = 9, delay: float = 0.0) -> None:
        self.epoch, self.signum, self.delay = epoch, signum, delay

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            import signal
            import time

            time.sleep(self.delay)  # e.g. for the loggers' periodic writes
            print(f"faults.SignalAtEpoch: signal {self.signum} at epoch {self.epoch}", flush=True)
            os.kill(os.getpid(), signal.Signals(self.signum))


class InfGradOnRank(L.Callback):
    """An fp16 overflow on one rank only: at optimizer step ``step`` the first encoder gradient
    of rank ``rank`` becomes inf, right after backward (callbacks' ``on_after_backward`` runs
    before the model's own)."""

    def __init__(self, rank: int = 0, step: int = 1) -> None:
        self.rank, self.step = rank, step

    def on_after_backward(self, trainer, pl_module) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            grad = next(p.grad for p in pl_module.net.encoder.parameters() if p.grad is not None)
            grad[(0,) * grad.dim()] = float("inf")
            print(f"faults.InfGradOnRank: inf gradient on rank {self.rank} at step {self.step}", flush=True)


def _mixed_precision_base():
    from lightning.pytorch.plugins.precision import MixedPrecision

    return MixedPrecision


class CPUGradScaler(_mixed_precision_base()):
    """16-mixed with a real GradScaler on the CPU (Lightning's CPU 16-mixed has none), so that
    the scaler's unscale, inf check and skipped step run as they do on a GPU."""

    def __init__(self, init_scale: float = 256.0) -> None:
        super().__init__("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=init_scale))

    def optimizer_step(self, optimizer, model, closure, **kwargs):
        scale = self.scaler.get_scale()
        out = super().optimizer_step(optimizer, model=model, closure=closure, **kwargs)
        if self.scaler.get_scale() < scale:  # the scaler found inf or NaN: the step was skipped
            print(f"faults.CPUGradScaler: rank {model.trainer.global_rank} skipped the step at "
                  f"{model.trainer.global_step}", flush=True)
        return out
