"""DDP on CPU: two gloo ranks launched by the CLI score a checkpoint exactly as one process does."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model.backbone=test_resnet", "--model.hidden_size=8", "--data.image_size=32", "--data.clip_len=4",
        "--data.batch_size=3", "--data.num_workers=0", "--trainer.enable_progress_bar=false"]


def cli(cwd, *args):
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "fer_lightning.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def logged(run_root: Path) -> dict:
    """The metrics of the newest CSV-logged run under run_root."""
    newest = max(run_root.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    rows = list(csv.DictReader(newest.open()))
    return {k: float(v) for row in rows for k, v in row.items() if v not in ("", None) and k.startswith("val/")}


@pytest.mark.ddp
def test_two_gloo_ranks_score_a_checkpoint_like_one_process(tiny_corpus, tmp_path):
    base = ["--config", str(ROOT / "experiments/finetune_synthetic.yaml"), "--config",
            str(ROOT / "experiments/presets/cpu.yaml"), f"--data.root={tiny_corpus}", *TINY]
    cli(tmp_path, "fit", *base, "--trainer.max_epochs=1", "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=1", "--evaluate_after_fit=false")
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    runs = tmp_path / "runs" / "finetune_synthetic" / "logs"
    cli(tmp_path, "validate", *base, f"--ckpt_path={ckpt}")
    single = logged(runs)
    cli(tmp_path, "validate", *base, "--config", str(ROOT / "experiments/presets/ddp.yaml"),
        "--trainer.devices=2", f"--ckpt_path={ckpt}")
    ddp = logged(runs)
    assert set(single) >= {"val/ccc_valence", "val/ccc_arousal", "val/seq_ccc_valence", "val/ccc_mean"}
    for key, value in single.items():
        if "ccc" in key:  # pooled and per-video CCC: the same frames, each once
            assert ddp[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, single, ddp)
