"""The callbacks every fit of an :class:`~fer_lightning.models.module.AffectModule` runs with
(it returns them from ``configure_callbacks``): they tell a per-epoch training stream its
epoch, stop on a non-finite loss with the last good weights saved, stamp checkpoints with
the W&B run and SLURM job they belong to, and mark a run that has finished."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from fer_lightning.checkpoints import FINISHED
from fer_lightning.training.callbacks import run_dir
from fer_lightning.training.cluster import slurm_job_id


class DatasetEpoch(L.Callback):
    """A training dataset with ``set_epoch`` (the chunked stream, which draws per epoch) learns
    which epoch this is, also after a resume."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for loader in _loaders(trainer.train_dataloader):
            dataset = getattr(loader, "dataset", None)
            if callable(getattr(dataset, "set_epoch", None)):
                dataset.set_epoch(trainer.current_epoch)


def _loaders(obj):
    """The DataLoaders inside ``obj``: itself, or those of a CombinedLoader, mapping or list."""
    if hasattr(obj, "iterables"):
        obj = obj.iterables
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _loaders(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from _loaders(value)
    elif obj is not None:
        yield obj


class StopOnBadLoss(L.Callback):
    """A NaN/inf training loss ends the run before it is backpropagated: the weights are saved
    first (``<run>/checkpoints/last-good.ckpt``) if they are still finite, and the error says
    where and what to do."""

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        if torch.isfinite(loss):
            return
        where = f"step {trainer.global_step} (epoch {trainer.current_epoch})"
        if all(torch.isfinite(p).all() for p in pl_module.parameters()):
            path = run_dir(trainer) / "checkpoints" / "last-good.ckpt"
            trainer.save_checkpoint(path)
            saved = f"the weights before it are saved in {path}"
        else:
            saved = "the weights are no longer finite; resume from the run's last checkpoint"
        raise FloatingPointError(f"training loss is {loss.item()} at {where}; {saved}. "
                                 "Lower model.lr or check the labels (data check) before resuming.")


class RunIdentity(L.Callback):
    """Checkpoints carry the W&B run id (a resumed run continues that W&B run) and the SLURM job
    id (only that job may resume from its HPC checkpoint)."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        from fer_lightning.training.loggers import (
            wandb_run_id,  # wandb imports only when a run saves
        )

        if run_id := wandb_run_id(trainer):
            checkpoint["wandb_run_id"] = run_id
        if job := slurm_job_id():
            checkpoint["slurm_job_id"] = job


class RunFinished(L.Callback):
    """When a fit ends (not when it is interrupted or fails), ``finished.json`` goes beside its
    checkpoints: the corpus, the task, the best checkpoint and when. ``model.init_from: latest``
    only takes checkpoints of a finished run, so never those of a pretraining still running."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import json
        import time
        from pathlib import Path

        from fer_lightning.io import write_text_atomic

        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        callback = trainer.checkpoint_callback
        folder = Path(callback.dirpath) if callback is not None and callback.dirpath else run_dir(trainer) / "checkpoints"
        if not folder.is_dir():
            return  # nothing was saved: there is no checkpoint to point at
        data = getattr(trainer.datamodule, "hparams", {}) if trainer.datamodule is not None else {}
        record = {"dataset": data.get("dataset"), "root": str(data.get("root")) if data.get("root") else None,
                  "task": getattr(pl_module, "task", None), "best": getattr(callback, "best_model_path", "") or None,
                  "epochs": trainer.current_epoch, "global_step": trainer.global_step,
                  "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_text_atomic(folder / FINISHED, json.dumps(record, indent=1) + "\n")


def fit_guards() -> list[L.Callback]:
    """The callbacks every AffectModule fit needs (see the module docs)."""
    return [DatasetEpoch(), StopOnBadLoss(), RunIdentity(), RunFinished()]
