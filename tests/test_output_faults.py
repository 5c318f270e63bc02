"""Outputs that cannot be written (a full disk, a read-only file system): one sentence that
names the file and the cause, never a traceback or an abort. Each case runs the command in a
mount namespace of its own (``unshare -m``, as root) with a tiny tmpfs where it writes."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=16k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


pytestmark = [pytest.mark.cli, pytest.mark.skipif(not can_mount(), reason="needs root and unshare -m to mount a "
                                                                           "tiny tmpfs (Linux)")]


def run_on_small_disk(mount: Path, size: str, args: list[str], read_only: bool = False,
                      cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``fer-lightning ARGS`` with a tmpfs of ``size`` at ``mount`` (read-only: nothing fits)."""
    mount.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "fer_lightning.cli", *args])
    script = f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mount))} && exec {command}"
    env = dict(os.environ, WANDB_MODE="offline", HF_HUB_OFFLINE="1", WANDB_SILENT="true")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600,
                          env=env, cwd=cwd)


def said_one_sentence(proc, cause: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "fer-lightning: cannot write " in proc.stderr and cause in proc.stderr, proc.stderr[-3000:]


def test_export_and_predict_into_a_full_disk(tiny_checkpoint, feat_data, tmp_path):
    out = tmp_path / "small"
    for fmt in ("torchscript", "onnx"):  # torch.jit.save to a full disk used to abort the process
        proc = run_on_small_disk(out, "64k", ["export", "--ckpt", str(tiny_checkpoint), "--format", fmt,
                                              "--out", str(out / "model.bin")])
        said_one_sentence(proc, "the disk is full")
    proc = run_on_small_disk(out, "16k", ["predict", "--ckpt", str(tiny_checkpoint), "--input",
                                          str(feat_data / "no_face.mp4"), "--out", str(out / "pred"), "--quiet", "true"])
    said_one_sentence(proc, "the disk is full")


def test_preprocess_into_a_read_only_folder(feat_data, tmp_path):
    proc = run_on_small_disk(tmp_path / "ro", "1m", ["preprocess", "--input", str(feat_data / "no_face.mp4"),
                                                     "--output", str(tmp_path / "ro" / "store"), "--workers", "1"],
                             read_only=True)
    said_one_sentence(proc, "the file system is read-only")


def test_a_fit_whose_checkpoint_does_not_fit_on_the_disk(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    args = ["fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"), "--config",
            str(ROOT / "experiments/presets/cpu.yaml"), f"--data.root={tiny_corpus}", f"--run_root={run}",
            "--trainer.max_epochs=1", "--model.net.backbone=test_resnet", "--model.net.hidden_size=8", "--data.image_size=32",
            "--data.clip_len=4", "--data.batch_size=2", "--data.num_workers=0", "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1", "--evaluate_after_fit=false", "--trainer.enable_progress_bar=false"]
    proc = run_on_small_disk(run / "logs", "64k", args)  # the CSV logs fit, a checkpoint does not
    said_one_sentence(proc, "the disk is full")
    assert "checkpoints/" in proc.stderr  # the file it could not write


def test_evaluate_into_a_read_only_folder(tiny_checkpoint, tmp_path):
    proc = run_on_small_disk(tmp_path / "ro", "1m", ["evaluate", "--ckpt", str(tiny_checkpoint), "--out",
                                                     str(tmp_path / "ro" / "eval"), "--num_workers", "0",
                                                     "--search.max_delay_s", "0.2"], read_only=True)
    said_one_sentence(proc, "the file system is read-only")
