"""Finding a run's checkpoints on disk (no model code: the data and the model both ask)."""

from __future__ import annotations

import json
from pathlib import Path

FINISHED = "finished.json"  # written beside a run's checkpoints when its fit ends (training.guards.RunFinished)


def latest_checkpoint(runs: str | Path = "runs", prefix: str = "pretrain", synthetic: bool | None = None) -> Path:
    """The best checkpoint of the newest finished run under ``runs/<prefix>*``: its
    ``best-*.ckpt`` (the newest, by modification time) if it has one, else its newest ``*.ckpt``.

    Only runs whose fit ended count (``finished.json`` beside the checkpoints), so never a run
    still going or one that was killed. ``synthetic``: True takes only runs on the synthetic
    corpus, False only runs on any other (so a real corpus never starts from the demo's faces);
    None takes any. The errors say what was found and what to do instead.
    """
    where = Path(runs) / f"{prefix}*"
    folders = sorted({p.parent for r in sorted(Path(runs).glob(f"{prefix}*")) for p in r.rglob("*.ckpt")})
    if not folders:
        raise FileNotFoundError(f"no pretraining checkpoint under {where}; run `make pretrain` first, give "
                                "model.init_from=PATH, or start from ImageNet weights: --model.init_from=null "
                                "--model.net.pretrained=true")
    finished = [f for f in folders if (f / FINISHED).is_file()]
    if not finished:
        raise FileNotFoundError(f"no finished pretraining run under {where} (still running or stopped: "
                                + ", ".join(str(f) for f in folders[:5])
                                + "); wait for it, or give model.init_from=PATH to take a checkpoint as it is")
    if synthetic is not None:
        kinds = {f: json.loads((f / FINISHED).read_text()).get("dataset") == "synthetic" for f in finished}
        matching = [f for f in finished if kinds[f] == synthetic]
        if not matching:
            mine = "the synthetic corpus" if synthetic else "a real corpus"
            theirs = "real corpora" if synthetic else "the synthetic corpus (the demo's)"
            raise FileNotFoundError(
                f"the finished pretraining runs under {where} are all on {theirs}; this run is on {mine} and would "
                f"start from faces of another kind: pretrain on yours first (make pretrain DATASET=... ROOT=...), "
                "give model.init_from=PATH, or start from ImageNet weights: --model.init_from=null "
                "--model.net.pretrained=true")
        finished = matching
    newest = max(finished, key=lambda f: (f / FINISHED).stat().st_mtime)
    best = sorted(newest.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    return best[-1] if best else max(newest.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)


def resumable_checkpoint(root: str | Path) -> Path | None:
    """What ``--ckpt_path last`` resumes: the newest ``last.ckpt`` (or Lightning's ``last-vN.ckpt``)
    of this run folder's own log versions (``<root>/<logger>/<version>/checkpoints/``, or
    ``<root>/checkpoints/`` without a logger), or a SLURM HPC checkpoint (``hpc_ckpt_<N>.ckpt``)
    in ``root`` if that is newer; None when there is none. Run folders nested below ``root``
    (``slurm-<job>/``, ``sweep-<id>/``) are other runs and are not searched.

    Lightning's own ``last`` looks only in the checkpoint folder of the run being started, which
    is a new logger version, so a killed run would silently start again from epoch 0."""
    folder = Path(root)
    if not folder.is_dir():
        return None
    found = [p for pattern in ("*/*/checkpoints/last*.ckpt", "checkpoints/last*.ckpt") for p in folder.glob(pattern)
             if p.name == "last.ckpt" or p.name.startswith("last-v")]
    found += [p for p in folder.glob("hpc_ckpt_*.ckpt")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def is_newest_in_its_run(path: str | Path, dirpath: str | Path | None) -> bool:
    """Whether checkpoint ``path`` is at least as new as every checkpoint its run wrote into
    ``dirpath``: resuming it continues that run; resuming an older one (a best-epoch file) is
    a branch, which must not overwrite what the run logged after it."""
    path = Path(path)
    if dirpath is None or not Path(dirpath).is_dir():
        return True
    newest = max((p.stat().st_mtime for p in Path(dirpath).glob("*.ckpt")), default=0.0)
    return path.stat().st_mtime >= newest - 1.0


def load_checkpoint_file(path: str | Path) -> dict:
    """A checkpoint's contents, loaded as data only (``weights_only``: no code runs from the
    file), its tensors memory-mapped, so that the checks a command makes before it starts do
    not read a large checkpoint whole."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a file in torch's legacy (non-zip) format cannot be mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def resume_facts(path: str | Path) -> dict:
    """What a run resumed from checkpoint ``path`` must continue: its W&B run id, the folder its
    ModelCheckpoint wrote to (so the resumed run keeps its best-k bookkeeping and log version),
    and where it stopped (epoch, optimizer steps)."""
    ckpt = load_checkpoint_file(path)
    dirpaths = [state.get("dirpath") for key, state in (ckpt.get("callbacks") or {}).items()
                if str(key).startswith("ModelCheckpoint") and isinstance(state, dict)]
    loop = (ckpt.get("loops") or {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    return {"wandb_run_id": ckpt.get("wandb_run_id"), "dirpath": next((d for d in dirpaths if d), None),
            "epoch": int(ckpt.get("epoch", 0)), "step": int(loop.get("_batches_that_stepped", ckpt.get("global_step", 0)))}
