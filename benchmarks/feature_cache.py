"""Frozen-backbone fine-tuning: training on cached backbone features vs on face images.

A synthetic corpus (12 subjects x 20 s, 256 px frames); the DemoNet-sized model of the demo
(resnet10t at 48 px, BiLSTM 64) with its backbone frozen. Times training steps (batch 16 clips
x 16 frames) on images and on cached features, and the one-off cache build. Prints one JSON
line: frames/s each way, their ratio (the speed-up), the cache build time, and after how many
epochs the cache has paid for itself.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import lightning as L
import torch


def fit_frames_per_s(dm, model, steps: int, root: Path) -> float:
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=steps, limit_val_batches=0,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=root)
    t = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    return steps * 16 * 16 / (time.perf_counter() - t)


def main() -> None:
    from fer_lightning.corpora.synthetic.generator import SynthConfig, generate_corpus
    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.models import AffectModule
    from fer_lightning.models.transfer import load_encoder

    steps = 30
    net_args = dict(net=dict(backbone="resnet10t", hidden_size=64, num_layers=1))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_corpus(SynthConfig(videos=12, seconds=20.0, seed=4, split=(1.0, 0.0, 0.0)), tmp / "corpus", workers=2,
                        progress=False)
        ckpt = tmp / "pretrain.ckpt"
        pre = AffectModule(task="pretrain", **net_args)
        torch.save({"state_dict": pre.state_dict(), "hyper_parameters": dict(pre.hparams)}, ckpt)
        common = dict(root=str(tmp / "corpus"), clip_len=16, image_size=48, batch_size=16, num_workers=2,
                      augment=False, train_reader="random")

        def model():
            m = AffectModule(init_from=str(ckpt), freeze_backbone=True, **net_args)
            return m

        images = fit_frames_per_s(AffectDataModule(**common), model(), steps, tmp)
        t = time.perf_counter()
        fdm = AffectDataModule(feature_cache=str(ckpt), feature_cache_dir=str(tmp / "features"), **common)
        fdm.encoder_loader = load_encoder
        fdm.setup()
        build = time.perf_counter() - t
        features = fit_frames_per_s(fdm, model(), steps, tmp)
        frames = sum(r.num_frames for r in fdm.split_records("train"))
    epoch_images = frames / images  # one pass over the training frames
    epoch_features = frames / features
    print(json.dumps({
        "benchmark": "feature_cache", "backbone": "resnet10t@48px frozen", "train_frames": frames,
        "images_frames_per_s": round(images, 1), "features_frames_per_s": round(features, 1),
        "ratio_features_over_images": round(features / images, 2), "cache_build_s": round(build, 1),
        "epochs_to_pay_off": round(build / max(1e-9, epoch_images - epoch_features), 2),
        "cpu_cores": len(os.sched_getaffinity(0)),
    }))


if __name__ == "__main__":
    main()
