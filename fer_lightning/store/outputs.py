"""Which faces of a source video become face videos of the store, and what each one's
per-frame metadata file (``meta/<video_id>.csv``) holds."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_lightning.io import write_text_atomic
from fer_lightning.store.settings import PreprocessConfig


def meta_header() -> str:
    lms = ",".join(f"lm{i}_x,lm{i}_y" for i in range(5))
    return f"frame_index,time_s,has_face,detected,track_id,score,x0,y0,x1,y1,{lms}"


@dataclass
class FaceOutput:
    """One face video the store gets from a source video: its id and per-frame arrays."""

    video_id: str
    track_ids: list[int]
    has_face: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray
    detected: np.ndarray
    track_of_frame: np.ndarray


def combine_tracks(tracker, video_id: str, group: list, n: int) -> FaceOutput:
    """Merge the tracks of one face (disjoint in time) into per-frame arrays."""
    out = FaceOutput(video_id, [t.track_id for t in group], np.zeros(n, bool), np.full((n, 4), np.nan, np.float32),
                     np.full((n, 5, 2), np.nan, np.float32), np.full(n, np.nan, np.float32), np.zeros(n, bool),
                     np.full(n, -1, np.int64))
    for t in group:
        has, boxes, marks, scores, detected = tracker.track_frames(t.track_id, n)
        out.has_face |= has
        out.boxes[has], out.landmarks[has], out.track_of_frame[has] = boxes[has], marks[has], t.track_id
        out.scores[detected], out.detected[detected] = scores[detected], True
    return out


@functools.lru_cache(maxsize=4)
def two_person_ids(source: str) -> frozenset[str]:
    """The video ids named by ``PreprocessConfig.two_person``: from a folder, every
    ``<video>_left.*`` / ``<video>_right.*`` file below it; from a file, one id per line."""
    path = Path(source)
    if path.is_dir():
        ids = {f.stem[: -len(side)] for side in ("_left", "_right") for f in path.rglob(f"*{side}.*")
               if f.stem.endswith(side)}
    elif path.is_file():
        ids = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    else:
        raise ValueError(f"--two_person: no such folder or file: {source}")
    if not ids:
        raise ValueError(f"--two_person: {source} names no video (no <video>_left/_right files, or an empty list)")
    return frozenset(ids)


def choose_outputs(video_id: str, groups: list[list], faces: str, min_frames: int,
                    tracker, n: int, width: int = 0) -> list[FaceOutput]:
    """The main subject (``faces="main"``), or every face seen for at least ``min_frames``
    frames (``faces="all"``), named ``<video>_left``/``<video>_right`` for two faces and
    ``<video>_face1``.. left to right for more; one face, or none, keeps the video's own id.
    ``faces="two_person"``: the two faces seen longest, ``<video>_left`` and ``_right`` by
    position (one face alone is named by the half of the ``width``-pixel frame it is in)."""
    if faces == "two_person":
        found = sorted(((g, combine_tracks(tracker, "", g, n)) for g in groups), key=lambda p: -int(p[1].has_face.sum()))
        found = [(g, out) for g, out in found[:2] if out.has_face.any()]
        found.sort(key=lambda pair: float(pair[0][0].median_box()[[0, 2]].mean()))
        if len(found) == 2:
            names = ["left", "right"]
        elif found:
            names = ["left" if float(found[0][0][0].median_box()[[0, 2]].mean()) < width / 2 else "right"]
        else:
            return [combine_tracks(tracker, f"{video_id}_left", [], n)]
        return [dataclasses.replace(out, video_id=f"{video_id}_{name}") for name, (_, out) in zip(names, found, strict=True)]
    if faces == "all":
        faces_of = [(g, combine_tracks(tracker, "", g, n)) for g in groups]
        sized = [(g, out) for g, out in faces_of if out.has_face.sum() >= min_frames]
        if len(sized) >= 2:
            sized.sort(key=lambda pair: float(pair[0][0].median_box()[[0, 2]].mean()))
            names = ["left", "right"] if len(sized) == 2 else [f"face{i + 1}" for i in range(len(sized))]
            return [dataclasses.replace(out, video_id=f"{video_id}_{name}")
                    for name, (_, out) in zip(names, sized, strict=True)]
    return [combine_tracks(tracker, video_id, groups[0] if groups else [], n)]


def store_face_crop(frame: np.ndarray, box: np.ndarray, marks: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    from fer_lightning.faces.detect import face_crop

    return face_crop(frame, box, marks, cfg.size, cfg.margin)


def write_meta(path: Path, out: FaceOutput, times: list[float]) -> None:
    rows = [meta_header()]
    for i in range(len(out.has_face)):
        vals = [*out.boxes[i], *out.landmarks[i].reshape(-1)]
        nums = ",".join("" if not np.isfinite(v) else f"{v:.2f}" for v in vals)
        score = "" if not np.isfinite(out.scores[i]) else f"{out.scores[i]:.4f}"
        t = "" if not np.isfinite(times[i]) else f"{times[i]:.6f}"
        rows.append(f"{i},{t},{int(out.has_face[i])},{int(out.detected[i])},{out.track_of_frame[i]},{score},{nums}")
    write_text_atomic(path, "\n".join(rows) + "\n")


def frame_rate_note(times: list[float], fps: float) -> str:
    """Say so when frame intervals vary: the face video has a constant rate, so labels must be
    aligned by the metadata's ``time_s``, never by frame index / fps."""
    t = np.asarray(times, np.float64)
    dt = np.diff(t[np.isfinite(t)])
    if len(dt) < 2 or not fps:
        return ""
    nominal = 1.0 / fps
    if np.abs(dt - nominal).max() > 0.25 * nominal:
        return (f"variable frame rate: frame intervals {dt.min() * 1e3:.1f}..{dt.max() * 1e3:.1f} ms "
                f"(nominal {nominal * 1e3:.1f}); align labels by time_s")
    return ""
