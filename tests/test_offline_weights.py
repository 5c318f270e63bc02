"""A model trained from hub weights runs where there is no network: evaluate, predict and export
load its checkpoint without asking the Hugging Face hub (a compute node's situation)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch


def offline_command(script: str) -> list[str]:
    """``python -c script`` with the network cut (a new network namespace) where the machine
    allows it; the environment of :func:`offline_env` cuts the hub in any case."""
    cmd = [sys.executable, "-c", script]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n", *cmd]
    return cmd


def offline_env(tmp_path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty_hf_cache")}


@pytest.mark.cli
def test_a_checkpoint_trained_from_hub_weights_needs_no_hub_to_run(tiny_checkpoint, feat_data, tmp_path):
    raw = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    raw["hyper_parameters"]["pretrained"] = True  # what a run started from timm's ImageNet weights saves
    ckpt = tmp_path / "from_hub.ckpt"
    torch.save(raw, ckpt)
    env = offline_env(tmp_path)
    # the hub really is out of reach there: building the backbone with hub weights fails
    proc = subprocess.run(offline_command("import timm; timm.create_model('test_resnet', pretrained=True)"),
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stdout
    script = f"""
from fer_lightning.cli.main import main
assert main(["evaluate", "--ckpt", {str(ckpt)!r}, "--out", {str(tmp_path / "eval")!r}, "--num_workers", "0",
             "--search.max_delay_s", "0.2"]) == 0
assert main(["predict", "--ckpt", {str(ckpt)!r}, "--input", {str(feat_data / "face_noface.mov")!r},
             "--out", {str(tmp_path / "pred")!r}, "--quiet"]) == 0
assert main(["export", "--ckpt", {str(ckpt)!r}, "--format", "torchscript", "--out", {str(tmp_path / "m.pt")!r}]) == 0
"""
    proc = subprocess.run(offline_command(script), env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Error fetching version info" not in proc.stderr  # no library asks the network either (albumentations)
    assert (tmp_path / "eval" / "evaluation.json").is_file() and (tmp_path / "pred" / "face_noface.csv").is_file()
    assert (tmp_path / "m.pt").stat().st_size > 1000
