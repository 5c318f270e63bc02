"""W&B logging that works without network: offline run files under the run folder, uploaded
later with ``wandb sync``; online only when asked and a key is there; one run id per training
run, carried in its checkpoints so that a resumed run continues the same W&B run.

wandb 0.31 writes no summary file offline and ships no Python reader for its ``.wandb`` run
file, so :func:`read_run` reads it: a LevelDB-style log (a 7-byte ``:W&B`` header, 32 KiB
blocks, 7-byte record headers) of ``wandb_internal_pb2.Record`` protobuf messages.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

HEADER_LEN = 7
BLOCK_LEN = 32768
RECORD_HEADER_LEN = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
WANDB_FLUSH_S = 1.0  # seconds between writes of an offline run file


def has_wandb_key() -> bool:
    """An API key in the environment or in ~/.netrc (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


class RunWandbLogger(WandbLogger):
    """``WandbLogger`` with the project's defaults: offline unless ``online`` is true (then a
    key must exist: ``wandb login`` or ``WANDB_API_KEY``), run files under ``save_dir``, and
    ``id`` reused when the CLI resumes from a checkpoint that names its W&B run.

    Args:
        save_dir: the experiment's run folder (``runs/<experiment>``).
        project: the W&B project (default ``fer-lightning``; ``WANDB_PROJECT`` overrides the
            default when set).
        entity: the W&B team or user the run goes to (null: ``WANDB_ENTITY``, else your default
            entity on wandb.ai).
        name, tags, group: as in W&B.
        online: stream to wandb.ai while training instead of writing offline run files (also
            when the environment says ``WANDB_MODE=online``).
        id: the W&B run to continue (set by the CLI on ``--ckpt_path``).
    """

    def __init__(self, save_dir: str = "runs", project: str = "fer-lightning", name: str | None = None,
                 online: bool = False, id: str | None = None, tags: list[str] | None = None,
                 group: str | None = None, log_model: bool = False, entity: str | None = None) -> None:
        online = online or os.environ.get("WANDB_MODE") == "online"
        if online and not has_wandb_key():
            raise ValueError("W&B online logging needs an API key: run `wandb login` or set WANDB_API_KEY "
                             "(or leave online: false; offline runs upload later with `wandb sync`)")
        if project == "fer-lightning" and os.environ.get("WANDB_PROJECT"):
            project = os.environ["WANDB_PROJECT"]  # a sweep agent's project, or the user's default
        entity = entity or os.environ.get("WANDB_ENTITY") or None
        # W&B writes its run file every 15 s by default: a kill -9 (out of memory, a lost node) would
        # lose up to 15 s of history that the checkpoint it resumes from already counts as done
        os.environ.setdefault("WANDB__TRANSACTION_LOG_FLUSH_INTERVAL", str(WANDB_FLUSH_S))
        super().__init__(save_dir=save_dir, project=project, name=name, offline=not online, id=id,
                         resume="allow" if id else None, tags=tags, group=group, log_model=log_model,
                         entity=entity)
        self.entity = entity
        self._closed_for_requeue = False

    @property
    def experiment(self):
        if self._closed_for_requeue:  # the job is being requeued: what is left to log goes nowhere
            from lightning.fabric.loggers.logger import _DummyExperiment

            return _DummyExperiment()
        if self._experiment is None and self._save_dir:  # made with the run, not when the config is read
            Path(self._save_dir).mkdir(parents=True, exist_ok=True)
        return super().experiment

    def finalize(self, status: str) -> None:
        super().finalize(status)
        from fer_lightning.training.cluster import in_slurm_job

        # Lightning's SLURM requeue handler finalizes with "finished", saves the HPC checkpoint and
        # requeues; SLURM then kills the job. Close the run now so that its file is complete (a
        # killed W&B process leaves an empty one); the requeued job reopens it by id.
        if status == "finished" and in_slurm_job() and self._experiment is not None:
            self._experiment.finish()
            self._closed_for_requeue = True


class _ResumedWriter(ExperimentWriter):
    """Lightning's CSV writer, but an existing ``metrics.csv`` is continued, not deleted: rows
    logged after the checkpoint being resumed (epoch, step) are dropped, since the resumed run
    logs them again, and the rest are kept with their columns."""

    def __init__(self, log_dir: str, resumed_at: tuple[int, int] | None) -> None:
        self._resumed_at = resumed_at
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        import csv

        if self._resumed_at is None or not self._fs.isfile(self.metrics_file_path):
            return super()._check_log_dir_exists()
        epoch, step = self._resumed_at
        with self._fs.open(self.metrics_file_path, "r", newline="") as fh:
            reader = csv.DictReader(fh)
            keys, rows = list(reader.fieldnames or []), list(reader)

        def before(row: dict) -> bool:
            try:
                e, s = int(float(row.get("epoch") or epoch)), int(float(row.get("step") or 0))
            except ValueError:
                return True
            return e < epoch or (e == epoch and s <= step)

        from fer_lightning.io import atomic_path

        with atomic_path(self.metrics_file_path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(r for r in rows if before(r))
        self.metrics_keys = sorted(keys)


class RunCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` that a resumed run continues: with ``resumed_at`` (set by the
    CLI on ``--ckpt_path``, with ``version`` set to the killed run's), the run's ``metrics.csv``
    keeps its rows up to the checkpoint instead of being deleted (Lightning's own deletes it).

    Args:
        save_dir, name, version: as in Lightning's ``CSVLogger``.
        resumed_at: (epoch, optimizer steps) of the checkpoint the run resumes from.
    """

    def __init__(self, save_dir: str = "runs", name: str = "logs", version: int | str | None = None,
                 resumed_at: tuple[int, int] | None = None, **kwargs) -> None:
        super().__init__(save_dir=save_dir, name=name, version=version, **kwargs)
        self._resumed_at = tuple(resumed_at) if resumed_at is not None else None

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumedWriter(self.log_dir, self._resumed_at)
        return self._experiment


def wandb_run_id(trainer) -> str | None:
    """The W&B run id of the trainer's W&B logger, if it has one."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return logger.version
    return None


def _payloads(data: bytes) -> Iterator[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run file (no ':W&B' header)")
    pos, parts = HEADER_LEN, []
    while pos + RECORD_HEADER_LEN <= len(data):
        left = BLOCK_LEN - pos % BLOCK_LEN
        if left < RECORD_HEADER_LEN:  # the rest of a block is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + RECORD_HEADER_LEN])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + RECORD_HEADER_LEN:pos + RECORD_HEADER_LEN + length]
        pos += RECORD_HEADER_LEN + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            parts = [chunk]
        elif kind == MIDDLE:
            parts.append(chunk)
        elif kind == LAST:
            parts.append(chunk)
            yield b"".join(parts)
            parts = []


def read_run(path: str | Path) -> dict:
    """What an offline ``.wandb`` run file holds: run id, config, history rows (one dict per
    logged step, values decoded from JSON), the last value of every key (``summary``), and the
    files it names (``files``, e.g. logged images)."""
    from wandb.proto import wandb_internal_pb2

    out: dict = {"run_id": None, "config": {}, "history": [], "summary": {}, "files": []}
    for payload in _payloads(Path(path).read_bytes()):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run_id"] = rec.run.run_id
            for item in rec.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in rec.history.item}
            out["history"].append(row)
            out["summary"].update(row)
        elif kind == "summary":
            for item in rec.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "files":
            out["files"] += [f.path for f in rec.files.files]
    return out
