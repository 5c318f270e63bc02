"""DDP on CPU: two gloo ranks launched by the CLI score a checkpoint exactly as one process does."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model.net.backbone=test_resnet", "--model.net.hidden_size=8", "--data.image_size=32", "--data.clip_len=4",
        "--data.batch_size=3", "--data.num_workers=0", "--trainer.enable_progress_bar=false"]


def cli(cwd, *args):
    cwd.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(ROOT / "tests"))
    proc = subprocess.run([sys.executable, "-m", "fer_lightning.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def logged(run_root: Path) -> dict:
    """The metrics of the newest CSV-logged run under run_root."""
    newest = max(run_root.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    rows = list(csv.DictReader(newest.open()))
    return {k: float(v) for row in rows for k, v in row.items() if v not in ("", None) and k.startswith("val/")}


def global_step(run_root: Path) -> int:
    import torch

    last = max(run_root.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    return torch.load(last, map_location="cpu", weights_only=True)["global_step"]


@pytest.mark.ddp
def test_two_gloo_ranks_split_training_and_score_exactly_like_one_process(tiny_corpus, tmp_path):
    base = ["--config", str(ROOT / "experiments/finetune_synthetic.yaml"), "--config",
            str(ROOT / "experiments/presets/cpu.yaml"), f"--data.root={tiny_corpus}", *TINY]
    ddp = ["--config", str(ROOT / "experiments/presets/ddp.yaml"), "--trainer.devices=2"]
    one_epoch = ["--trainer.max_epochs=1", "--trainer.limit_val_batches=1", "--evaluate_after_fit=false"]
    cli(tmp_path / "single", "fit", *base, *one_epoch)
    cli(tmp_path / "ddp", "fit", *base, *ddp, *one_epoch)
    single_steps, ddp_steps = global_step(tmp_path / "single" / "runs"), global_step(tmp_path / "ddp" / "runs")
    # one epoch is every training clip once: two ranks take half the steps each (no clip twice)
    assert single_steps >= 10 and abs(2 * ddp_steps - single_steps) <= 1, (single_steps, ddp_steps)

    ckpt = max((tmp_path / "ddp" / "runs").rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    runs = tmp_path / "ddp" / "runs" / "finetune_synthetic" / "logs"
    # clip_len 75: each 3 s validation video is one window, fewer windows than ranks (padding)
    for clip_len in (4, 75):
        clip = [f"--data.clip_len={clip_len}", f"--ckpt_path={ckpt}"]
        cli(tmp_path / "ddp", "validate", *base, *clip)
        single = logged(runs)
        cli(tmp_path / "ddp", "validate", *base, *ddp, *clip, "--trainer.sync_batchnorm=true")
        two = logged(runs)
        assert set(single) >= {"val/ccc_valence", "val/ccc_arousal", "val/seq_ccc_valence", "val/ccc_mean"}
        for key, value in single.items():
            if "ccc" in key:  # pooled and per-video CCC: the same frames, each once
                assert two[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (clip_len, key, single, two)


@pytest.mark.ddp
def test_a_dying_rank_ends_the_whole_run_with_its_exit_code(tiny_corpus, tmp_path):
    env = dict(os.environ, WANDB_MODE="offline", PYTHONPATH=str(ROOT / "tests"), PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", "fer_lightning.cli", "fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"),
         "--config", str(ROOT / "experiments/presets/cpu.yaml"), "--config", str(ROOT / "experiments/presets/ddp.yaml"),
         "--trainer.devices=2", f"--data.root={tiny_corpus}", *TINY, "--trainer.max_epochs=100",
         "--trainer.callbacks+=faults.ExitOnRank", "--trainer.callbacks.init_args.step=2",
         "--trainer.callbacks.init_args.code=3"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # no hang: bounded by the timeout
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "rank 1 exits with code 3" in out, out[-3000:]
    # the survivor says why it stops (gloo saw the peer go) unless Lightning's launcher killed it first
    assert ("another rank of this distributed run ended first" in out or "terminated with code 3" in out), out[-3000:]


@pytest.mark.cli
def test_sync_batchnorm_training_on_cpu_is_refused_with_the_reason(tmp_path):
    env = dict(os.environ, WANDB_MODE="offline")
    proc = subprocess.run(
        [sys.executable, "-m", "fer_lightning.cli", "fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"),
         "--config", str(ROOT / "experiments/presets/cpu.yaml"), "--trainer.sync_batchnorm=true", *TINY],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "SyncBatchNorm trains on GPUs only" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.ddp
def test_a_backbone_unfrozen_under_ddp_trains_the_same_on_every_rank(tiny_corpus, tmp_path):
    # frozen when DDP wraps the model, unfrozen at epoch 1: DDP alone would leave its gradients
    # unreduced, and each rank would step its backbone its own way
    weights = tmp_path / "weights"
    cli(tmp_path, "fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"), "--config",
        str(ROOT / "experiments/presets/cpu.yaml"), f"--data.root={tiny_corpus}", *TINY,
        "--config", str(ROOT / "experiments/presets/ddp.yaml"), "--trainer.devices=2", "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=1", "--evaluate_after_fit=false",
        "--model.freeze_backbone=true", "--model.unfreeze_backbone_at_epoch=1", "--model.net.dropout=0.0",
        "--trainer.callbacks+=faults.SaveRankWeights", f"--trainer.callbacks.init_args.dirpath={weights}")
    import torch

    state = {(r, e): torch.load(weights / f"rank{r}-epoch{e}.pt", weights_only=True) for r in (0, 1) for e in (0, 1)}
    for name, value in state[0, 1].items():
        assert torch.equal(value, state[1, 1][name]), f"{name} differs between the ranks"
    backbone = [k for k in state[0, 1] if k.startswith("net.encoder.") and state[0, 1][k].is_floating_point()]
    assert backbone and any(not torch.equal(state[0, 0][k], state[0, 1][k]) for k in backbone), "backbone never moved"
    head = [k for k in state[0, 0] if not k.startswith("net.encoder.")]
    assert all(torch.equal(state[0, 0][k], state[1, 0][k]) for k in head)  # epoch 0 (frozen) agreed too


def _odd_window_clip_len(root: Path, split: str) -> int:
    """A clip length whose half-overlapping evaluation windows of ``split`` are odd in number,
    so that two ranks' DistributedSampler pads one window twice."""
    from fer_lightning.data.datamodule import AffectDataModule

    for clip_len in range(5, 30):
        dm = AffectDataModule(root=str(root), clip_len=clip_len, image_size=32, batch_size=3, num_workers=0,
                              eval_overlap=0.5)
        dm.setup("validate" if split == "val" else "test")
        if len(dm.datasets[split]) % 2:
            return clip_len
    raise AssertionError("no clip length gives an odd window count")


def _predictions(path: Path) -> dict:
    rows = list(csv.DictReader(path.open()))
    return {(r["video_id"], int(r["frame_index"])): r for r in rows}


@pytest.mark.ddp
def test_ddp_evaluation_with_overlapping_windows_equals_one_process(tiny_corpus, tmp_path, tiny_checkpoint):
    base = ["--config", str(ROOT / "experiments/finetune_synthetic.yaml"), "--config",
            str(ROOT / "experiments/presets/cpu.yaml"), f"--data.root={tiny_corpus}", *TINY, "--data.eval_overlap=0.5",
            f"--ckpt_path={tiny_checkpoint}"]
    ddp = ["--config", str(ROOT / "experiments/presets/ddp.yaml"), "--trainer.devices=2"]
    clip_len = _odd_window_clip_len(tiny_corpus, "test")
    results = {}
    for name, extra in (("single", []), ("ddp", ddp)):
        cli(tmp_path / name, "test", *base, *extra, f"--data.clip_len={clip_len}")
        runs = tmp_path / name / "runs"
        metrics = max(runs.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
        rows = list(csv.DictReader(metrics.open()))
        scores = {k: float(v) for row in rows for k, v in row.items() if v not in ("", None) and "ccc" in k}
        results[name] = scores, _predictions(max(runs.rglob("predictions_test.csv"), key=lambda p: p.stat().st_mtime))
    (single, single_frames), (two, two_frames) = results["single"], results["ddp"]
    assert {"test/ccc_valence", "test/seq_ccc_arousal"} <= set(single)
    for key, value in single.items():
        assert two[key] == pytest.approx(value, abs=1e-6), (key, single, two)
    assert single_frames.keys() == two_frames.keys()
    for frame, row in single_frames.items():
        for column in ("pred_valence", "pred_arousal", "true_valence", "labelled", "has_face"):
            assert float(two_frames[frame][column]) == pytest.approx(float(row[column]), abs=1e-6), (frame, column)


@pytest.mark.ddp
def test_an_overflow_on_one_rank_under_16_mixed_makes_every_rank_skip_the_step(tiny_corpus, tmp_path):
    # the backbone is frozen when DDP wraps the model and unfrozen at epoch 0, so its gradients
    # are averaged by the model; rank 0 overflows once: both ranks must skip that step
    weights = tmp_path / "weights"
    proc = cli(tmp_path, "fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"), "--config",
               str(ROOT / "experiments/presets/cpu.yaml"), f"--data.root={tiny_corpus}", *TINY,
               "--config", str(ROOT / "experiments/presets/ddp.yaml"), "--trainer.devices=2", "--trainer.max_epochs=1",
               "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=1", "--evaluate_after_fit=false",
               "--model.freeze_backbone=true", "--model.unfreeze_backbone_at_epoch=0", "--model.net.dropout=0.0",
               "--trainer.precision=null", "--trainer.plugins+=faults.CPUGradScaler",
               "--trainer.callbacks+=faults.InfGradOnRank", "--trainer.callbacks.init_args.step=1",
               "--trainer.callbacks+=faults.SaveRankWeights", f"--trainer.callbacks.init_args.dirpath={weights}")
    said = proc.stdout + proc.stderr
    assert "faults.InfGradOnRank: inf gradient on rank 0 at step 1" in said
    assert "rank 0 skipped the step at 1" in said and "rank 1 skipped the step at 1" in said, said[-3000:]
    import torch

    ranks = [torch.load(weights / f"rank{r}-epoch0.pt", weights_only=True) for r in (0, 1)]
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), f"{name} differs between the ranks"
        assert not value.is_floating_point() or torch.isfinite(value).all(), name


def _average_on_rank(rank: int, port: int, out: str) -> None:
    import torch

    from fer_lightning.training.distributed import average_gradients

    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        a, b, untouched = (torch.nn.Parameter(torch.zeros(s)) for s in ((2, 3), (4,), (1,)))
        a.grad = torch.full((2, 3), 1.0 + 2 * rank)  # rank 0: 1, rank 1: 3
        b.grad = torch.arange(4.0) * (rank + 1)  # rank 0: 0 1 2 3, rank 1: 0 2 4 6
        average_gradients([a, b, untouched], world_size=2)
        torch.save({"a": a.grad, "b": b.grad, "untouched": untouched.grad}, f"{out}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.ddp
def test_gradients_averaged_over_two_ranks_are_their_mean(tmp_path):
    import socket

    import torch
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_average_on_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["a"], torch.full((2, 3), 2.0))  # (1 + 3) / 2, not the sum 4
        torch.testing.assert_close(got["b"], torch.arange(4.0) * 1.5)
        assert got["untouched"] is None
