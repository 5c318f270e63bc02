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
             "--out", {str(tmp_path / "pred")!r}, "--quiet", "true"]) == 0
assert main(["export", "--ckpt", {str(ckpt)!r}, "--format", "torchscript", "--out", {str(tmp_path / "m.pt")!r}]) == 0
"""
    proc = subprocess.run(offline_command(script), env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Error fetching version info" not in proc.stderr  # no library asks the network either (albumentations)
    assert (tmp_path / "eval" / "evaluation.json").is_file() and (tmp_path / "pred" / "face_noface.csv").is_file()
    assert (tmp_path / "m.pt").stat().st_size > 1000


def warm_hub_cache(home, name: str = "test_resnet.r160_in1k"):
    """The Hugging Face cache as a login node's ``timm.create_model(name, pretrained=True)``
    leaves it (refs/main -> a snapshot holding model.safetensors), filled with known weights
    (this machine has no network to download the real ones). Returns those weights."""
    import safetensors.torch
    import timm

    repo = home / "hub" / f"models--timm--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    torch.manual_seed(0)
    weights = {k: torch.randn_like(v) if v.is_floating_point() else v
               for k, v in timm.create_model(name.split(".")[0], pretrained=False).state_dict().items()}
    safetensors.torch.save_file(weights, str(repo / "snapshots" / commit / "model.safetensors"))
    return weights


@pytest.mark.cli
def test_the_compute_node_recipe_fits_from_a_warm_hub_cache_without_network(tiny_corpus, tmp_path):
    # docs/training.md, "Start from ImageNet weights": warm HF_HOME on the login node, then fit with
    # HF_HUB_OFFLINE=1 on a node without network: timm reads the weights from the cache
    from pathlib import Path

    weights = warm_hub_cache(tmp_path / "hf")
    torch.save(weights, tmp_path / "expected.pt")
    root = Path(__file__).resolve().parents[1]
    script = f"""
import torch
from fer_lightning.cli.main import main
from fer_lightning.models import AffectModule
model = AffectModule(net=dict(backbone="test_resnet.r160_in1k", pretrained=True, hidden_size=8, num_layers=1))
got, want = model.net.encoder.model.state_dict(), torch.load({str(tmp_path / "expected.pt")!r})
assert all(torch.equal(got[k], v) for k, v in want.items() if k in got), "not the cached weights"
assert main(["fit", "--config", {str(root / "experiments/finetune_synthetic.yaml")!r},
             "--config", {str(root / "experiments/presets/cpu.yaml")!r},
             "--config", {str(root / "experiments/presets/debug.yaml")!r}, "--data.root={tiny_corpus}",
             "--data.image_size=32", "--data.num_workers=0", "--model.init_from=null",
             "--model.net.backbone=test_resnet.r160_in1k", "--model.net.pretrained=true", "--model.net.hidden_size=8",
             "--trainer.default_root_dir={tmp_path / "run"}"]) in (0, None)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(offline_command(script), env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
