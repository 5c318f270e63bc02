"""W&B offline: real run files under the run folder, read back; a resumed run continues the same run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fer_lightning.training.loggers import read_run

ROOT = Path(__file__).resolve().parents[1]


def find_run_files(save_dir: str | Path) -> list[Path]:
    """Offline run files under a run folder, oldest first."""
    return sorted(Path(save_dir).rglob("run-*.wandb"), key=lambda p: p.stat().st_mtime)


def fit(tmp_path, corpus, *extra):
    args = ["fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"),
            "--config", str(ROOT / "experiments/presets/cpu.yaml"), f"--data.root={corpus}",
            "--model.net.backbone=test_resnet", "--model.net.hidden_size=8", "--model.warmup_steps=2",
            "--data.image_size=32", "--data.clip_len=4", "--data.batch_size=2", "--data.num_workers=0",
            "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2", "--trainer.log_every_n_steps=1",
            "--evaluate_after_fit=false", *extra]
    env = dict(os.environ, WANDB_MODE="offline", HF_HUB_OFFLINE="1", WANDB_SILENT="true")
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.run([sys.executable, "-m", "fer_lightning.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.cli
def test_offline_run_holds_config_metrics_and_plots_and_resumes_the_same_run(tiny_corpus, tmp_path):
    fit(tmp_path, tiny_corpus, "--trainer.max_epochs=2")
    runs = tmp_path / "runs" / "finetune_synthetic"
    files = find_run_files(runs)
    assert len(files) == 1 and files[0].is_relative_to(runs / "wandb")
    run = read_run(files[0])
    assert run["config"]["model"]["net"]["backbone"] == "test_resnet"  # the full resolved config
    assert run["config"]["data"]["clip_len"] == 4 and run["config"]["trainer"]["max_epochs"] == 2
    keys = set(run["summary"])
    for key in ("train/loss", "train/frames_per_s", "val/ccc_mean", "val/ccc_valence", "val/seq_ccc_arousal",
                "lr-AdamW/pg1", "epoch"):
        assert key in keys, (key, sorted(keys))
    assert -1.0 <= run["summary"]["val/ccc_mean"] <= 1.0
    steps = [row["val/ccc_mean"] for row in run["history"] if "val/ccc_mean" in row]
    assert len(steps) == 2  # one per validation epoch
    images = [row for row in run["history"] if row.get("val/traces/_type") == "images/separated"]
    assert len(images) == 2 and len([f for f in run["files"] if f.startswith("media/images/val/traces")]) == 2
    pngs = list((runs / "logs").rglob("traces_val.png"))
    assert pngs  # the same plot beside the numbers

    # resume from the last checkpoint: the same W&B run continues
    fit(tmp_path, tiny_corpus, "--trainer.max_epochs=3", "--ckpt_path=last")
    files = find_run_files(runs)
    resumed = read_run(files[-1])
    assert resumed["run_id"] == run["run_id"]
    assert any(row.get("epoch") == 2 for row in resumed["history"])


def test_the_wandb_entity_and_project_are_settable(tmp_path, monkeypatch):
    from fer_lightning.training.loggers import RunWandbLogger

    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    logger = RunWandbLogger(save_dir=str(tmp_path), entity="affect-lab", project="recola-sweeps")
    assert logger._wandb_init["entity"] == "affect-lab" and logger._wandb_init["project"] == "recola-sweeps"
    monkeypatch.setenv("WANDB_ENTITY", "from-env")
    monkeypatch.setenv("WANDB_PROJECT", "env-project")
    logger = RunWandbLogger(save_dir=str(tmp_path))  # the environment fills what the config leaves open
    assert logger._wandb_init["entity"] == "from-env" and logger._wandb_init["project"] == "env-project"


def test_a_generic_optimizer_is_refused_with_the_reason(capsys):
    from fer_lightning.cli.main import main

    for option in ("--optimizer=Adam", "--lr_scheduler.class_path=torch.optim.lr_scheduler.StepLR"):
        with pytest.raises(SystemExit) as err:
            main(["fit", "--config", "experiments/finetune_synthetic.yaml", option])
        said = capsys.readouterr().err
        assert err.value.code == 2 and "backbone_lr_scale" in said and "warm-up" in said, said
