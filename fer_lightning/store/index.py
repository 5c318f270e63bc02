"""The files setup reads instead of the raw corpus: ``index.csv`` (one row per face video and
per failed source) and ``frames.parquet`` (every face video's frames), and the table
``preprocess`` prints at the end of a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_lightning.io import atomic_path, write_text_atomic


def write_index(store: str | Path, entries: list[dict], size: int, redone: set[str] = frozenset()) -> None:
    """Write ``index.csv`` (one row per face video, and per failed source) and ``frames.parquet``
    (every face video's frames: ``frame_index``, ``time_s``, ``has_face``) from the report's
    ``entries``: what setup reads instead of the raw corpus and ``meta/``. Rows of an earlier
    ``frames.parquet`` are kept for face videos not in ``redone``; the others are read from
    their ``meta/*.csv`` once, here."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = Path(store)
    rows = []
    for e in entries:
        for out in e["outputs"] or [{"video_id": e["video_id"], "face_frames": e["face_frames"], "coverage": e["coverage"]}]:
            rows.append({"video_id": out["video_id"], "source_id": e["video_id"],
                         "source_rel": e.get("source_rel") or Path(e["source"]).name, "source": e["source"],
                         "fps": e["fps"], "num_frames": e["num_frames"], "face_frames": out["face_frames"],
                         "coverage": round(out["coverage"], 4), "size": size, "status": e["status"],
                         "reason": e["reason"]})
    columns = ["video_id", "source_id", "source_rel", "source", "fps", "num_frames", "face_frames", "coverage", "size",
               "status", "reason"]
    write_text_atomic(store / "index.csv", pd.DataFrame(rows, columns=columns).to_csv(index=False))
    wanted = [r["video_id"] for r in rows if r["status"] == "ok"]
    parts, have = [], set()
    previous = store / "frames.parquet"
    keep = sorted(set(wanted) - set(redone))
    if previous.is_file() and keep:
        old = pq.read_table(previous, filters=[("video_id", "in", keep)]).to_pandas()
        old["video_id"] = old["video_id"].astype(str)
        parts.append(old)
        have = set(old["video_id"].unique())
    for vid in wanted:
        if vid not in have:
            meta = pd.read_csv(store / "meta" / f"{vid}.csv",
                               usecols=lambda c: c in ("frame_index", "time_s", "has_face"))
            parts.append(meta.assign(video_id=vid) if "time_s" in meta.columns else
                         meta.assign(video_id=vid, time_s=np.nan))
    frames = (pd.concat(parts, ignore_index=True) if parts else
              pd.DataFrame({"video_id": [], "frame_index": [], "time_s": [], "has_face": []}))
    order = {vid: i for i, vid in enumerate(wanted)}
    frames = frames.assign(_o=frames["video_id"].map(order)).sort_values(["_o", "frame_index"], kind="stable")
    table = pa.table({"video_id": pa.array(frames["video_id"].astype(str)).dictionary_encode(),
                      "frame_index": pa.array(frames["frame_index"].to_numpy(np.int32)),
                      "time_s": pa.array(frames["time_s"].to_numpy(np.float64)),
                      "has_face": pa.array(frames["has_face"].to_numpy(bool))})
    with atomic_path(store / "frames.parquet") as tmp:
        pq.write_table(table, tmp)


def format_report(report: dict) -> str:
    """The table printed at the end of a run: one line per face video, one per failed source."""
    lines = [f"{'video':<36} {'status':<7} {'frames':>7} {'faces':>7} {'coverage':>9}  reason"]
    for e in report["entries"]:
        for out in e["outputs"] or [{"video_id": e["video_id"], "face_frames": e["face_frames"], "coverage": e["coverage"]}]:
            lines.append(f"{out['video_id'][:36]:<36} {e['status']:<7} {e['num_frames']:>7} {out['face_frames']:>7} "
                         f"{out['coverage']:>9.1%}  {e['reason']}")
    lines.append(f"{report['ok']} ok, {report['failed']} failed; {report['frames']} frames, "
                 f"{report['face_frames']} with a face; {report['face_videos']} face videos; "
                 f"{len(report['already_in_store'])} videos were already in the store")
    return "\n".join(lines)
