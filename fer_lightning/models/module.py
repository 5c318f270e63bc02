"""AffectModule: the training logic around :class:`AffectNet` for both stages of the method."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from fer_lightning.checkpoints import latest_checkpoint
from fer_lightning.errors import UserInputError
from fer_lightning.models.affect_net import AffectNet
from fer_lightning.models.net_config import NetworkConfig
from fer_lightning.models.objectives import OBJECTIVES
from fer_lightning.models.selfsup import (
    SelfSupConfig,
    create_method,
    make_views,
    pair_faces,
    view_augment,
)
from fer_lightning.models.transfer import load_encoder, load_parts
from fer_lightning.tasks import EMOTIONS, TASKS
from fer_lightning.training.distributed import average_gradients
from fer_lightning.training.guards import fit_guards

EVAL_STAGES = ("val", "test")


class AffectModule(L.LightningModule):
    """Pretraining (emotion classes, masked cross-entropy) or fine-tuning (masked 1 - CCC).

    Logged per evaluation stage ``s`` in (val, test): ``s/loss``; for ``finetune``
    ``s/ccc_<target>`` (pooled over every labelled frame of the split, as the challenges score),
    ``s/ccc_mean``, ``s/seq_ccc_<target>`` (mean over videos), ``s/face_ccc_<target>``,
    ``s/face_ccc_mean`` (the labelled frames that show a face only) and ``s/face_coverage``;
    for ``pretrain`` ``s/acc`` and ``s/f1_macro``; for ``selfsup`` the loss alone.

    Args:
        task: ``finetune``, ``pretrain`` or ``selfsup`` (linked from the datamodule by the CLI).
        target_names: continuous outputs for ``finetune``; class_names: logits for ``pretrain``.
        net: the network (:class:`~fer_lightning.models.net_config.NetworkConfig`: backbone,
            pretrained, backbone_checkpoint, hidden_size, num_layers, bidirectional, dropout);
            ``model.net.backbone`` and so on in an experiment file.
        lr, weight_decay: AdamW. warmup_steps: linear warm-up, then cosine decay to
            ``min_lr_ratio * lr`` over the run's optimizer steps.
        init_from: a pretraining checkpoint whose ``init_parts`` are loaded before fitting
            starts (not when resuming a run), or ``latest`` for the newest one under
            ``runs/pretrain*``.
        init_parts: ``encoder`` (the face feature extractor) and optionally ``temporal``.
        freeze_backbone: keep the encoder's weights and BatchNorm statistics fixed ...
        unfreeze_backbone_at_epoch: ... until this epoch (None: for the whole run). Under DDP
            the unfrozen encoder's gradients are averaged over the ranks like the rest, before
            a 16-mixed GradScaler checks them (all ranks skip an overflow together); FSDP and
            DeepSpeed are refused.
        backbone_lr_scale: the encoder's learning rate relative to ``lr`` (e.g. 0.1).
        compile_backbone: ``torch.compile`` the timm backbone in place when training starts
            (the LSTM stays eager: cuDNN's RNN breaks graphs); checkpoints keep the same keys.
        selfsup: for ``task: selfsup``, the method and its settings
            (:class:`~fer_lightning.models.selfsup.SelfSupConfig`: ``method`` simclr, vicreg or
            mae, ...); the encoder alone learns, so ``net.num_layers`` must be 0.
        faceless: how a scored frame without a face is predicted: ``interpolate`` (between
            the nearest face frames' predictions), ``hold`` (the last face frame's) or ``model``
            (the model's output on the black frame); see :mod:`fer_lightning.metrics.faceless`.
    """

    def __init__(
        self,
        task: str = "finetune",
        target_names: Sequence[str] = ("valence", "arousal"),
        class_names: Sequence[str] = EMOTIONS,
        net: NetworkConfig = NetworkConfig(),  # noqa: B008 - frozen: one shared default is safe
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.01,
        init_from: str | None = None,
        init_parts: Sequence[str] = ("encoder",),
        freeze_backbone: bool = False,
        unfreeze_backbone_at_epoch: int | None = None,
        backbone_lr_scale: float = 1.0,
        compile_backbone: bool = False,
        faceless: str = "interpolate",
        selfsup: SelfSupConfig | None = None,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise UserInputError(f"model.task must be one of {TASKS}, got {task!r}")
        for name, value, ok, what in (
                ("lr", lr, lr > 0, "> 0"), ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
                ("warmup_steps", warmup_steps, warmup_steps >= 0, ">= 0"),
                ("min_lr_ratio", min_lr_ratio, 0 <= min_lr_ratio <= 1, "in [0, 1]"),
                ("backbone_lr_scale", backbone_lr_scale, backbone_lr_scale >= 0, ">= 0"),
                ("unfreeze_backbone_at_epoch", unfreeze_backbone_at_epoch,
                 unfreeze_backbone_at_epoch is None or unfreeze_backbone_at_epoch >= 0, ">= 0 or null")):
            if not ok:
                raise UserInputError(f"model.{name} must be {what}, got {value}")
        net = NetworkConfig.of(net)
        ssl = SelfSupConfig.of(selfsup) if task == "selfsup" else None
        if ssl is not None and net.num_layers != 0:
            raise UserInputError("task selfsup trains the face feature extractor alone: set model.net.num_layers: 0 "
                                 "(fine-tuning then trains its own temporal model)")
        self.save_hyperparameters()
        self.hparams.net = net.as_dict()  # plain data: checkpoints load with weights_only
        self.hparams.selfsup = ssl.as_dict() if ssl is not None else None
        self.task = task
        self.target_names = tuple(target_names)
        self.class_names = tuple(class_names)
        self.objective = OBJECTIVES[task](self.target_names, self.class_names, faceless)
        # a run that loads its encoder from a pretraining checkpoint never needs the hub's weights
        self.net = AffectNet.from_config(net, max(1, len(self.objective.output_names)),
                                         pretrained=net.pretrained and not init_from)
        self.selfsup = self.views = None
        if ssl is not None:  # the encoder's features are the output; the method holds its heads
            self.net.head = nn.Identity()
            self.selfsup = create_method(ssl, self.net.encoder)
            self.views = view_augment(ssl)
        self.metrics = nn.ModuleDict({s: self.objective.make_metrics() for s in EVAL_STAGES})
        self.loaded_from: str | None = None
        self._last_batch_end: float | None = None
        self._backbone_frozen = False
        if freeze_backbone:
            self._set_backbone_trainable(False)

    def configure_model(self) -> None:
        # nn.Module.compile works in place: parameter names, and so checkpoints, do not change
        if self.hparams.get("compile_backbone") and not getattr(self, "_compiled", False):
            self.net.encoder.model.compile()
            self._compiled = True

    def setup(self, stage: str) -> None:
        hp = self.hparams
        resuming = self._trainer is not None and self.trainer.ckpt_path is not None
        if stage == "fit" and hp.init_from and not resuming:
            dataset = getattr(getattr(self.trainer, "datamodule", None), "hparams", {}).get("dataset")
            # latest: the newest finished pretraining run of the same kind of corpus (synthetic or real)
            path = (latest_checkpoint(synthetic=None if dataset is None else dataset == "synthetic")
                    if hp.init_from == "latest" else Path(hp.init_from))
            loaded = load_parts(self.net, path, tuple(hp.init_parts))
            self.loaded_from = str(path)
            how = " (model.init_from: latest, the newest finished pretraining run)" if hp.init_from == "latest" else ""
            rank_zero_info(f"initialised {', '.join(f'{k} ({n} tensors)' for k, n in loaded.items())} from {path}{how}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # random states travel with the checkpoint so that a resumed run draws what an
        # uninterrupted one would (dropout, augmentation); plain tensors and ints only, so the
        # file still loads with weights_only=True
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": list(random.getstate()[1]) + [random.getstate()[0]],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        n = states["numpy"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        py = states["python"]
        random.setstate((py[-1], tuple(py[:-1]), None))
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])

    def on_fit_start(self) -> None:
        # DistributedDataParallel reduces the gradients of the parameters that required one when
        # it wrapped the model; a backbone frozen then and unfrozen later would train on each
        # rank's own gradients (ranks drift apart). Those parameters are averaged here instead:
        # frozen epochs stay cheap (no backward through the backbone, nothing sent), unfrozen
        # ones stay synchronised, at the cost of one all-reduce after backward, not overlapped
        from torch.nn.parallel import DistributedDataParallel

        strategy = self.trainer.strategy
        wrapped = isinstance(strategy.model, DistributedDataParallel)
        hp = self.hparams
        if hp.freeze_backbone and hp.unfreeze_backbone_at_epoch is not None and self.trainer.world_size > 1 \
                and not wrapped:
            raise UserInputError(
                f"model.unfreeze_backbone_at_epoch under {type(strategy).__name__}: a backbone unfrozen during the run "
                "needs its gradients averaged over the ranks, which only the ddp strategies do here (FSDP and "
                "DeepSpeed shard or fuse them); use --trainer.strategy=ddp, or leave the backbone frozen "
                "(unfreeze_backbone_at_epoch: null) or trainable from the start (freeze_backbone: false)")
        self._grads_ddp_skips = [p for p in self.parameters() if not p.requires_grad] if wrapped else []

    def on_after_backward(self) -> None:
        # here, not in on_before_optimizer_step: under 16-mixed the GradScaler unscales and
        # checks for inf/NaN between the two, so it must see the averaged gradients, the same on
        # every rank, for all ranks to skip (or step) together when one rank overflows
        average_gradients([p for p in getattr(self, "_grads_ddp_skips", ()) if p.requires_grad],
                          self.trainer.world_size)

    def _set_backbone_trainable(self, trainable: bool) -> None:
        for p in self.net.encoder.parameters():
            p.requires_grad_(trainable)
        self._backbone_frozen = not trainable

    @staticmethod
    def load_frozen_encoder(checkpoint: str | Path) -> tuple[nn.Module, str]:
        """The network with the frozen face feature extractor of a pretraining checkpoint, and
        its backbone name: how a datamodule with ``feature_cache`` computes its features."""
        return load_encoder(checkpoint)

    def configure_callbacks(self) -> list[L.Callback]:
        # what every fit of this model needs, with or without the CLI: the dataset's epoch, a
        # stop on a non-finite loss, checkpoints stamped with their W&B run and SLURM job
        return fit_guards()

    def on_train_epoch_start(self) -> None:
        hp = self.hparams
        if hp.freeze_backbone and hp.unfreeze_backbone_at_epoch is not None \
                and self.current_epoch >= hp.unfreeze_backbone_at_epoch and self._backbone_frozen:
            self._set_backbone_trainable(True)
            rank_zero_info(f"epoch {self.current_epoch}: backbone unfrozen")
        if self._backbone_frozen:
            self.net.encoder.eval()  # frozen means BatchNorm statistics too

    @property
    def output_names(self) -> tuple[str, ...]:
        """What each output is: the targets (finetune) or the emotion classes (pretrain)."""
        return self.objective.output_names

    def forward(self, frames: Tensor) -> Tensor:
        """(B, T, 3, H, W) uint8 -> (B, T, D) predictions or (B, T, C) logits."""
        return self.net(frames)

    def predict_batch(self, batch: dict) -> Tensor:
        """Predictions for a batch of face clips (``frames``), or of cached backbone features
        (``features``, (B, T, F)): then only the LSTM and head run."""
        if "features" in batch:
            net = self.net
            features = batch["features"]
            kind = features.device.type
            # under autocast the LSTM gets what the backbone would have handed it (bf16): oneDNN's
            # LSTM on CPUs without AVX-512 has no primitive for float32 input with bf16 weights
            dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else net.head.weight.dtype
            return net.forward_head(net.forward_temporal(features.to(dtype))[0])
        return self(batch["frames"])

    def loss(self, preds: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
        """The task's masked loss: 1 - CCC (finetune) or cross-entropy (pretrain)."""
        return self.objective.loss(preds, targets, mask)

    def selfsup_loss(self, batch: dict, seed: int) -> Tensor:
        """The self-supervised method's loss on a batch: the first and last frame of each clip,
        each augmented with its own draw from ``seed``."""
        frames, has_face = batch["frames"][:, [0, -1]], batch["mask"][:, [0, -1]]
        views = make_views(self.views, pair_faces(frames, has_face), seed)
        loss = self.selfsup(self.net.encoder, views)
        return loss if has_face.any() else loss * 0.0  # a batch without a face: the collectives still run

    def _step_seed(self, stage: str, batch_idx: int) -> int:
        # training draws follow the batch count, not the optimizer step: the micro-batches of one
        # accumulated step draw apart; Lightning restores the count, so a resumed run draws what an
        # uninterrupted one did. Evaluation draws the same views every epoch, so its loss compares
        # across epochs.
        rank = self.global_rank if self._trainer is not None else 0
        step = batch_idx
        if stage == "train" and self._trainer is not None:
            step = self.trainer.fit_loop.epoch_loop.batch_progress.total.ready
        key = [int(torch.initial_seed()) % 2**32, {"train": 0, "val": 1, "test": 2}[stage], rank, step]
        return int(np.random.SeedSequence(key).generate_state(1)[0])

    def _mixed_loss(self, parts: dict) -> tuple[Tensor, int, int]:
        """The loss of one batch of each corpus (``data.mix``): every part's frames side by side
        as one clip, so the loss counts all labelled frames alike whatever their clip length."""
        preds, targets, masks = [], [], []
        for part in parts.values():
            p = self.predict_batch(part)
            preds.append(p.reshape(1, -1, p.shape[-1]))
            targets.append(part["targets"].reshape(1, -1, *part["targets"].shape[2:]))
            masks.append(part["mask"].reshape(1, -1))
        loss = self.loss(torch.cat(preds, 1), torch.cat(targets, 1), torch.cat(masks, 1))
        return loss, sum(p["mask"].shape[0] for p in parts.values()), sum(m.numel() for m in masks)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        if self.selfsup is not None:
            loss = self.selfsup_loss(batch, self._step_seed("train", batch_idx))
            size, frames = batch["frames"].shape[0], batch["mask"].numel()
        elif "frames" not in batch and "features" not in batch:  # one batch per corpus (data.mix)
            loss, size, frames = self._mixed_loss(batch)
        else:
            preds = self.predict_batch(batch)
            loss = self.loss(preds, batch["targets"], batch["mask"])
            size, frames = preds.shape[0], batch["mask"].numel()
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        now = time.perf_counter()  # throughput including data loading: batch end to batch end
        if self._last_batch_end is not None:
            self.log("train/frames_per_s", frames / max(1e-9, now - self._last_batch_end), batch_size=size)
        self._last_batch_end = now
        return loss

    def _eval_step(self, batch: dict, stage: str, batch_idx: int = 0) -> dict:
        if self.selfsup is not None:
            loss = self.selfsup_loss(batch, self._step_seed(stage, batch_idx))
            self.log(f"{stage}/loss", loss, batch_size=batch["frames"].shape[0], sync_dist=True,
                     prog_bar=stage == "val")
            return {}
        preds = self.predict_batch(batch)
        targets, mask = batch["targets"], batch["mask"]
        self.log(f"{stage}/loss", self.loss(preds, targets, mask), batch_size=preds.shape[0], sync_dist=True)
        self.objective.update(self.metrics[stage], preds, batch)
        return {"preds": preds.detach()}

    def _eval_epoch_end(self, stage: str) -> None:
        import warnings

        m = self.metrics[stage]
        # these values are already global: every metric gathers all ranks' frames before it
        # computes, so Lightning's advice to average them again with sync_dist does not apply
        warnings.filterwarnings("ignore", message=r".*sync_dist=True.* when logging on epoch level")
        self.objective.log_epoch(m, stage, self.log)
        for metric in m.values():
            metric.reset()

    def _score_annotations(self, stage: str) -> None:
        """Have the epoch's CCC score each annotation of the split as the challenges do (its
        described moment, the label delay included; rows past the decoded video; one valid
        dimension), the rule ``evaluate`` follows
        (:meth:`~fer_lightning.metrics.ccc.SequenceConcordanceCC.set_annotations`)."""
        metrics = self.metrics[stage]
        metric = metrics["ccc"] if self.objective.continuous and "ccc" in metrics else None
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if metric is None or not hasattr(metric, "set_annotations") or dm is None:
            return
        split = {"val": "val", "test": "test"}[stage]
        records = getattr(getattr(dm, "datasets", {}).get(split), "records", None)
        if not records:
            return
        tables = dm.__dict__.setdefault("_annotation_tables", {})  # the datamodule's, per split and targets
        key = (split, tuple(self.target_names))
        if key not in tables:
            from fer_lightning.corpora.annotations import annotations_of

            tables[key] = {}
            for r in records:
                if r.values is not None and (a := annotations_of(r, list(self.target_names))) is not None:
                    tables[key][r.video_id] = (r.num_frames, a.position, a.values)
        metric.set_annotations(tables[key])

    def on_validation_epoch_start(self) -> None:
        self._score_annotations("val")

    def on_test_epoch_start(self) -> None:
        self._score_annotations("test")

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return self._eval_step(batch, "val", batch_idx)

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return self._eval_step(batch, "test", batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        preds = self.objective.predictions(self.predict_batch(batch))
        return {"preds": preds, "video_id": batch["video_id"], "frame_index": batch["frame_index"]}

    def configure_optimizers(self):
        hp = self.hparams
        # groups: (backbone or not) x (decay or not). A frozen backbone stays in the optimizer
        # (its parameters get no gradient, so AdamW skips them) so that unfreezing needs no
        # new optimizer and resuming finds the same groups.
        groups: dict[tuple[bool, bool], list] = {(b, d): [] for b in (True, False) for d in (True, False)}
        for name, p in self.named_parameters():
            if p.requires_grad or name.startswith("net.encoder."):
                decays = not (p.ndim <= 1 or name.endswith(".bias"))
                groups[(name.startswith("net.encoder."), decays)].append(p)
        optimizer = torch.optim.AdamW(
            [{"params": params, "weight_decay": hp.weight_decay if decays else 0.0,
              "lr": hp.lr * (hp.backbone_lr_scale if backbone else 1.0)}
             for (backbone, decays), params in groups.items() if params],
            lr=hp.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(hp.warmup_steps, total // 2)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
