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
                                "--model.pretrained=true")
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
                "--model.pretrained=true")
        finished = matching
    newest = max(finished, key=lambda f: (f / FINISHED).stat().st_mtime)
    best = sorted(newest.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    return best[-1] if best else max(newest.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
