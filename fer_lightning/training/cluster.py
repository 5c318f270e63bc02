"""Running under SLURM: is this process launched the way Lightning needs, which job is it, and
which checkpoint does a requeued job resume from.

Lightning's ``SLURMEnvironment`` reads ranks from the variables ``srun`` sets for each task;
``experiments/slurm/*.sbatch`` start one task per device with ``srun``. A process started in a
multi-task allocation without ``srun`` would wait forever for ranks that were never started,
so :func:`check_launch` stops it with instructions instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

HPC_CKPT = re.compile(r"^hpc_ckpt_(\d+)\.ckpt$")


class LaunchError(RuntimeError):
    """The process was started in a way that cannot work (the message says how to launch)."""


def in_slurm_job(environ: Mapping[str, str] = os.environ) -> bool:
    """Inside a SLURM allocation (batch script, salloc shell or srun task)."""
    return "SLURM_JOB_ID" in environ


def slurm_job_id(environ: Mapping[str, str] = os.environ) -> str | None:
    """The job's id as ``scontrol`` names it: ``<array job>_<task>`` for array tasks."""
    if "SLURM_ARRAY_JOB_ID" in environ and "SLURM_ARRAY_TASK_ID" in environ:
        return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    return environ.get("SLURM_JOB_ID")


def check_launch(environ: Mapping[str, str] = os.environ) -> None:
    """Raise :class:`LaunchError` when a multi-task SLURM allocation runs us without ``srun``."""
    if not in_slurm_job(environ):
        return
    tasks = int(environ.get("SLURM_NTASKS", "1") or 1)
    if tasks > 1 and "SLURM_STEP_ID" not in environ:
        raise LaunchError(
            f"this SLURM job ({slurm_job_id(environ)}) has {tasks} tasks, but fer-lightning was started "
            "without srun, so the other ranks do not exist and training would wait for them forever. "
            "Start one process per task with srun, as the templates do:\n"
            "    srun fer-lightning fit --config ... --trainer.devices=$SLURM_NTASKS_PER_NODE "
            "--trainer.num_nodes=$SLURM_NNODES\n"
            "or submit a template: sbatch experiments/slurm/fit_one_node.sbatch experiments/<experiment>.yaml")


def hpc_checkpoint(root: str | Path | None) -> Path | None:
    """The checkpoint Lightning resumes a requeued SLURM job from: ``hpc_ckpt_<N>.ckpt`` with
    the highest N in the run folder (the trainer's ``default_root_dir``), or None."""
    folder = Path(root or ".")
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := HPC_CKPT.match(p.name))]
    return max(found)[1] if found else None


def check_hpc_owner(path: Path, environ: Mapping[str, str] = os.environ) -> None:
    """Raise :class:`LaunchError` when the HPC checkpoint Lightning is about to resume from was
    saved by another SLURM job (runs that share a folder would continue each other)."""
    import torch

    saved_by = torch.load(path, map_location="cpu", weights_only=True).get("slurm_job_id")
    this_job = slurm_job_id(environ)
    if saved_by is not None and saved_by != this_job:
        raise LaunchError(
            f"{path} was saved by SLURM job {saved_by}, not by this job ({this_job}), and Lightning resumes "
            "any SLURM job from the HPC checkpoint in its run folder. Give each job its own folder with "
            "--run_root=runs/<experiment>/slurm-$SLURM_JOB_ID (the templates in experiments/slurm do), "
            "or move the file away to start afresh.")


def _requeue_callback_base():
    import lightning as L

    return L.Callback


class SlurmRequeue(_requeue_callback_base()):
    """SLURM preemption without races: SIGUSR1 (``#SBATCH --signal=SIGUSR1@90``, or ``scancel
    --signal=USR1``) only raises a flag; at the next training batch end, which every rank
    reaches together, the ranks agree on the flag (one boolean all-reduce), save the HPC
    checkpoint, rank zero runs ``scontrol requeue``, and training stops.

    It replaces Lightning's own handler (the CLI turns ``SLURMEnvironment.auto_requeue`` off),
    which saves the checkpoint inside the signal handler: a rank that takes the signal while
    its peer is inside a gradient all-reduce enters the checkpoint's barrier alone and the job
    hangs; and DataLoader workers, which inherit the handler and get the signal too, would save
    checkpoints and finish the W&B run from their forked copy of the trainer.
    """

    def __init__(self, signum: int | None = None) -> None:
        import signal

        self.signum = signum or signal.SIGUSR1
        self._pid: int | None = None
        self._received = False
        self._previous = None

    def _flag(self, signum, frame) -> None:
        if os.getpid() == self._pid:  # a forked DataLoader worker ignores it
            self._received = True

    def on_fit_start(self, trainer, pl_module) -> None:
        import signal

        if in_slurm_job():
            self._pid, self._received = os.getpid(), False
            self._previous = signal.signal(self.signum, self._flag)

    def on_fit_end(self, trainer, pl_module) -> None:
        import signal

        if self._pid is not None and self._previous is not None:
            signal.signal(self.signum, self._previous)
        self._pid = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._pid is None or not trainer.strategy.reduce_boolean_decision(self._received, all=False):
            return
        from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

        rank_zero_info(f"SLURM preemption signal: saving the HPC checkpoint at step {trainer.global_step}")
        for logger in trainer.loggers:  # the run's files are complete before the job goes
            logger.finalize("finished")
        trainer.save_checkpoint(trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir))
        requeued = True
        if trainer.is_global_zero:
            import subprocess

            job = slurm_job_id()
            result = subprocess.run(["scontrol", "requeue", str(job)], capture_output=True, text=True)
            requeued = result.returncode == 0
            if requeued:
                rank_zero_info(f"requeued SLURM job {job}")
            else:
                rank_zero_warn(f"scontrol requeue {job} failed ({result.returncode}): {result.stderr.strip()}; "
                               "training goes on until the time limit")
        self._received = False
        trainer.should_stop = trainer.strategy.reduce_boolean_decision(requeued, all=True)
