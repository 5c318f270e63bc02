"""The face-clip store: one small face video per face (usually one per source video) plus
per-frame metadata.

``fer-lightning preprocess`` fills it; training reads it. Layout under the store root::

    videos/<video_id>.mp4     aligned face crops, S x S, H.264, one frame per source frame
                              (black where there is no face, so frame i is source frame i)
    meta/<video_id>.csv       frame_index,time_s,has_face,detected,track_id,score,
                              x0,y0,x1,y1, then lm0_x,lm0_y .. lm4_x,lm4_y (source pixels)
    done/<source_id>.json     written last for each source video: its face videos and figures
    tmp/                      face videos being written (a killed run's leftovers are removed)
    index.csv                 video_id,source_id,source_rel,source,fps,num_frames,face_frames,
                              coverage,size,status,reason: one row per face video and per failed
                              source (``source_rel``: the source's path under its input root)
    frames.parquet            video_id,frame_index,time_s,has_face: every face video's frames,
                              in one table (what training reads at setup, instead of meta/)
    report.json               per source video, plus totals and the settings used

``index.csv``, ``frames.parquet`` and ``report.json`` are what setup reads: with them (and the
labels) training needs neither the raw corpus nor one metadata file per video.

A source's id (``source_id``) is its file name without suffix while no other input shares that
name, else its path under the input root with ``__`` for ``/`` (:mod:`fer_lightning.store.ids`;
an id once in the index is kept). ``video_id`` is the source's id, or with ``--faces all`` and
several faces ``<source>_left`` / ``<source>_right`` (Aff-Wild2's naming) or
``<source>_face1``...; ``--two_person`` names the videos that get ``_left`` / ``_right`` and
leaves the others alone.

A source video is finished when its ``done`` record exists and names outputs that are all in
place: face videos and metadata are renamed into place from temporary names first, the
record last, so a killed run leaves nothing that looks done and a rerun redoes exactly the
unfinished videos.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from multiprocessing import TimeoutError as PoolTimeout
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from fer_lightning.io import write_text_atomic
from fer_lightning.media.discover import find_sources
from fer_lightning.media.fingerprint import file_fingerprint
from fer_lightning.media.video import count_frames
from fer_lightning.store.done import (
    clear_unfinished,
    done_path,
    finished_record,
    given_ids,
    refuse_other_videos,
)
from fer_lightning.store.ids import source_id, video_ids
from fer_lightning.store.index import write_index
from fer_lightning.store.lock import store_writer
from fer_lightning.store.outputs import (
    FaceOutput,
    choose_outputs,
    frame_rate_note,
    store_face_crop,
    two_person_ids,
    write_meta,
)
from fer_lightning.store.settings import PreprocessConfig

__all__ = ["PreprocessConfig", "preprocess", "preprocess_video"]


def preprocess_video(source: Path, store: Path, cfg: PreprocessConfig,
                     on_frames: Callable[[int], None] | None = None, video_id: str | None = None,
                     source_rel: str | None = None) -> dict:
    """Detect, track, align and crop one video into the store in a single decoding pass;
    returns its report entry. ``on_frames(k)`` is called as frames are processed. ``video_id``
    is the source's id in the store (default: its file name without suffix) and ``source_rel``
    its path under its input root (default: its file name).

    Every track gets its own face video while the video streams past (up to
    ``cfg.max_track_writers`` at once); at the end the chosen faces' videos are renamed into
    place and the rest deleted. A face made of several tracks, or one whose track had no
    writer, is encoded in a second pass over the source.
    """
    import cv2

    from fer_lightning.faces.detect import create_detector
    from fer_lightning.faces.stream import StreamingTracker
    from fer_lightning.faces.tracking import group_tracks
    from fer_lightning.media.face_video import FaceVideoWriter
    from fer_lightning.media.video import VideoReadError, iter_frames, open_video

    cv2.setNumThreads(1)  # the pool runs one process per core
    video_id = video_id or source_id(source)
    entry = {"video_id": video_id, "source": str(source), "source_rel": source_rel or source.name, "fps": None,
             "num_frames": 0, "face_frames": 0, "coverage": 0.0, "status": "failed", "reason": "", "outputs": []}
    # annotation files name a two-person video by its file name, whatever id the store gives it
    pair = cfg.two_person is not None and bool({video_id, source_id(source)} & two_person_ids(cfg.two_person))
    policy = "two_person" if pair else cfg.faces  # what the video's outputs are chosen by
    fingerprint = file_fingerprint(source) if source.exists() else ""
    done = finished_record(store, video_id, policy, source, fingerprint)
    if done is not None:
        return entry | {k: done[k] for k in ("fps", "num_frames", "face_frames", "coverage", "outputs")} | {
            "status": "ok", "reason": "; ".join(done["notes"]), "skipped": True}
    clear_unfinished(store, video_id)
    start = time.perf_counter()
    writers: dict[int, FaceVideoWriter] = {}
    try:
        reader = open_video(source)  # checks the file and names it in any error
        fps, listed = float(reader.get_avg_fps()), len(reader)
        del reader  # frames stream front to back with PyAV (see video.iter_frames)
        detector = create_detector(cfg.detector, min_face_size=cfg.min_face_size)
        tracker = StreamingTracker(detector.detect, every=cfg.detect_every, smooth=cfg.smooth)
        times: list[float] = []

        def write(final) -> None:
            for f, frame, faces in final:
                for tid, face in faces.items():
                    if tid not in writers and len(writers) < cfg.max_track_writers:
                        writers[tid] = FaceVideoWriter(store / "tmp" / f"{video_id}.t{tid}.mp4", cfg.size, fps,
                                                       cfg.crf, cfg.gop)
                    if tid in writers:
                        writers[tid].write(f, store_face_crop(frame, face.box, face.landmarks, cfg))

        reported = 0
        width = 0
        for frame in iter_frames(source, times):
            width = frame.shape[1]
            write(tracker.push(frame))
            if on_frames and tracker.num_frames - reported >= 32:
                on_frames(tracker.num_frames - reported)
                reported = tracker.num_frames
        write(tracker.finish())
        n = tracker.num_frames
        if on_frames and n > reported:
            on_frames(n - reported)
        if n == 0:
            raise VideoReadError(f"no frame of {source} could be decoded")
        entry.update(num_frames=n, fps=fps)

        min_frames = max(1, round(cfg.min_track_seconds * fps))
        outputs = choose_outputs(video_id, group_tracks(tracker.tracks), policy, min_frames, tracker, n, width)
        second_pass = []
        for out in outputs:
            dest = store / "videos" / f"{out.video_id}.mp4"
            if len(out.track_ids) == 1 and out.track_ids[0] in writers:
                writers.pop(out.track_ids[0]).close(n, dest)
            else:
                second_pass.append(out)
        if second_pass:
            _encode_from_source(source, store, second_pass, n, fps, cfg, video_id)
        for out in outputs:
            write_meta(store / "meta" / f"{out.video_id}.csv", out, times)

        any_face = np.logical_or.reduce([o.has_face for o in outputs])
        notes = []
        if listed != n:  # e.g. frames the container lists but FFmpeg drops: rows follow decoding
            notes.append(f"container lists {listed} frames, {n} decode")
        if not any_face.any():
            notes.append("no face found in any frame")
        if vfr := frame_rate_note(times, fps):
            notes.append(vfr)
        entry.update(
            face_frames=int(any_face.sum()), coverage=float(any_face.mean()), status="ok", reason="; ".join(notes),
            seconds=round(time.perf_counter() - start, 2), detector_calls=tracker.detector_calls,
            outputs=[{"video_id": o.video_id, "track_ids": o.track_ids, "face_frames": int(o.has_face.sum()),
                      "coverage": float(o.has_face.mean())} for o in outputs],
        )
        record = {k: entry[k] for k in ("video_id", "source", "source_rel", "fps", "num_frames", "face_frames",
                                        "coverage", "outputs")}
        write_text_atomic(done_path(store, video_id),  # last: marks the video finished
                          json.dumps(record | {"faces": policy, "notes": notes, "fingerprint": fingerprint},
                                     indent=1) + "\n")
    except VideoReadError as err:
        entry["reason"] = str(err)
    except Exception as err:  # one bad video must not stop the others; the report says why
        entry["reason"] = f"{type(err).__name__}: {err}"
    finally:
        for w in writers.values():
            w.abort()
    return entry


def _encode_from_source(source: Path, store: Path, outputs: list[FaceOutput], n: int, fps: float,
                        cfg: PreprocessConfig, video_id: str) -> None:
    """Second pass: crop each output's faces from the source and encode them."""
    from fer_lightning.media.face_video import FaceVideoWriter
    from fer_lightning.media.video import VideoReadError, iter_frames

    writers = [FaceVideoWriter(store / "tmp" / f"{video_id}.t-{o.video_id}.mp4", cfg.size, fps, cfg.crf, cfg.gop)
               for o in outputs]
    try:
        decoded = 0
        for i, frame in enumerate(iter_frames(source)):
            if i >= n:
                break
            decoded += 1
            for out, w in zip(outputs, writers, strict=True):
                if out.has_face[i]:
                    w.write(i, store_face_crop(frame, out.boxes[i], out.landmarks[i], cfg))
        if decoded != n:  # both passes must see the same frames, or rows would misalign
            raise VideoReadError(f"{source}: first pass decoded {n} frames, second pass {decoded}")
        for out, w in zip(outputs, writers, strict=True):
            w.close(n, store / "videos" / f"{out.video_id}.mp4")
    finally:
        for w in writers:
            if w.path.exists():
                w.abort()


_PROGRESS = None  # a worker's queue for frame counts, set by the pool initializer


def _init_worker(queue) -> None:
    global _PROGRESS
    _PROGRESS = queue


def _run_one(args: tuple[str, str, PreprocessConfig, str, str]) -> dict:
    source, store, cfg, video_id, rel = args
    queue = _PROGRESS
    return preprocess_video(Path(source), Path(store), cfg,
                            on_frames=(lambda k: queue.put((source, k))) if queue is not None else None,
                            video_id=video_id, source_rel=rel)


def preprocess(inputs: list[str | Path], store: str | Path, cfg: PreprocessConfig, workers: int = 1,
               progress: bool = True) -> dict:
    """Preprocess every input video into ``store``; writes index.csv and report.json.

    A progress bar counts frames (with frames/s and ETA over the frames the containers list).
    One run writes a store at a time (:func:`~fer_lightning.store.lock.store_writer`); a
    source is done when the store holds its outputs made from the same file content.
    """
    store = Path(store)
    if cfg.two_person is not None:
        two_person_ids(cfg.two_person)  # a wrong path or an empty list fails here, before any work
    for sub in ("videos", "meta", "done", "tmp"):
        (store / sub).mkdir(parents=True, exist_ok=True)
    with store_writer(store):
        return _preprocess_locked(inputs, store, cfg, workers, progress)


def _preprocess_locked(inputs: list[str | Path], store: Path, cfg: PreprocessConfig, workers: int,
                       progress: bool) -> dict:
    import queue as queue_mod

    from tqdm.auto import tqdm

    found = find_sources(list(inputs))
    sources = [path for path, _ in found]
    by_rel: dict[str, list[Path]] = {}
    for source, rel in found:
        by_rel.setdefault(rel, []).append(source)
    clashes = {rel: paths for rel, paths in by_rel.items() if len(paths) > 1}
    if clashes:
        shown = "; ".join(f"{rel}: {', '.join(map(str, paths[:3]))}" for rel, paths in sorted(clashes.items())[:5])
        raise ValueError(f"{len(clashes)} inputs have the same path under their input roots ({shown}), so their "
                         "video ids would be the same. Give the folders different names, or preprocess each into a "
                         "store of its own")
    by_source, by_rel = given_ids(store)
    known = [by_source.get(str(path.resolve())) or by_rel.get(rel) for path, rel in found]
    run_known = set(known)
    ids = video_ids([rel for _, rel in found], known,
                    existing={rel: sid for rel, sid in by_rel.items() if sid not in run_known})
    jobs = [(str(s), str(store), cfg, vid, rel) for (s, rel), vid in zip(found, ids, strict=True)]
    refuse_other_videos(store, [(s, vid) for (s, _), vid in zip(found, ids, strict=True)])
    listed = {str(s): count_frames(s) for s in sources}
    sent = dict.fromkeys(listed, 0)
    bar = tqdm(total=sum(listed.values()), unit="frame", desc="preprocess", disable=not progress, smoothing=0.05)
    entries: list[dict] = []

    def advance(source: str, k: int) -> None:
        sent[source] += k
        if bar.n + k > bar.total:
            bar.total = bar.n + k
        bar.update(k)

    def finished(entry: dict) -> None:
        entries.append(entry)
        rest = listed[entry["source"]] - sent[entry["source"]]
        if rest > 0:  # skipped, failed or shorter than listed: the bar still reaches its end
            advance(entry["source"], rest)
        bar.set_postfix(videos=f"{len(entries)}/{len(jobs)}")

    try:
        if workers > 1 and len(jobs) > 1:
            ctx = get_context("spawn")
            frames_queue = ctx.Queue()
            with ctx.Pool(workers, initializer=_init_worker, initargs=(frames_queue,)) as pool:
                results = pool.imap_unordered(_run_one, jobs)
                while len(entries) < len(jobs):
                    try:
                        finished(results.next(timeout=0.2))
                    except PoolTimeout:
                        pass
                    while True:
                        try:
                            advance(*frames_queue.get_nowait())
                        except queue_mod.Empty:
                            break
        else:
            for source, store_, cfg_, vid, rel in jobs:
                finished(preprocess_video(Path(source), Path(store_), cfg_, on_frames=lambda k, s=source: advance(s, k),
                                          video_id=vid, source_rel=rel))
    finally:
        bar.close()
    run_failed = [e["video_id"] for e in entries if e["status"] != "ok"]
    run_skipped = {e["video_id"] for e in entries if e.pop("skipped", False)}
    run_ids = {e["video_id"] for e in entries}
    # a run over some of the inputs must not drop the other videos already in the store
    previous = store / "report.json"
    if previous.exists():
        known = {e["video_id"]: e for e in json.loads(previous.read_text()).get("entries", [])}
        entries = list((known | {e["video_id"]: e for e in entries}).values())
    entries.sort(key=lambda e: e["video_id"])
    write_index(store, entries, cfg.size, redone={o["video_id"] for e in entries if e["video_id"] in run_ids
                                                  and e["video_id"] not in run_skipped for o in e["outputs"]})
    report = {
        "settings": asdict(cfg),
        "videos": len(entries),
        "ok": sum(e["status"] == "ok" for e in entries),
        "failed": sum(e["status"] != "ok" for e in entries),
        "face_videos": sum(len(e["outputs"]) for e in entries),
        "frames": sum(e["num_frames"] for e in entries),
        "face_frames": sum(e["face_frames"] for e in entries),
        "failed_this_run": sorted(run_failed),
        "already_in_store": sorted(run_skipped),
        "entries": entries,
    }
    write_text_atomic(store / "report.json", json.dumps(report, indent=2) + "\n")
    return report

