"""The SLURM path on a real single-node cluster (Debian's slurm-wlm + munge, started by the test):
the project's own sbatch template trains with 2 tasks (CPU DDP over gloo), survives a SIGUSR1
preemption by saving, requeueing and resuming into the same W&B run, and fails fast and clearly
when a rank dies or when it is launched the wrong way.

`make slurm-test` runs just these; `make test` (and so CI) runs them too.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from checkout import fresh_checkout
from slurm_cluster import FINAL, local_slurm, missing

from fer_lightning.training.loggers import read_run

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "experiments/slurm/fit_one_node.sbatch"
EXPERIMENT = "experiments/finetune_synthetic.yaml"
BATCHES = 4  # training batches per epoch and rank
# 2 tasks on a node without GPUs, one core each (the template asks for 4 GPUs and 8 cores a task)
SBATCH_CPU = ["--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=15"]

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]


def tiny(corpus: Path) -> list[str]:
    return ["--trainer.accelerator=cpu", f"--data.root={corpus}", "--model.net.backbone=test_resnet",
            "--model.net.hidden_size=8", "--data.image_size=32", "--data.clip_len=4", "--data.batch_size=3",
            "--data.num_workers=0", "--trainer.enable_progress_bar=false", f"--trainer.limit_train_batches={BATCHES}",
            "--trainer.limit_val_batches=2", "--trainer.log_every_n_steps=1", "--model.init_from=null"]


@pytest.fixture(scope="module")
def cluster():
    why = missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SLURM tests, but {why}")
        pytest.skip(why)
    with local_slurm(cpus=2) as running:
        yield running


@pytest.fixture
def work(tmp_path):
    """A submit folder: the templates are sourced from $SLURM_SUBMIT_DIR/experiments."""
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    (tmp_path / "runs" / "slurm").mkdir(parents=True)
    return tmp_path


def job_env() -> dict[str, str]:
    return {"FER_LIGHTNING": str(Path(sys.executable).parent / "fer-lightning"), "WANDB_MODE": "offline",
            "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT / "tests")}


def job_log(work: Path, job: str) -> str:
    logs = list((work / "runs" / "slurm").glob(f"*-{job}.out"))
    return logs[0].read_text() if logs else "(no job log)"


def newest(run_root: Path, name: str) -> Path:
    """The newest file of that name under the run folder (a requeued job's is newer)."""
    return max(run_root.rglob(name), key=lambda p: p.stat().st_mtime)


def global_step(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]


def logged_metrics(run_root: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for path in sorted(run_root.rglob("metrics.csv")):
        for row in csv.DictReader(path.open()):
            for key, value in row.items():
                if value not in ("", None):
                    out.setdefault(key, []).append(float(value))
    return out


def wandb_runs(run_root: Path) -> list[dict]:
    return [read_run(p) for p in sorted(run_root.glob("wandb/offline-run-*/run-*.wandb"))]


def test_template_trains_two_ranks_then_survives_preemption(cluster, work, tiny_corpus):
    # 1. a whole run: 2 ranks, 2 epochs
    job = cluster.sbatch([*SBATCH_CPU, TEMPLATE, EXPERIMENT, *tiny(tiny_corpus), "--trainer.max_epochs=2"],
                         cwd=work, env=job_env())
    info = cluster.wait(job, {"COMPLETED"}, timeout=420)
    log = job_log(work, job)
    assert info["ExitCode"] == "0:0", log
    assert "MEMBER: 2/2" in log and "distributed_backend=gloo" in log, log  # two ranks, one group
    run_root = work / "runs" / "finetune_synthetic" / f"slurm-{job}"
    last = next(run_root.rglob("last.ckpt"))
    assert global_step(last) == 2 * BATCHES  # each rank's 4 batches are one step: no duplicated work
    metrics = logged_metrics(run_root)
    assert len(metrics["val/ccc_mean"]) >= 2 and all(-1 <= v <= 1 for v in metrics["val/ccc_mean"])
    assert "test/ccc_mean" in metrics  # evaluate_after_fit ran under DDP too
    assert [r["run_id"] for r in wandb_runs(run_root)] and "val/ccc_mean" in wandb_runs(run_root)[0]["summary"]

    # 2. preemption: SIGUSR1 to every rank mid-run -> hpc checkpoint, requeue, resume, same W&B run
    epochs = 8
    job = cluster.sbatch([*SBATCH_CPU, TEMPLATE, EXPERIMENT, *tiny(tiny_corpus), f"--trainer.max_epochs={epochs}",
                          "--evaluate_after_fit=false"], cwd=work, env=job_env())
    run_root = work / "runs" / "finetune_synthetic" / f"slurm-{job}"
    deadline = time.monotonic() + 300
    while not list(run_root.rglob("last.ckpt")):  # the first epoch has ended: training is under way
        assert time.monotonic() < deadline and cluster.job(job)["JobState"] in {"PENDING", "RUNNING"}, job_log(work, job)
        time.sleep(0.2)
    cluster.run("scancel", "--signal=USR1", job)  # what --signal=SIGUSR1@90 sends before the time limit
    info = cluster.wait(job, {"PENDING"}, timeout=120, poll=0.5)
    assert info["Restarts"] == "1", info  # SlurmRequeue ran `scontrol requeue`
    hpc = run_root / "hpc_ckpt_1.ckpt"
    assert hpc.is_file(), sorted(p.name for p in run_root.iterdir())
    saved_step = global_step(hpc)
    assert 0 < saved_step < epochs * BATCHES
    cluster.release_now(job)
    info = cluster.wait(job, {"COMPLETED"}, timeout=420)
    log = job_log(work, job)
    assert info["ExitCode"] == "0:0" and f"resuming from {hpc.relative_to(work)}" in log, log
    assert "SLURM preemption signal: saving the HPC checkpoint" in log, log  # all ranks together
    assert global_step(newest(run_root, "last.ckpt")) == epochs * BATCHES, log
    runs = wandb_runs(run_root)
    assert len(runs) == 2 and runs[0]["run_id"] == runs[1]["run_id"] is not None, runs  # one W&B run, resumed
    steps = [row["trainer/global_step"] for row in runs[1]["history"] if "trainer/global_step" in row]
    assert steps and min(steps) >= saved_step - 1, steps  # the second attempt continues, not restarts

    # 3. another job pointed at that run folder must not silently continue the preempted run
    other = cluster.sbatch([*SBATCH_CPU, TEMPLATE, EXPERIMENT, *tiny(tiny_corpus)], cwd=work,
                           env={**job_env(), "RUN_ROOT": str(run_root.relative_to(work))})
    cluster.wait(other, {"FAILED"}, timeout=180)
    assert f"was saved by SLURM job {job}, not by this job ({other})" in job_log(work, other), job_log(work, other)


def test_a_dying_rank_fails_the_job_quickly_and_says_which(cluster, work, tiny_corpus):
    job = cluster.sbatch([*SBATCH_CPU, TEMPLATE, EXPERIMENT, *tiny(tiny_corpus), "--trainer.max_epochs=50",
                          "--trainer.callbacks+=faults.ExitOnRank", "--trainer.callbacks.init_args.rank=1",
                          "--trainer.callbacks.init_args.step=2", "--trainer.callbacks.init_args.code=3"],
                         cwd=work, env=job_env())
    info = cluster.wait(job, {"FAILED"}, timeout=300)
    log = job_log(work, job)
    assert "rank 1 exits with code 3" in log and "task 1: Exited with exit code 3" in log, log
    # bounded: srun --kill-on-bad-exit ends rank 0 at once instead of leaving it in a collective
    hours, minutes, seconds = (int(x) for x in info["RunTime"].split("-")[-1].split(":"))
    assert "-" not in info["RunTime"] and hours * 3600 + minutes * 60 + seconds < 240, info


def test_wrong_launches_say_how_to_launch(cluster, work, tiny_corpus):
    # a template run by bash, outside any SLURM job
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", TEMPLATE, EXPERIMENT], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "sbatch experiments/slurm/fit_one_node.sbatch" in proc.stderr, proc.stderr
    # a 2-task job that starts the CLI without srun: one process would wait for a rank that never comes
    fer = job_env()["FER_LIGHTNING"]
    job = cluster.sbatch([*SBATCH_CPU, "--output=runs/slurm/nosrun-%j.out",
                          f"--wrap={fer} fit --config {EXPERIMENT} " + " ".join(tiny(tiny_corpus))],
                         cwd=work, env=job_env())
    cluster.wait(job, {"FAILED"}, timeout=120)
    log = job_log(work, job)
    assert "has 2 tasks, but fer-lightning was started without srun" in log and "srun fer-lightning fit" in log, log


def test_two_sweep_agents_share_the_offline_engine_from_a_fresh_checkout(cluster, tiny_corpus, tmp_path):
    # what a researcher does: clone, then an array of sweep agents; W&B's sweep engine runs in
    # the agents (standing in for wandb.ai), which take turns through the shared sweep folder
    import json

    work = fresh_checkout(tmp_path / "clone")
    assert sorted(p.name for p in (work / "runs").rglob("*")) == [".gitkeep", "slurm"]  # the log folder ships
    quick = ["--trainer.accelerator=cpu", f"--data.root={tiny_corpus}", "--model.net.backbone=test_resnet",
             "--model.init_from=null", "--data.image_size=32", "--data.batch_size=3", "--data.num_workers=0",
             "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2",
             "--trainer.enable_progress_bar=false"]
    job = cluster.sbatch(["--array=0-1", "--gpus-per-node=0", "--cpus-per-task=1", "--time=15",
                          "experiments/slurm/sweep_agents.sbatch", "experiments/sweeps/finetune_synthetic.yaml",
                          *quick], cwd=work, env=job_env())
    deadline = time.monotonic() + 600
    while True:
        states = re.findall(r"JobState=(\S+)", cluster.run("scontrol", "show", "job", "-o", job, check=False))
        if len(states) == 2 and all(s in FINAL for s in states):
            break
        assert time.monotonic() < deadline, states
        time.sleep(1)
    logs = {p.name: p.read_text() for p in (work / "runs" / "slurm").glob(f"fer-sweep-{job}_*.out")}
    assert len(logs) == 2 and states == ["COMPLETED", "COMPLETED"], (states, logs)
    records = [json.loads(p.read_text()) for p in (work / "runs/sweeps/finetune_synthetic/runs").glob("run-*.json")]
    assert len(records) == 2 and {r["state"] for r in records} == {"finished"}, records
    assert len({r["agent"] for r in records}) == 2  # one run per agent, each its own process
    assert records[0]["params"] != records[1]["params"]  # the engine saw the first run when it suggested the second
    for r in records:
        own = work / "runs" / "finetune_synthetic" / "sweep-finetune_synthetic" / r["run_id"]
        assert len(list(own.rglob("finished.json"))) == 1 and -1 <= r["summary"]["val/ccc_mean"] <= 1
    rows = (work / "runs/sweeps/finetune_synthetic/results.csv").read_text().splitlines()
    assert len(rows) == 3  # both agents' runs in the sweep's results
