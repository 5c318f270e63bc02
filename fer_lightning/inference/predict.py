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
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from fer_lightning.inference.settings import PRECISIONS, PredictConfig
from fer_lightning.io import atomic_path, write_text_atomic
from fer_lightning.metrics.stitch import stitch_frames


@dataclass
class Timings:
    """Wall seconds per stage of one video."""

    decode: float = 0.0
    face: float = 0.0
    model: float = 0.0
    other: float = 0.0


# -- the model over a stream of crops -----------------------------------------------------------


def _stack(items: list):
    return torch.stack(items) if isinstance(items[0], torch.Tensor) else np.stack(items)


class WindowedRunner:
    """Bidirectional model: windows of ``length`` items starting every ``stride`` items, run
    ``batch`` at a time; an item's output is the mean of the windows covering it (the project's
    stitching rule, :func:`~fer_lightning.metrics.stitch.stitch_frames`, applied to each item
    once no later window can cover it). The last window is the stream's last ``length`` items,
    so every item is covered without padding."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], length: int, stride: int, batch: int) -> None:
        self.run, self.length, self.stride, self.batch = run, length, stride, batch
        self.recent: deque = deque(maxlen=length)  # (position, frame index, crop)
        self.queued: list[list] = []
        self.outputs: list[tuple[np.ndarray, ...]] = []  # per window run: (start, positions, indices, outputs)
        self.position = 0
        self.next_start = 0
        self.last_end = -1  # position of the last item of the last window queued

    def push(self, index: int, crop: np.ndarray) -> list[tuple[int, np.ndarray]]:
        self.recent.append((self.position, index, crop))
        self.position += 1
        if self.position == self.next_start + self.length:
            self._queue(list(self.recent))
            self.next_start += self.stride
        if len(self.queued) < self.batch:
            return []
        # the stream's last window (its last ``length`` items) may still cover recent items
        return self._run_queued(done_before=min(self.next_start, self.position - self.length))

    def finish(self) -> list[tuple[int, np.ndarray]]:
        if self.position and self.last_end < self.position - 1:
            self._queue(list(self.recent))
        return self._run_queued(done_before=self.position)

    @property
    def held(self) -> int:
        """Window outputs kept for items not yet final (bounded, however long the stream)."""
        return sum(len(o[1]) for o in self.outputs)

    def _queue(self, items: list) -> None:
        self.queued.append(items)
        self.last_end = items[-1][0]

    def _run_queued(self, done_before: int) -> list[tuple[int, np.ndarray]]:
        by_len: dict[int, list] = {}
        for w in self.queued:
            by_len.setdefault(len(w), []).append(w)
        for windows in by_len.values():
            out = self.run(_stack([_stack([c for _, _, c in w]) for w in windows]))
            for w, preds in zip(windows, out, strict=True):
                positions = np.array([pos for pos, _, _ in w], np.int64)
                self.outputs.append((np.full(len(w), positions[0]), positions,
                                     np.array([index for _, index, _ in w], np.int64), np.asarray(preds)))
        self.queued = []
        if not self.outputs:
            return []
        starts, positions, indices, preds = (np.concatenate(x) for x in zip(*self.outputs, strict=True))
        final = positions < done_before
        self.outputs = [(starts[~final], positions[~final], indices[~final], preds[~final])] if (~final).any() else []
        if not final.any():
            return []
        _, mean, index = stitch_frames(torch.zeros(int(final.sum()), dtype=torch.int64), torch.from_numpy(starts[final]),
                                       torch.from_numpy(positions[final]), torch.from_numpy(preds[final]),
                                       torch.from_numpy(indices[final]))
        mean = mean.numpy().astype(preds.dtype)
        return [(int(i), m) for i, m in zip(index.tolist(), mean, strict=True)]


class CausalRunner:
    """Unidirectional model: the stream in chunks of ``chunk`` items, the LSTM state carried."""

    def __init__(self, run: Callable[[np.ndarray, object], tuple[np.ndarray, object]], chunk: int) -> None:
        self.run, self.chunk = run, chunk
        self.pending: list[tuple[int, np.ndarray]] = []
        self.state = None

    def push(self, index: int, crop: np.ndarray) -> list[tuple[int, np.ndarray]]:
        self.pending.append((index, crop))
        return self._run() if len(self.pending) >= self.chunk else []

    def finish(self) -> list[tuple[int, np.ndarray]]:
        return self._run() if self.pending else []

    def _run(self) -> list[tuple[int, np.ndarray]]:
        out, self.state = self.run(_stack([c for _, c in self.pending])[None], self.state)
        done = [(i, p) for (i, _), p in zip(self.pending, out[0], strict=True)]
        self.pending = []
        return done


class ModelStream:
    """Runs the model over a video's crops, pushed in frame order; hands back (frame index,
    output) in any order.

    The face encoder sees each frame once, ``encode_batch`` frames at a time (it works frame by
    frame, so overlapping windows share its features); the LSTM and head then run over windows
    of features, or over the stream with their state carried for a causal model. A model
    trained on every k-th frame (``frame_step``) runs on k interleaved streams.
    """

    def __init__(self, model, device: torch.device, frame_step: int, cfg: PredictConfig, clip_len: int,
                 timings: Timings, encode_batch: int = 32) -> None:
        self.model, self.device, self.timings = model, device, timings
        self.autocast = lambda: inference_autocast(device, cfg.precision)
        self.frame_step = max(1, frame_step)
        self.encode_batch = encode_batch
        self.probabilities = not model.objective.continuous
        self.causal = model.net.is_causal
        length = cfg.window or clip_len
        stride = max(1, round(length * (1 - cfg.overlap)))
        self.runners: dict[int, object] = {}
        self._make = (lambda: CausalRunner(self._run_causal, cfg.chunk)) if self.causal else \
            (lambda: WindowedRunner(self._run_windows, length, stride, cfg.batch_size))
        self._crops: list[tuple[int, np.ndarray]] = []

    def push(self, index: int, crop: np.ndarray) -> list[tuple[int, np.ndarray]]:
        self._crops.append((index, crop))
        return self._encode() if len(self._crops) >= self.encode_batch else []

    def finish(self) -> list[tuple[int, np.ndarray]]:
        out = self._encode() if self._crops else []
        return out + [r for runner in self.runners.values() for r in runner.finish()]

    @torch.no_grad()
    def _encode(self) -> list[tuple[int, np.ndarray]]:
        start = time.perf_counter()
        x = torch.from_numpy(np.ascontiguousarray(np.stack([c for _, c in self._crops]).transpose(0, 3, 1, 2)))
        with self.autocast():
            feats = self.model.net.forward_features(x.to(self.device, non_blocking=True)[None])[0]
        self.timings.model += time.perf_counter() - start
        out = []
        for (index, _), f in zip(self._crops, feats, strict=True):
            phase = index % self.frame_step
            if phase not in self.runners:  # one runner per phase, made once
                self.runners[phase] = self._make()
            out += self.runners[phase].push(index, f)
        self._crops = []
        return out

    def _outputs(self, y: torch.Tensor) -> np.ndarray:
        return (y.float().softmax(-1) if self.probabilities else y.float()).cpu().numpy()

    @torch.no_grad()
    def _run_windows(self, feats) -> np.ndarray:
        start = time.perf_counter()
        net = self.model.net
        with self.autocast():
            out = self._outputs(net.forward_head(net.forward_temporal(feats)[0]))
        self.timings.model += time.perf_counter() - start
        return out

    @torch.no_grad()
    def _run_causal(self, feats, state):
        start = time.perf_counter()
        net = self.model.net
        with self.autocast():
            feats, state = net.forward_temporal(feats, state)
            out = self._outputs(net.forward_head(feats))
        self.timings.model += time.perf_counter() - start
        return out, state


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
    from fer_lightning.media.video import VideoReadError, count_frames, open_video
    from fer_lightning.store.ids import source_id

    cfg = cfg or PredictConfig()
    device = device or torch.device("cpu")
    path, out_dir = Path(path), Path(out_dir)
    start = time.perf_counter()
    reader = open_video(path)  # a clear VideoReadError for a missing, empty or broken file
    fps = float(reader.get_avg_fps()) or 25.0
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
    bar = tqdm(total=count_frames(path) or None, unit="frame", desc=path.name, disable=not progress, leave=False)
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


def write_csv(path: str | Path, times: np.ndarray, has: np.ndarray, tracks: np.ndarray, boxes: np.ndarray,
              values: np.ndarray, names: list[str]) -> None:
    def num(v: float, fmt: str) -> str:
        return format(v, fmt) if np.isfinite(v) else ""

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(",".join(["frame_index", "time_s", "has_face", "track_id", "x0", "y0", "x1", "y1", *names]) + "\n")
        for i in range(len(has)):
            row = [str(i), num(times[i], ".6f"), str(int(has[i])), str(tracks[i]) if has[i] else "",
                   *(num(v, ".1f") for v in boxes[i]), *(num(v, ".5f") for v in values[i])]
            f.write(",".join(row) + "\n")


def plot_prediction(path: str | Path, times: np.ndarray, has: np.ndarray, values: np.ndarray, names: list[str],
                    title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fer_lightning.faces.tracking import face_runs

    probabilities = all(n.startswith("p_") for n in names)
    fig, ax = plt.subplots(1, 1, figsize=(11, 3.2))
    for d, name in enumerate(names):
        ax.plot(times, values[:, d], lw=1.2, label=name)
    for a, b in face_runs(~has):
        ax.axvspan(times[a], times[min(b, len(times) - 1)], color="0.85", lw=0)
    ax.set_ylim((-0.05, 1.05) if probabilities else (-1.1, 1.1))
    ax.set_xlabel("time (s)")
    ax.set_title(f"{title}; grey: no face", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, ncol=min(len(names), 4))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


# -- folders and the command --------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


AUTOCAST_DTYPES = dict(zip(PRECISIONS, (None, torch.bfloat16, torch.float16), strict=True))


def inference_autocast(device: torch.device, precision: str):
    """The autocast context for inference at a trainer precision name (``32-true``: none)."""
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of {', '.join(AUTOCAST_DTYPES)}, got {precision!r}")
    dtype = AUTOCAST_DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


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
    names = video_ids([rel if counts[rel] == 1 else _given_path(video) for video, rel in found])
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


def _given_path(video: Path) -> str:
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
