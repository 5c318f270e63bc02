"""What ``predict`` writes and claims in its output folder: the per-frame CSV, the report that
names every file a run wrote, and the refusal to replace files it did not write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fer_lightning.inference.settings import PredictConfig
from fer_lightning.io import atomic_path


def write_csv(path: str | Path, times: np.ndarray, has: np.ndarray, tracks: np.ndarray, boxes: np.ndarray,
              values: np.ndarray, names: list[str]) -> None:
    """One row per frame: index, time, face, track, box, then one column per output (empty
    where not finite)."""
    def num(v: float, fmt: str) -> str:
        return format(v, fmt) if np.isfinite(v) else ""

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(",".join(["frame_index", "time_s", "has_face", "track_id", "x0", "y0", "x1", "y1", *names]) + "\n")
        for i in range(len(has)):
            row = [str(i), num(times[i], ".6f"), str(int(has[i])), str(tracks[i]) if has[i] else "",
                   *(num(v, ".1f") for v in boxes[i]), *(num(v, ".5f") for v in values[i])]
            f.write(",".join(row) + "\n")


def given_path(video: Path) -> str:
    """A video's path as given, as a relative POSIX path (no root, no ``..``), for its id."""
    parts = [p for p in Path(video).parts if p not in ("/", "..", ".")]
    return "/".join(parts)


REPORT = "predict_report.json"


def output_files(out_dir: str | Path, video_id: str, cfg: PredictConfig) -> list[Path]:
    """Every file ``predict`` writes for video ``video_id`` into ``out_dir``."""
    out_dir = Path(out_dir)
    files = [out_dir / f"{video_id}.csv", out_dir / f"{video_id}.png"]
    files += [out_dir / f"{video_id}.mp4"] if cfg.render else []
    return files + ([out_dir / "abaw" / f"{video_id}.txt"] if cfg.abaw else [])


def refuse_foreign_outputs(out_dir: str | Path, video_ids: list[str], cfg: PredictConfig) -> list[dict]:
    """Raise :class:`~fer_lightning.errors.UserInputError`, before any work, when a file that
    ``predict`` would write is already in ``out_dir`` and no earlier ``predict`` wrote it there
    (the user's own ``x.csv``): it is never replaced. Returns the entries of the earlier report."""
    from fer_lightning.errors import UserInputError

    report = Path(out_dir) / REPORT
    earlier: list[dict] = []
    if report.is_file():
        try:
            saved = json.loads(report.read_text())
            earlier = saved["videos"] + saved.get("earlier_videos", [])
        except (ValueError, KeyError, TypeError):
            raise UserInputError(f"{report} is not a report of fer-lightning predict; choose another --out "
                                 "folder, or move that file away") from None
    ours = {str(Path(f).resolve()) for e in earlier for f in (e.get("files") or {}).values()}
    foreign = [f for vid in video_ids for f in output_files(out_dir, vid, cfg)
               if f.exists() and str(f.resolve()) not in ours]
    if foreign:
        raise UserInputError(f"--out {out_dir} already holds {len(foreign)} files that predict would replace and "
                             f"did not write: {', '.join(map(str, foreign[:5]))}; choose another --out folder, or move "
                             "them away")
    return earlier


def summary_line(e: dict) -> str:
    if e["status"] != "ok":
        return f"FAILED {e['video']}: {e['reason']}"
    note = f"  ({'; '.join(e['notes'])})" if e["notes"] else ""
    return (f"{e['video']}: {e['frames']} frames, face on {e['coverage']:.0%}, {e['realtime_factor']:.2f}x real time "
            f"-> {e['files']['csv']}{note}")
