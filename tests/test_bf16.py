"""bf16-mixed on the CPU through both stages: bf16 activations meet the float64 CCC metric, the
1-CCC loss, the feature cache, stitching and post-processing, as they do in a GPU run with
``trainer.precision: bf16-mixed`` (``experiments/presets/gpu_bf16.yaml``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import train_tiny_checkpoint

from fer_lightning.data.datamodule import AffectDataModule
from fer_lightning.models import AffectModule

ROOT = Path(__file__).resolve().parents[1]


class DtypeProbe(L.Callback):
    """Records the dtype of what the model gives in training and evaluation steps."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen.add(f"loss {outputs['loss'].dtype}")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.seen.add(f"preds {outputs['preds'].dtype}")


@pytest.mark.parametrize("task,features", [("finetune", False), ("pretrain", False), ("finetune", True)])
def test_bf16_mixed_fit_validate_and_test(tiny_corpus, tmp_path, task, features):
    cache = {}
    if features:  # the frozen backbone's features, cached, feed the LSTM
        cache = {"feature_cache": str(train_tiny_checkpoint(tiny_corpus, tmp_path / "pre.ckpt", task="pretrain")),
                 "feature_cache_dir": str(tmp_path / "features")}
    L.seed_everything(0)
    model = AffectModule(task=task, freeze_backbone=features, net=dict(backbone="test_resnet", hidden_size=8, num_layers=1))
    dm = AffectDataModule(root=str(tiny_corpus), clip_len=4, image_size=32, batch_size=2, num_workers=0, task=task,
                          **cache)
    probe = DtypeProbe()
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=4, limit_val_batches=3, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[probe], default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    val = trainer.validate(model, datamodule=dm, verbose=False)[0]
    test = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert "preds torch.bfloat16" in probe.seen, probe.seen  # the bf16 path really ran
    assert "loss torch.float32" in probe.seen, probe.seen  # the loss computes in float32
    names = ["ccc_valence", "seq_ccc_arousal", "ccc_mean", "loss"] if task == "finetune" else ["acc", "f1_macro", "loss"]
    for stage, logged in (("val", val), ("test", test)):
        assert all(np.isfinite(logged[f"{stage}/{n}"]) for n in names), logged


@pytest.mark.cli
def test_bf16_mixed_experiment_runs_to_its_table(tiny_corpus, tmp_path):
    # the fine-tuning experiment as a user starts it, with the final validate/test of the best checkpoint
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "fer_lightning.cli", "fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"),
         "--config", str(ROOT / "experiments/presets/cpu.yaml"), "--trainer.precision=bf16-mixed",
         f"--data.root={tiny_corpus}", "--model.net.backbone=test_resnet", "--model.net.hidden_size=8", "--data.image_size=32",
         "--data.clip_len=4", "--data.batch_size=4", "--data.num_workers=0", "--trainer.max_epochs=1",
         "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=4", "--trainer.enable_progress_bar=false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line.split() for line in proc.stdout.splitlines() if line.startswith(("val ", "test "))]
    assert [row[0] for row in table] == ["val", "test"], proc.stdout[-2000:]
    assert all(np.isfinite(float(x.rstrip("%"))) for row in table for x in row[1:]), table  # last: face coverage


def test_bf16_evaluate_and_predict_agree_with_32_bit(tiny_corpus, tmp_path, feat_data):
    from fer_lightning.cli.main import main
    from fer_lightning.inference.evaluate import evaluate
    from fer_lightning.inference.settings import PredictConfig
    from fer_lightning.inference.stream import ModelStream, Timings
    from fer_lightning.models.checkpoint import load_checkpoint_model

    ckpt = train_tiny_checkpoint(tiny_corpus, tmp_path / "bf16.ckpt", precision="bf16-mixed")
    results = {p: evaluate(ckpt, out=tmp_path / p, device="cpu", num_workers=0, progress=False, precision=p)
               for p in ("32-true", "bf16-mixed")}
    for name in ("valence", "arousal"):
        full, half = (results[p]["raw"]["test"][name] for p in ("32-true", "bf16-mixed"))
        assert half["frames"] == full["frames"]
        assert half["rmse"] == pytest.approx(full["rmse"], abs=0.02)  # bf16 keeps about 3 digits
        # post-processing fitted on bf16 predictions (float64 from there on); a barely trained
        # model's near-constant output gets a large scale, so only finiteness is comparable
        assert all(np.isfinite(results["bf16-mixed"]["postprocessed"]["test"][name][k]) for k in ("ccc", "rmse"))

    model, _ = load_checkpoint_model(ckpt)
    crops = torch.randint(0, 256, (21, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    streamed = {}
    for precision in ("32-true", "bf16-mixed"):
        stream = ModelStream(model, torch.device("cpu"), 1, PredictConfig(window=8, precision=precision), 4, Timings())
        got = {}
        for i in range(len(crops)):
            got.update(stream.push(i, crops[i].numpy()))
        got.update(stream.finish())
        streamed[precision] = np.stack([got[i] for i in range(len(crops))])
    assert streamed["bf16-mixed"].dtype == np.float32
    np.testing.assert_allclose(streamed["bf16-mixed"], streamed["32-true"], atol=0.03)

    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(ckpt), "--input", str(feat_data / "face_noface.mov"), "--out", str(out),
                 "--precision", "bf16-mixed", "--quiet", "true"]) == 0
    import pandas as pd

    rows = pd.read_csv(out / "face_noface.csv")
    face = rows[rows.has_face == 1]
    assert len(face) > 20 and np.isfinite(face[["valence", "arousal"]].to_numpy()).all()
