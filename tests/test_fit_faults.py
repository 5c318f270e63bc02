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


def fit(cwd: Path, corpus: Path, *extra: str, subcommand: str = "fit", env: dict | None = None
        ) -> subprocess.CompletedProcess:
    """``fer-lightning fit`` (or ``subcommand``) of the synthetic fine-tuning experiment, tiny and
    deterministic, with the whole run under ``cwd/run``."""
    args = [subcommand, "--config", str(ROOT / "experiments/finetune_synthetic.yaml"),
            "--config", str(ROOT / "experiments/presets/cpu.yaml"), f"--data.root={corpus}",
            f"--run_root={cwd / 'run'}", "--trainer.max_epochs=3", "--trainer.deterministic=true",
            "--model.net.backbone=test_resnet", "--model.net.hidden_size=8", "--model.warmup_steps=2",
            "--data.image_size=32", "--data.clip_len=4", "--data.batch_size=2", "--data.num_workers=0",
            "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2", "--trainer.log_every_n_steps=1",
            "--evaluate_after_fit=false", *extra]
    env = dict(os.environ, WANDB_MODE="offline", HF_HUB_OFFLINE="1", WANDB_SILENT="true",
               PYTHONPATH=str(ROOT / "tests"), **(env or {}))
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

    resumed = fit(cut_dir, tiny_corpus, "--ckpt_path", "last")  # docs/faults.md: the same command + --ckpt_path last
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
    # validate scores that checkpoint too (Lightning's own "last" found none and scored random weights)
    scored = fit(cut_dir, tiny_corpus, "--ckpt_path", "last", subcommand="validate")
    assert scored.returncode == 0 and "--ckpt_path last: scoring" in scored.stdout, scored.stderr[-3000:]
    assert "No checkpoint will be loaded" not in scored.stderr


@pytest.mark.cli
def test_resume_without_a_checkpoint_to_resume_is_refused(tiny_corpus, tmp_path):
    proc = fit(tmp_path, tiny_corpus, "--ckpt_path=last")
    assert proc.returncode == 2
    assert "--ckpt_path last: no last.ckpt in the run folder" in proc.stderr and "Traceback" not in proc.stderr
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


@pytest.mark.cli
def test_user_errors_in_a_fit_are_one_sentence_before_any_run_folder(tiny_corpus, tiny_checkpoint, tmp_path):
    not_a_ckpt = tmp_path / "notes.ckpt"
    not_a_ckpt.write_text("hello")
    pretrain = tmp_path / "pretrain.ckpt"
    raw = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    raw["hyper_parameters"]["task"] = "pretrain"
    torch.save(raw, pretrain)
    cases = [
        (["--model.net.backbone=resnett50"], "model.net.backbone 'resnett50' is not a timm model; the closest timm names: "
                                         "resnet50"),
        ([f"--model.init_from={tmp_path / 'missing.ckpt'}"], "model.init_from " + str(tmp_path / "missing.ckpt")
         + ": no such file"),
        ([f"--model.init_from={not_a_ckpt}"], "is not a readable PyTorch checkpoint"),
        ([f"--ckpt_path={pretrain}"], "task 'pretrain' there, 'finetune' here (a pretraining checkpoint starts a "
                                      "fine-tuning run with --model.init_from"),
        (["--data.clip_len=0"], "data.clip_len must be at least 1, got 0"),
        (["--data.dataset=sewa", f"--data.root={tmp_path / 'nowhere'}"], f"data.root {tmp_path / 'nowhere'} (sewa): "),
        (["--model.lr=-0.001"], "model.lr must be > 0, got -0.001"),
        # a compute node without network and with a cold cache: not 90 s of retries and a traceback
        (["--model.net.pretrained=true"], "model.net.pretrained=true: timm could not load the ImageNet weights of test_resnet"),
    ]
    for i, (args, said) in enumerate(cases):
        cwd = tmp_path / f"case{i}"
        cwd.mkdir()
        proc = fit(cwd, tiny_corpus, *args, env={"HF_HOME": str(tmp_path / "empty_hf_cache")})
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert said in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr[-2000:])
        assert not (cwd / "run").exists(), args  # nothing made: no run folder, no W&B run
    # the same for scoring: a pretraining checkpoint given to `test` of a fine-tuning experiment
    (tmp_path / "case_test").mkdir()
    proc = fit(tmp_path / "case_test", tiny_corpus, f"--ckpt_path={pretrain}", subcommand="test")
    assert proc.returncode == 2 and "task 'pretrain' there, 'finetune' here" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_file_and_the_next_save_clears_the_debris(tmp_path):
    import signal
    import time

    from fer_lightning.training.checkpoint_io import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1, "w": torch.ones(4)}, path)
    writer = subprocess.Popen([sys.executable, "-c", "import sys, torch\n"
                               "from fer_lightning.training.checkpoint_io import AtomicCheckpointIO\n"
                               "AtomicCheckpointIO().save_checkpoint({'epoch': 2, 'w': torch.zeros(100_000_000)}, "
                               "sys.argv[1])", str(path)])
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".last.*.ckpt.tmp")) and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)  # mid-write: the temporary file is being filled
    writer.wait()
    assert writer.returncode == -9 and list(tmp_path.glob(".last.*.ckpt.tmp")), "the kill came too late to test"
    assert torch.load(path, weights_only=True)["epoch"] == 1  # the previous checkpoint, whole
    AtomicCheckpointIO().save_checkpoint({"epoch": 3, "w": torch.ones(4)}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 3 and sorted(p.name for p in tmp_path.iterdir()) == [
        "last.ckpt"]


def test_last_means_this_run_folders_own_newest_checkpoint_and_an_older_one_branches(tmp_path):
    import time

    from fer_lightning.checkpoints import is_newest_in_its_run, resumable_checkpoint

    run = tmp_path / "run"
    own = run / "logs" / "version_0" / "checkpoints"
    nested = run / "slurm-77" / "logs" / "version_0" / "checkpoints"  # another run, inside this folder
    for folder in (own, nested):
        folder.mkdir(parents=True)
    (own / "best-epoch=01.ckpt").write_bytes(b"1")
    time.sleep(1.1)
    (own / "last.ckpt").write_bytes(b"2")
    time.sleep(1.1)
    (nested / "last.ckpt").write_bytes(b"3")  # newer, but not this run's
    assert resumable_checkpoint(run) == own / "last.ckpt"
    assert resumable_checkpoint(tmp_path / "nothing") is None
    assert is_newest_in_its_run(own / "last.ckpt", own)
    assert not is_newest_in_its_run(own / "best-epoch=01.ckpt", own)  # resuming it starts a new version


def test_hub_and_local_backbone_names_are_left_to_timm():
    from fer_lightning.models.backbone import check_backbone_name

    for name in ("hf-hub:timm/resnet18.a1_in1k", "local-dir:/models/resnet18", "resnet50.a1_in1k"):
        check_backbone_name(name)
