"""``fer-lightning predict``: per-frame affect for any video, or every video of a folder.

    fer-lightning predict --ckpt runs/.../best.ckpt --input VIDEO_OR_FOLDER --out DIR [--render true]

Each video is decoded once, front to back (PyAV). Faces are detected, tracked, smoothed and
cropped by preprocessing's own code (:class:`~fer_lightning.faces.stream.StreamingTracker`,
:func:`~fer_lightning.faces.detect.face_crop`); the main face is followed (the face of the previous
frame while it lasts, else the largest). Crops are cut the way the checkpoint's training data
were: aligned on the landmarks when it trained on a face-clip store, the square around the box
otherwise (``--crop`` overrides).

The model then runs as it was evaluated: a bidirectional model over overlapping windows of the
training clip length (each frame gets the mean of the windows that cover it); a causal
(unidirectional) model over the stream in chunks, its LSTM state carried from chunk to chunk,
so that a frame's output depends on earlier frames only. Frames without a face go through the
model black, as in training, so the LSTM keeps its timing, but their outputs are not reported.

Per video, in ``--out``:

* ``<video>.csv`` (``<video>``: the file name without suffix, or its path with ``__`` for
  ``/`` where two inputs share a name, as the face store names them): frame_index, time_s, has_face, track_id, x0, y0, x1, y1 (the face box in
  frame pixels), then one column per output (valence, arousal; or p_<emotion> class
  probabilities for a pretraining model), empty where there is no face unless ``--faceless``
  fills those frames (``has_face`` says which they are either way);
* ``<video>.png``: the traces over time, no-face stretches greyed;
* with ``--render true``, ``<video>.mp4``: the video with the face box and a valence/arousal gauge.

Memory stays bounded whatever the video's length: the tracker holds a few frames, the model a
window and a batch of crops; only the per-frame numbers are kept (for the plot). One bad video
does not stop a folder: it is listed at the end (exit status 1), and ``predict_report.json``
holds every video's figures: frames, faces, seconds spent decoding, on faces and in the model.

The pieces: the model over the stream of crops in :mod:`~fer_lightning.inference.stream`, the
files and the report in :mod:`~fer_lightning.inference.predict_files`, the plot in
:mod:`~fer_lightning.evaluation.plots`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from fer_lightning.evaluation.plots import plot_prediction
from fer_lightning.inference.device import resolve_device
from fer_lightning.inference.predict_files import (
    REPORT,
    given_path,
    output_files,
    refuse_foreign_outputs,
    summary_line,
    write_csv,
)
from fer_lightning.inference.settings import PredictConfig
from fer_lightning.inference.stream import ModelStream, Timings
from fer_lightning.io import write_text_atomic

# -- faces --------------------------------------------------------------------------------------


def crop_settings(data_hp: dict, cfg: PredictConfig) -> tuple[str, float, int]:
    """(crop mode, margin, size) that match the checkpoint's training data, unless overridden."""
    size = int(data_hp.get("image_size") or 112)
    store = data_hp.get("face_store")
    mode = cfg.crop or ("aligned" if store else "box")
    if cfg.margin is not None:
        return mode, cfg.margin, size
    if mode == "box":
        return mode, float(data_hp.get("face_margin", 0.2)), size
    from fer_lightning.store.settings import PreprocessConfig

    margin = PreprocessConfig.margin
    if store and (report := Path(store) / "report.json").is_file():
        margin = float(json.loads(report.read_text()).get("settings", {}).get("margin", margin))
    return mode, margin, size


def main_face(faces: dict, previous: int | None) -> int | None:
    """The face followed: the previous frame's while it lasts, else the largest."""
    if not faces:
        return None
    if previous in faces:
        return previous
    return max(faces, key=lambda t: float(np.prod(faces[t].box[2:] - faces[t].box[:2])))


def tracked_frames(path: Path, cfg: PredictConfig, times: list[float], timings: Timings
                   ) -> Iterator[tuple[int, np.ndarray, dict]]:
    """(frame index, frame, faces) of every frame, in order, as the tracker finalises them."""
    from fer_lightning.faces.detect import create_detector
    from fer_lightning.faces.stream import StreamingTracker
    from fer_lightning.media.video import iter_frames

    detector = create_detector("mtcnn", min_face_size=cfg.min_face_size)
    tracker = StreamingTracker(detector.detect, every=cfg.detect_every, smooth=cfg.smooth)
    frames = iter_frames(path, times)
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        mid = time.perf_counter()
        timings.decode += mid - start
        final = list(tracker.finish() if frame is None else tracker.push(frame))
        timings.face += time.perf_counter() - mid
        yield from final
        if frame is None:
            return


# -- one video ----------------------------------------------------------------------------------


@dataclass
class VideoResult:
    """Everything predicted for one video (numbers only; no frames)."""

    frame_index: list[int] = field(default_factory=list)
    has_face: list[bool] = field(default_factory=list)
    track_id: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    outputs: dict[int, np.ndarray] = field(default_factory=dict)


def output_names(model) -> list[str]:
    return list(model.output_names) if model.objective.continuous else [f"p_{c}" for c in model.output_names]


def predict_video(path: str | Path, model, data_hp: dict, out_dir: str | Path, cfg: PredictConfig | None = None,
                  device: torch.device | None = None, progress: bool = True, video_id: str | None = None) -> dict:
    """Predict one video into ``out_dir`` (see the module docs) as ``<video_id>.csv`` / ``.png``
    (default: the file name without suffix); returns its report entry. Raises
    :class:`~fer_lightning.media.video.VideoReadError` for a video that cannot be read."""
    from tqdm.auto import tqdm

    from fer_lightning.faces.detect import crop_face, face_crop
    from fer_lightning.media.video import VideoReadError, open_video
    from fer_lightning.store.ids import source_id

    cfg = cfg or PredictConfig()
    device = device or torch.device("cpu")
    path, out_dir = Path(path), Path(out_dir)
    start = time.perf_counter()
    reader = open_video(path)  # a clear VideoReadError for a missing, empty or broken file
    fps, listed = float(reader.get_avg_fps()) or 25.0, len(reader)  # rate and the progress bar's total, one open
    del reader
    mode, margin, size = crop_settings(data_hp, cfg)
    timings = Timings()
    stream = ModelStream(model, device, int(data_hp.get("frame_step") or 1), cfg, int(data_hp.get("clip_len") or 16),
                         timings)
    names = output_names(model)
    times: list[float] = []
    res = VideoResult()
    black = np.zeros((size, size, 3), np.uint8)
    previous = None
    bar = tqdm(total=listed or None, unit="frame", desc=path.name, disable=not progress, leave=False)
    try:
        for f, frame, faces in tracked_frames(path, cfg, times, timings):
            t0 = time.perf_counter()
            tid = main_face(faces, previous)
            previous = tid if tid is not None else previous
            if tid is None:
                crop, box = black, np.full(4, np.nan, np.float32)
            else:
                face = faces[tid]
                crop = face_crop(frame, face.box, face.landmarks, size, margin) if mode == "aligned" \
                    else crop_face(frame, face.box, size, margin)
                box = face.box
            res.frame_index.append(f)
            res.has_face.append(tid is not None)
            res.track_id.append(-1 if tid is None else tid)
            res.boxes.append(box)
            timings.face += time.perf_counter() - t0
            res.outputs.update(stream.push(f, crop))
            bar.update(1)
        res.outputs.update(stream.finish())
    finally:
        bar.close()
    n = len(res.frame_index)
    if n == 0:
        raise VideoReadError(f"no frame of {path} could be decoded")
    t0 = time.perf_counter()
    vid = video_id or source_id(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"csv": str(out_dir / f"{vid}.csv"), "png": str(out_dir / f"{vid}.png")}
    values = np.stack([res.outputs[i] for i in range(n)])
    on_black = values.copy()  # the model's outputs as made, black frames included
    has = np.asarray(res.has_face, bool)
    if cfg.faceless == "none" or not has.any():
        values[~has] = np.nan  # no face: no value unless asked for one
    else:  # predicted from the face frames around them, as evaluation scores such frames
        from fer_lightning.metrics.faceless import fill_video

        values = fill_video(np.arange(n), values, has, cfg.faceless)
    t = np.asarray([times[i] if i < len(times) and np.isfinite(times[i]) else i / fps for i in range(n)])
    write_csv(files["csv"], t, has, np.asarray(res.track_id), np.stack(res.boxes), values, names)
    plot_prediction(files["png"], t, has, values, names, title=f"{path.name} ({model.task}, {mode} crops)")
    if cfg.abaw:
        from fer_lightning.evaluation.formats import write_abaw_va

        files["abaw"] = str(out_dir / "abaw" / f"{vid}.txt")
        # ABAW scores every frame: a video without any face gets the model's own outputs on its
        # black frames (nothing to fill from), and the report says so
        write_abaw_va(out_dir / "abaw", {vid: np.where(np.isfinite(values), values, on_black)}, names)
    timings.other += time.perf_counter() - t0
    if cfg.render:
        t0 = time.perf_counter()
        files["mp4"] = str(out_dir / f"{vid}.mp4")
        from fer_lightning.inference.render import render_video

        render_video(path, files["mp4"], np.stack(res.boxes), values, names, fps)
        timings.other += time.perf_counter() - t0
    wall = time.perf_counter() - start
    duration = n / fps
    notes = [] if has.any() else ["no face found in any frame: every row has has_face 0 and no values"
                                  + ("; the ABAW file holds the model's outputs on black frames" if cfg.abaw else "")]
    return {"video": str(path), "video_id": vid, "status": "ok", "frames": n, "fps": fps,
            "face_frames": int(has.sum()), "coverage": float(has.mean()), "causal": stream.causal,
            "crop": mode, "files": files, "notes": notes, "seconds": {k: round(v, 3) for k, v in asdict(timings).items()}
            | {"total": round(wall, 3)}, "realtime_factor": round(duration / wall, 3) if wall > 0 else None}


# -- folders ------------------------------------------------------------------------------------


def predict(ckpt: str | Path, inputs: list[str | Path], out_dir: str | Path, cfg: PredictConfig | None = None,
            progress: bool = True) -> dict:
    """Predict every video of ``inputs`` (files, folders, manifests); a bad video is recorded,
    never fatal. Writes ``predict_report.json`` (this run's ``videos``, and ``earlier_videos``:
    those of earlier runs into the same folder, whose files a rerun may replace); returns it."""
    from fer_lightning.media.discover import find_sources
    from fer_lightning.models.checkpoint import load_checkpoint_model
    from fer_lightning.store.ids import video_ids

    cfg = cfg or PredictConfig()
    model, data_hp = load_checkpoint_model(ckpt)  # ValueError: missing or foreign checkpoint
    device = resolve_device(cfg.device)
    model.to(device)
    found = find_sources(inputs)
    if not found:
        raise ValueError(f"no video found in {', '.join(map(str, inputs))}")
    # two clip001.mp4 in different folders must not overwrite each other's predictions: files
    # named directly are told apart by the path they were given as
    counts: dict[str, int] = {}
    for _, rel in found:
        counts[rel] = counts.get(rel, 0) + 1
    names = video_ids([rel if counts[rel] == 1 else given_path(video) for video, rel in found])
    earlier = {e.get("video_id"): e for e in refuse_foreign_outputs(out_dir, names, cfg)}
    entries: dict[str, dict] = {}

    def save() -> dict:  # after every video, so that a killed run's files are known as predict's own
        videos = list(entries.values())
        report = {"checkpoint": str(ckpt), "device": str(device), "settings": asdict(cfg), "videos": videos,
                  "failed": [e["video"] for e in videos if e["status"] != "ok"],
                  "earlier_videos": [e for vid, e in earlier.items() if vid not in entries]}
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(out_dir) / REPORT, json.dumps(report, indent=1) + "\n")
        return report

    for (video, _), name in zip(found, names, strict=True):
        # claimed before it is written: a run killed mid-video leaves files a rerun may replace
        entries[name] = {"video": str(video), "video_id": name, "status": "running",
                         "files": {f.suffix.lstrip(".") if f.parent == Path(out_dir) else "abaw": str(f)
                                   for f in output_files(out_dir, name, cfg)}}
        save()
        try:
            entries[name] = predict_video(video, model, data_hp, out_dir, cfg, device, progress, video_id=name)
        except Exception as err:  # one bad video must not stop the others; the report says why
            from fer_lightning.io import write_error_sentence
            from fer_lightning.media.video import VideoReadError

            if write_error_sentence(err):
                raise  # a full or read-only --out is no fault of this video: stop, with one sentence
            reason = str(err) if isinstance(err, VideoReadError) else f"{type(err).__name__}: {err}"
            entries[name] = {"video": str(video), "video_id": name, "status": "failed", "reason": reason,
                             "files": entries[name]["files"]}
        if name in earlier:  # files an earlier run wrote for this video stay claimed (its --render mp4)
            entries[name]["files"] = {**(earlier[name].get("files") or {}), **(entries[name].get("files") or {})}
        if progress:
            print(summary_line(entries[name]), flush=True)
    return save()


