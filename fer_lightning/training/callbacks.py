"""Callbacks: per-frame predictions of evaluation runs written as CSV and plotted as traces; a
ModelCheckpoint whose ``last.ckpt`` is the last epoch."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from fer_lightning.evaluation.collect import FrameCollector
from fer_lightning.evaluation.plots import plot_traces
from fer_lightning.io import atomic_path


def run_dir(trainer: L.Trainer) -> Path:
    """Where this run's files go: the first logger's versioned folder, else the root dir.

    Read from the logger itself: ``trainer.log_dir`` broadcasts from rank zero, a collective
    that deadlocks when only rank zero asks."""
    log_dir = getattr(trainer.logger, "log_dir", None) if trainer.logger is not None else None
    return Path(log_dir or trainer.default_root_dir)


class ModelCheckpoint(L.pytorch.callbacks.ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with ``save_last`` meaning the newest epoch again.

    Lightning 2.6 writes ``last.ckpt`` only at steps where a top-k checkpoint is also saved, so
    with a monitored metric ``last.ckpt`` became a copy of the best epoch, and a run resumed
    from it (``--ckpt_path=last``) would train again the epochs after the best one. Here
    ``last.ckpt`` is also written whenever the parent skipped it."""

    def _save_last_if_skipped(self, trainer: L.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_skipped(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_skipped(trainer)


class TracePlot(L.Callback):
    """After ``test`` (and optionally each validation), write per-frame predictions and a plot.

    Files in the run folder: ``predictions_<stage>.csv`` (video_id, frame_index, labelled,
    has_face, then ``pred_<target>`` (frames without a face filled as the metric fills them)
    and ``true_<target>``) and ``traces_<stage>.png``, predicted against
    true traces over time for ``num_videos`` held-out videos. Only for ``finetune`` models.

    Args:
        num_videos: videos drawn in the plot (the first by id).
        on_validation: also write them after every validation epoch (last one wins).
    """

    def __init__(self, num_videos: int = 1, on_validation: bool = False) -> None:
        self.num_videos = num_videos
        self.on_validation = on_validation
        self._frames = FrameCollector()
        self.written: dict[str, Path] = {}

    def _collect(self, pl_module, outputs, batch) -> None:
        if not pl_module.objective.continuous or outputs is None:
            return
        scored = batch.get("labelled", batch["mask"])
        face = batch.get("has_face")
        self._frames.add(batch["video_id"], batch["frame_index"].cpu().numpy(), scored.cpu().numpy(),
                         outputs["preds"].float().cpu().numpy(), batch["targets"].float().cpu().numpy(),
                         None if face is None else face.cpu().numpy())

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(pl_module, outputs, batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.on_validation and not trainer.sanity_checking:
            self._collect(pl_module, outputs, batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module, "test")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.on_validation and not trainer.sanity_checking:
            self._write(trainer, pl_module, "val")

    def _write(self, trainer, pl_module, stage: str) -> None:
        frames, self._frames = self._frames, FrameCollector()
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            # every rank scored a share of the windows: rank zero writes them all
            shares = [None] * trainer.world_size
            torch.distributed.all_gather_object(shares, dict(frames.parts))
            frames = FrameCollector()
            for share in shares:
                frames.merge(share or {})
        if not frames or not trainer.is_global_zero:
            return
        names = list(pl_module.target_names)
        # overlapping windows: their mean; frames without a face: filled, both as the metric does
        videos = frames.stitched(getattr(pl_module.objective, "faceless", "model"))
        out = run_dir(trainer)
        out.mkdir(parents=True, exist_ok=True)
        csv = out / f"predictions_{stage}.csv"
        header = (["video_id", "frame_index", "labelled", "has_face"] + [f"pred_{n}" for n in names]
                  + [f"true_{n}" for n in names])
        with atomic_path(csv) as tmp, open(tmp, "w") as f:
            f.write(",".join(header) + "\n")
            for vid, (idx, mask, pred, true, face) in videos.items():
                for i in range(len(idx)):
                    vals = ",".join(f"{x:.7f}" for x in (*pred[i], *true[i]))
                    f.write(f"{vid},{idx[i]},{int(mask[i])},{int(face[i])},{vals}\n")
        png = out / f"traces_{stage}.png"
        plot_traces(videos, names, png, self.num_videos, fps=_fps(trainer, stage))
        self.written = {"csv": csv, "png": png}
        for logger in trainer.loggers:  # the same picture in W&B, one per validation epoch
            if callable(getattr(logger, "log_image", None)):
                logger.log_image(key=f"{stage}/traces", images=[str(png)], step=trainer.global_step,
                                 caption=[f"epoch {trainer.current_epoch}"])


def _fps(trainer, split: str) -> float | None:
    """Frame rate of the split's first video, to put seconds on the time axis."""
    records = getattr(getattr(trainer, "datamodule", None), "split_records", None)
    try:
        return float(records(split)[0].fps) if records else None
    except (KeyError, IndexError):
        return None
