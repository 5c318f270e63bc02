"""A fit that is killed: the documented resume (``--ckpt_path last``) restores it exactly, and a
fit stopped by a signal ends with a non-zero status. Real processes, real signals."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fer_lightning.training.loggers import read_run

ROOT = Path(__file__).resolve().parents[1]


def fit(cwd: Path, corpus: Path, *extra: str) -> subprocess.CompletedProcess:
    """``fer-lightning fit`` of the synthetic fine-tuning experiment, tiny and deterministic,
    with the whole run under ``cwd/run``."""
    args = ["fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"),
            "--config", str(ROOT / "experiments/presets/cpu.yaml"), f"--data.root={corpus}",
            f"--run_root={cwd / 'run'}", "--trainer.max_epochs=3", "--trainer.deterministic=true",
            "--model.backbone=test_resnet", "--model.hidden_size=8", "--model.warmup_steps=2",
            "--data.image_size=32", "--data.clip_len=4", "--data.batch_size=2", "--data.num_workers=0",
            "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2", "--trainer.log_every_n_steps=1",
            "--evaluate_after_fit=false", *extra]
    env = dict(os.environ, WANDB_MODE="offline", HF_HUB_OFFLINE="1", WANDB_SILENT="true",
               PYTHONPATH=str(ROOT / "tests"))
    env.pop("WANDB_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "fer_lightning.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def final_weights(run: Path) -> dict:
    (last,) = sorted(run.rglob("last.ckpt"))
    return torch.load(last, map_location="cpu", weights_only=True)


def val_epochs(run: Path) -> list[int]:
    """The epoch of every validation row the run's W&B files hold, over all of them."""
    epochs = []
    for path in sorted(run.rglob("run-*.wandb"), key=lambda p: p.stat().st_mtime):
        epochs += [int(row["epoch"]) for row in read_run(path)["history"] if "val/ccc_mean" in row]
    return epochs


@pytest.mark.cli
def test_the_documented_resume_of_a_killed_fit_ends_as_the_uninterrupted_run(tiny_corpus, tmp_path):
    whole_dir, cut_dir = tmp_path / "whole", tmp_path / "cut"
    whole_dir.mkdir(), cut_dir.mkdir()
    done = fit(whole_dir, tiny_corpus)
    assert done.returncode == 0, done.stderr[-3000:]

    # kill -9 once the first epoch's checkpoints are written
    killed = fit(cut_dir, tiny_corpus, "--trainer.callbacks+=faults.SignalAtEpoch",
                 "--trainer.callbacks.init_args.epoch=1", "--trainer.callbacks.init_args.signum=9",
                 "--trainer.callbacks.init_args.delay=3")  # W&B writes its run file every second
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not list((cut_dir / "run").rglob("finished.json"))

    resumed = fit(cut_dir, tiny_corpus, "--ckpt_path", "last")  # README: the same command + --ckpt_path last
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "No checkpoint will be loaded" not in resumed.stderr

    whole, cut = final_weights(whole_dir / "run"), final_weights(cut_dir / "run")
    assert cut["global_step"] == whole["global_step"] == 9
    for name, value in whole["state_dict"].items():
        assert torch.equal(value, cut["state_dict"][name]), name
    # one run folder, one log version, one history: each epoch validated once, in W&B and CSV
    assert [p.name for p in (cut_dir / "run" / "logs").iterdir()] == ["version_0"]
    assert len(list((cut_dir / "run").rglob("finished.json"))) == 1
    assert val_epochs(cut_dir / "run") == val_epochs(whole_dir / "run") == [0, 1, 2]
    ids = {read_run(p)["run_id"] for p in (cut_dir / "run").rglob("run-*.wandb")}
    assert len(ids) == 1
    with open(cut_dir / "run" / "logs" / "version_0" / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/ccc_mean")]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]


@pytest.mark.cli
def test_resume_without_a_checkpoint_to_resume_is_refused(tiny_corpus, tmp_path):
    proc = fit(tmp_path, tiny_corpus, "--ckpt_path=last")
    assert proc.returncode == 2
    assert "--ckpt_path last: no last.ckpt under the run folder" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "logs").exists()  # refused before any run folder or W&B run


@pytest.mark.cli
@pytest.mark.parametrize("signum, status", [(15, 143), (2, 1)])
def test_a_fit_stopped_by_a_signal_exits_non_zero(tiny_corpus, tmp_path, signum, status):
    proc = fit(tmp_path, tiny_corpus, "--trainer.callbacks+=faults.SignalAtEpoch",
               "--trainer.callbacks.init_args.epoch=1", f"--trainer.callbacks.init_args.signum={signum}")
    assert proc.returncode == status, (proc.returncode, proc.stderr[-3000:])
    assert not list((tmp_path / "run").rglob("finished.json"))  # never taken as a finished run
    if signum == 15:
        assert "stopped by SIGTERM" in proc.stderr


@pytest.mark.cli
@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed"])
def test_unfreezing_under_a_sharding_strategy_is_refused_before_the_run(tiny_corpus, tmp_path, strategy):
    proc = fit(tmp_path, tiny_corpus, f"--trainer.strategy={strategy}", "--model.freeze_backbone=true",
               "--model.unfreeze_backbone_at_epoch=1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"model.unfreeze_backbone_at_epoch with trainer.strategy {strategy}" in proc.stderr
    assert "--trainer.strategy=ddp" in proc.stderr and not (tmp_path / "run").exists()
