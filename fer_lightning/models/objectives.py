"""What each training task is to the model, in one object per task: the outputs the head
predicts, the loss, the evaluation metrics and the names they are logged under. The model
holds one (``AffectModule.objective``) instead of branching on the task's name.

- ``finetune`` (:class:`AffectRegression`): continuous targets (valence, arousal) per frame,
  trained by 1 - CCC on the frames that show a face; scored on every labelled frame, as the
  challenges score (frames without a face predicted from their neighbours, see
  :mod:`fer_lightning.metrics.faceless`): logs ``s/ccc_<target>`` (pooled over the split's
  frames), ``s/ccc_mean``, ``s/seq_ccc_<target>`` (mean over videos), and beside them
  ``s/face_ccc_<target>`` and ``s/face_ccc_mean`` (the labelled frames that show a face only)
  and ``s/face_coverage`` (their share of the labelled frames).
- ``pretrain`` (:class:`EmotionClassification`): emotion class logits per frame, masked
  cross-entropy; logs ``s/acc`` and ``s/f1_macro``.
- ``selfsup`` (:class:`SelfSupervision`): no labels; the module's self-supervised method gives
  the loss (``s/loss``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from fer_lightning.metrics.ccc import SequenceConcordanceCC
from fer_lightning.metrics.functional import ccc_loss

Log = Callable[..., None]  # LightningModule.log


class AffectRegression:
    """``finetune``: continuous affect per frame, trained and scored by CCC."""

    task = "finetune"
    continuous = True
    monitor = "ccc_mean"  # the figure a run is judged by (progress bar, checkpoints)

    def __init__(self, target_names: Sequence[str], class_names: Sequence[str], faceless: str = "interpolate") -> None:
        self.output_names = tuple(target_names)
        self.faceless = faceless

    def loss(self, preds: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
        return ccc_loss(preds, targets, mask)

    def make_metrics(self) -> nn.ModuleDict:
        # one metric keeps every frame once (keyed by video and frame index), so the pooled
        # and per-video CCC ignore DistributedSampler padding and window overlaps alike
        return nn.ModuleDict({"ccc": SequenceConcordanceCC(len(self.output_names), faceless=self.faceless)})

    def update(self, metrics: nn.ModuleDict, preds: Tensor, batch: dict) -> None:
        # every labelled frame is scored; batches without the flags (older datasets) score the loss's frames
        metrics["ccc"].update(preds, batch["targets"], batch["video_id"], batch["frame_index"],
                              batch.get("labelled", batch["mask"]), batch.get("has_face"))

    def log_epoch(self, metrics: nn.ModuleDict, stage: str, log: Log) -> None:
        figures = metrics["ccc"].summary()  # one gather and one stitch for all of them
        pooled, per_seq, face = figures["pooled"], figures["per_video"], figures["face_pooled"]
        for i, name in enumerate(self.output_names):
            log(f"{stage}/ccc_{name}", pooled[i].float())
            log(f"{stage}/seq_ccc_{name}", per_seq[i].float())
            log(f"{stage}/face_ccc_{name}", face[i].float())
        log(f"{stage}/ccc_mean", pooled.mean().float(), prog_bar=True)
        log(f"{stage}/face_ccc_mean", face.mean().float())
        log(f"{stage}/face_coverage", figures["face_coverage"].float())

    def predictions(self, outputs: Tensor) -> Tensor:
        return outputs


class EmotionClassification:
    """``pretrain``: emotion classes per frame, masked cross-entropy; accuracy and macro-F1 on
    the labelled frames that show a face."""

    task = "pretrain"
    continuous = False
    monitor = "f1_macro"

    def __init__(self, target_names: Sequence[str], class_names: Sequence[str], faceless: str = "interpolate") -> None:
        self.output_names = tuple(class_names)

    @staticmethod
    def _labels(targets: Tensor, mask: Tensor) -> Tensor:
        return torch.where(mask, targets, torch.full_like(targets, -1)).reshape(-1)  # -1: not scored

    def loss(self, preds: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
        labels = self._labels(targets, mask)
        if not (labels >= 0).any():
            return preds.sum() * 0.0
        return F.cross_entropy(preds.reshape(-1, preds.shape[-1]).float(), labels, ignore_index=-1)

    def make_metrics(self) -> nn.ModuleDict:
        c = len(self.output_names)
        return nn.ModuleDict({"acc": MulticlassAccuracy(c, average="micro", ignore_index=-1),
                              "f1_macro": MulticlassF1Score(c, average="macro", ignore_index=-1)})

    def update(self, metrics: nn.ModuleDict, preds: Tensor, batch: dict) -> None:
        labels, logits = self._labels(batch["targets"], batch["mask"]), preds.reshape(-1, preds.shape[-1])
        for metric in metrics.values():
            metric.update(logits, labels)

    def log_epoch(self, metrics: nn.ModuleDict, stage: str, log: Log) -> None:
        for name, metric in metrics.items():
            log(f"{stage}/{name}", metric.compute(), prog_bar=name == self.monitor)

    def predictions(self, outputs: Tensor) -> Tensor:
        return outputs.softmax(-1)  # class probabilities


class SelfSupervision:
    """``selfsup``: no labels; the loss is the self-supervised method's
    (:mod:`fer_lightning.models.selfsup`), computed by the module, and ``s/loss`` is the figure."""

    task = "selfsup"
    continuous = False
    monitor = "loss"

    def __init__(self, target_names: Sequence[str], class_names: Sequence[str], faceless: str = "interpolate") -> None:
        self.output_names = ()

    def make_metrics(self) -> nn.ModuleDict:
        return nn.ModuleDict()

    def update(self, metrics: nn.ModuleDict, preds: Tensor, batch: dict) -> None:
        pass

    def log_epoch(self, metrics: nn.ModuleDict, stage: str, log: Log) -> None:
        pass

    def predictions(self, outputs: Tensor) -> Tensor:
        return outputs  # the face features


OBJECTIVES = {cls.task: cls for cls in (AffectRegression, EmotionClassification, SelfSupervision)}
