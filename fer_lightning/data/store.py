"""The face-clip store: one small face video per source video plus per-frame metadata.

``fer-lightning preprocess`` fills it; training reads it. Layout under the store root::

    videos/<video_id>.mp4     aligned face crops, S x S, H.264, one frame per source frame
                              (black where there is no face, so frame i is source frame i)
    meta/<video_id>.csv       frame_index,time_s,has_face,detected,track_id,score,
                              x0,y0,x1,y1, then lm0_x,lm0_y .. lm4_x,lm4_y (source pixels)
    index.csv                 video_id,source,fps,num_frames,face_frames,coverage,status,reason
    report.json               the same per video, plus totals and the settings used

A video is finished when its ``meta`` file exists: the face video is renamed into place first,
the metadata last, both from temporary names, so a killed run leaves nothing that looks done
and a rerun redoes exactly the unfinished videos.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from fer_lightning.data.io import atomic_path, write_text_atomic

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of a preprocessing run (written into report.json)."""

    detect_every: int = 5
    size: int = 112
    margin: float = 0.15
    smooth: int = 5
    detector: str = "mtcnn"
    min_face_size: int = 40
    crf: int = 18
    gop: int = 16


def find_videos(inputs: list[str | Path]) -> list[Path]:
    """Video files named directly, found in folders (recursively), or listed one per line
    (first CSV column) in a manifest file with a ``.txt``/``.csv`` suffix."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        elif item.suffix.lower() in (".txt", ".csv"):
            for line in item.read_text().splitlines():
                name = line.split(",")[0].strip()
                if name and not name.startswith("#") and name.lower() not in ("path", "video", "video_path"):
                    p = Path(name)
                    out.append(p if p.is_absolute() else item.parent / p)
        else:
            out.append(item)
    return out


def _meta_header() -> str:
    lms = ",".join(f"lm{i}_x,lm{i}_y" for i in range(5))
    return f"frame_index,time_s,has_face,detected,track_id,score,x0,y0,x1,y1,{lms}"


def preprocess_video(source: Path, store: Path, cfg: PreprocessConfig) -> dict:
    """Detect, track, align and crop one video into the store; returns its report entry."""
    import cv2

    from fer_lightning.data.faces import align_face, create_detector, crop_face
    from fer_lightning.data.tracking import (
        detect_sparse,
        fill_track,
        link_tracks,
        main_subject,
        smooth_boxes,
    )
    from fer_lightning.data.video import VideoReadError, iter_frames, open_video

    cv2.setNumThreads(1)
    video_id = source.stem
    entry = {"video_id": video_id, "source": str(source), "fps": None, "num_frames": 0,
             "face_frames": 0, "coverage": 0.0, "status": "failed", "reason": ""}
    meta_path = store / "meta" / f"{video_id}.csv"
    if meta_path.exists() and (store / "videos" / f"{video_id}.mp4").exists():
        return _entry_from_store(entry, meta_path) | {"status": "ok", "reason": "already in store"}
    start = time.perf_counter()
    try:
        reader = open_video(source)  # checks the file and names it in any error
        fps, listed = float(reader.get_avg_fps()), len(reader)
        del reader  # both passes below stream the video front to back with PyAV
        detector = create_detector(cfg.detector, min_face_size=cfg.min_face_size)
        times: list[float] = []
        found, n = detect_sparse(iter_frames(source, times), detector.detect, every=cfg.detect_every)
        if n == 0:
            raise VideoReadError(f"no frame of {source} could be decoded")
        entry.update(num_frames=n, fps=fps)
        track = main_subject(link_tracks(found, max_gap=cfg.detect_every))
        if track is None:
            has = np.zeros(n, bool)
            boxes = np.full((n, 4), np.nan, np.float32)
            marks = np.full((n, 5, 2), np.nan, np.float32)
            scores, detected, track_id = np.full(n, np.nan, np.float32), np.zeros(n, bool), -1
        else:
            filled = fill_track(track, n, max_step=cfg.detect_every)
            has, detected, scores, track_id = filled.has_face, filled.detected, filled.scores, filled.track_id
            boxes = smooth_boxes(filled.boxes, has, cfg.smooth)
            marks = smooth_boxes(filled.landmarks, has, cfg.smooth)

        import av

        video_path = store / "videos" / f"{video_id}.mp4"
        with atomic_path(video_path) as tmp:
            container = av.open(str(tmp), mode="w", format="mp4")
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001) if fps > 0 else 25)
            stream.width = stream.height = cfg.size
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(cfg.crf), "preset": "veryfast", "g": str(cfg.gop)}
            stream.codec_context.thread_count = 1
            black = np.zeros((cfg.size, cfg.size, 3), np.uint8)
            decoded = 0
            for i, frame in enumerate(iter_frames(source)):  # second sequential pass
                if i >= n:
                    break
                decoded += 1
                if not has[i]:
                    crop = black
                elif np.isfinite(marks[i]).all():
                    crop = align_face(frame, marks[i], cfg.size, cfg.margin)
                else:
                    crop = crop_face(frame, boxes[i], cfg.size, cfg.margin)
                for packet in stream.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
            container.close()
            if decoded != n:  # both passes must see the same frames, or rows would misalign
                raise VideoReadError(f"{source}: first pass decoded {n} frames, second pass {decoded}")

        rows = [_meta_header()]
        for i in range(n):
            vals = [*boxes[i], *marks[i].reshape(-1)]
            nums = ",".join("" if not np.isfinite(v) else f"{v:.2f}" for v in vals)
            score = "" if not np.isfinite(scores[i]) else f"{scores[i]:.4f}"
            rows.append(f"{i},{times[i]:.6f},{int(has[i])},{int(detected[i])},{track_id if has[i] else -1},{score},{nums}")
        write_text_atomic(meta_path, "\n".join(rows) + "\n")  # last: marks the video finished
        face_frames = int(has.sum())
        entry.update(face_frames=face_frames, coverage=face_frames / n if n else 0.0, status="ok",
                     seconds=round(time.perf_counter() - start, 2))
        notes = []
        if listed != n:  # e.g. frames the container lists but FFmpeg drops: rows follow decoding
            notes.append(f"container lists {listed} frames, {n} decode")
        if face_frames == 0:
            notes.append("no face found in any frame")
        entry["reason"] = "; ".join(notes)
    except VideoReadError as err:
        entry["reason"] = str(err)
    except Exception as err:  # one bad video must not stop the others; the report says why
        entry["reason"] = f"{type(err).__name__}: {err}"
    return entry


def _entry_from_store(entry: dict, meta_path: Path) -> dict:
    import pandas as pd

    meta = pd.read_csv(meta_path, usecols=["has_face", "time_s"])
    n = len(meta)
    faces = int(meta["has_face"].sum())
    fps = (n - 1) / meta["time_s"].iloc[-1] if n > 1 and meta["time_s"].iloc[-1] > 0 else None
    return entry | {"num_frames": n, "face_frames": faces, "coverage": faces / n if n else 0.0, "fps": fps}


def _run_one(args: tuple[str, str, PreprocessConfig]) -> dict:
    source, store, cfg = args
    return preprocess_video(Path(source), Path(store), cfg)


def preprocess(inputs: list[str | Path], store: str | Path, cfg: PreprocessConfig, workers: int = 1,
               progress: bool = True) -> dict:
    """Preprocess every input video into ``store``; writes index.csv and report.json."""
    from tqdm.auto import tqdm

    store = Path(store)
    for sub in ("videos", "meta"):
        (store / sub).mkdir(parents=True, exist_ok=True)
    sources = find_videos(list(inputs))
    stems = [s.stem for s in sources]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ValueError(f"two inputs share a video id (file name without suffix): {', '.join(dupes)}")
    jobs = [(str(s), str(store), cfg) for s in sources]
    entries = []
    bar = tqdm(total=len(jobs), unit="video", desc="preprocess", disable=not progress)
    frames = 0
    start = time.perf_counter()
    pool = get_context("spawn").Pool(workers) if workers > 1 and len(jobs) > 1 else None
    try:
        results = pool.imap_unordered(_run_one, jobs) if pool else map(_run_one, jobs)
        for entry in results:
            entries.append(entry)
            frames += entry["num_frames"]
            bar.set_postfix(frames_per_s=f"{frames / max(1e-9, time.perf_counter() - start):.1f}")
            bar.update(1)
    finally:
        bar.close()
        if pool:
            pool.close()
            pool.join()
    run_failed = [e["video_id"] for e in entries if e["status"] != "ok"]
    # a run over some of the inputs must not drop the other videos already in the store
    previous = store / "report.json"
    if previous.exists():
        known = {e["video_id"]: e for e in json.loads(previous.read_text()).get("entries", [])}
        entries = list((known | {e["video_id"]: e for e in entries}).values())
    entries.sort(key=lambda e: e["video_id"])
    header = "video_id,source,fps,num_frames,face_frames,coverage,status,reason"
    lines = [header] + [
        f"{e['video_id']},{e['source']},{e['fps'] or ''},{e['num_frames']},{e['face_frames']},"
        f"{e['coverage']:.4f},{e['status']},\"{e['reason'].replace(chr(34), chr(39))}\""
        for e in entries
    ]
    write_text_atomic(store / "index.csv", "\n".join(lines) + "\n")
    report = {
        "settings": asdict(cfg),
        "videos": len(entries),
        "ok": sum(e["status"] == "ok" for e in entries),
        "failed": sum(e["status"] != "ok" for e in entries),
        "frames": sum(e["num_frames"] for e in entries),
        "face_frames": sum(e["face_frames"] for e in entries),
        "failed_this_run": run_failed,
        "entries": entries,
    }
    write_text_atomic(store / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def format_report(report: dict) -> str:
    """The table printed at the end of a run."""
    lines = [f"{'video':<32} {'status':<7} {'frames':>7} {'faces':>7} {'coverage':>9}  reason"]
    for e in report["entries"]:
        lines.append(f"{e['video_id'][:32]:<32} {e['status']:<7} {e['num_frames']:>7} {e['face_frames']:>7} "
                     f"{e['coverage']:>9.1%}  {e['reason']}")
    lines.append(f"{report['ok']} ok, {report['failed']} failed; {report['frames']} frames, "
                 f"{report['face_frames']} with a face")
    return "\n".join(lines)


def attach_store(records: list, store: str | Path) -> tuple[list, list[str]]:
    """Point video records at their aligned face videos in ``store``.

    Each record keeps its labels; its path becomes the store's face video, its box every
    frame's whole crop, and ``has_face`` what preprocessing found. Returns the updated records
    and the ids of videos the store lacks (not preprocessed, or failed there), which callers
    report as skipped. A store whose frame count differs from the record's is an error: labels
    would no longer line up with frames.
    """
    import dataclasses

    import pandas as pd

    store = Path(store)
    out, missing = [], []
    for rec in records:
        meta_path = store / "meta" / f"{rec.video_id}.csv"
        video = store / "videos" / f"{rec.video_id}.mp4"
        if not (meta_path.exists() and video.exists()):
            missing.append(rec.video_id)
            continue
        meta = pd.read_csv(meta_path, usecols=["frame_index", "has_face"])
        if len(meta) != rec.num_frames:
            raise ValueError(
                f"{rec.video_id}: the face store holds {len(meta)} frames but the corpus has {rec.num_frames}; "
                f"was {meta_path} made from another video?"
            )
        side = _store_side(store)
        boxes = np.tile(np.array([[0, 0, side, side]], np.float32), (rec.num_frames, 1))
        out.append(dataclasses.replace(rec, path=video, boxes=boxes, has_face=meta["has_face"].to_numpy(bool)))
    return out, missing


def _store_side(store: Path) -> int:
    report = store / "report.json"
    if report.exists():
        return int(json.loads(report.read_text())["settings"]["size"])
    return PreprocessConfig().size
