"""Finding a run's checkpoints on disk (no model code: the data and the model both ask)."""

from __future__ import annotations

from pathlib import Path


def latest_checkpoint(runs: str | Path = "runs", prefix: str = "pretrain") -> Path:
    """The newest checkpoint of the newest run under ``runs/<prefix>*``: its ``best-*.ckpt``
    (by modification time) if it has one, else its ``last.ckpt``."""
    roots = sorted(Path(runs).glob(f"{prefix}*"))
    found = [p for r in roots for p in r.rglob("*.ckpt")]
    if not found:
        raise FileNotFoundError(
            f"no pretraining checkpoint under {Path(runs) / (prefix + '*')}; run `make pretrain` first "
            "or give model.init_from=PATH"
        )
    newest_dir = max(found, key=lambda p: p.stat().st_mtime).parent
    best = sorted(newest_dir.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    return best[-1] if best else max(newest_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
