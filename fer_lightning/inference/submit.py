"""``fer-lightning submit``: the ABAW valence-arousal test-set file, filled from a checkpoint.

    fer-lightning submit --ckpt runs/.../best.ckpt --sample CVPR_6th_ABAW_VA_test_set_sample.txt
                         --faces /data/Aff-Wild2/cropped_aligned --out va_predictions.txt
                         [--postprocess runs/.../evaluate-best-test/evaluation.json]

Since the 5th ABAW the organisers hand out one sample file for the whole test set: header
``image_location,valence,arousal``, then one row per frame to predict, ``<video>/00001.jpg,``
(frame 0 is ``00001.jpg``), every video in one file, the two persons of a two-person video as
``<video>_left/...`` and ``<video>_right/...``, frames without a face listed too. The file
written here is that file with every row valued, in the sample's rows and order.

Faces come from ``--faces``: the organisers' ``cropped_aligned`` folder (``<video>/00001.jpg``,
no image where their detector found no face) or a face store written by ``preprocess`` (face
videos named as the sample names them: ``<video>``, ``<video>_left``, ``<video>_right``). With
``--videos`` (a folder of raw videos, e.g. the ABAW folder, whose unlabelled test videos
included) the store is written first into ``--faces`` (resumed when it exists), the videos the
sample names ``_left``/``_right`` getting their two persons.

The model runs over each video's frames as ``predict`` runs it (windows of the training clip
length, or a causal stream), black frames where there is no face, and the predictions come from
:func:`~fer_lightning.evaluation.final.final_predictions`, the function ``evaluate`` scores: the
``--faceless`` rule, the post-processing ``evaluate`` fitted on the development split
(``--postprocess``), the label range. A row whose frame lies past the faces available takes the
last frame's prediction, and a video without any face the model's outputs on black frames; both
are counted in ``<out>.json``, beside the file, with the settings used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_lightning.errors import MissingInputError, UserInputError
from fer_lightning.evaluation.final import (
    Annotations,
    FramePredictions,
    final_predictions,
    videos_without_face,
)
from fer_lightning.io import write_text_atomic

HEADER = ("image_location", "valence", "arousal")


@dataclass
class SampleFile:
    """The organisers' sample: its rows in order, each ``(location, video, frame index)``."""

    rows: list[tuple[str, str, int]] = field(default_factory=list)

    def videos(self) -> dict[str, np.ndarray]:
        """Each video's frame indices in the sample's order, videos in order of first appearance."""
        out: dict[str, list[int]] = {}
        for _, video, frame in self.rows:
            out.setdefault(video, []).append(frame)
        return {v: np.asarray(f, np.int64) for v, f in out.items()}


def read_sample(path: str | Path) -> SampleFile:
    """The rows of an ABAW test-set sample file; an error names the line that is not
    ``<video>/<frame number>.jpg,...``."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"--sample: no such file {path}")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = tuple(c.strip() for c in lines[0].split(",")) if lines else ()
    if header[:3] != HEADER:
        raise UserInputError(f"--sample {path}: the header is {lines[0] if lines else 'missing'!r}, not "
                             f"{','.join(HEADER)} (the ABAW valence-arousal test-set sample file)")
    sample = SampleFile()
    seen: set[str] = set()
    for k, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        location = line.split(",", 1)[0].strip()
        video, _, name = location.rpartition("/")
        stem = name.rsplit(".", 1)[0]
        if not video or not stem.isdigit() or int(stem) < 1:
            raise UserInputError(f"--sample {path}, line {k}: {location!r} is not <video>/<frame number>.jpg "
                                 "(frame numbers count from 00001)")
        if location in seen:
            raise UserInputError(f"--sample {path}, line {k}: {location} is listed twice")
        seen.add(location)
        sample.rows.append((location, video, int(stem) - 1))
    if not sample.rows:
        raise UserInputError(f"--sample {path}: no rows after the header")
    return sample


# -- faces --------------------------------------------------------------------------------------


class ImageFolders:
    """``cropped_aligned``: ``<root>/<video>/00001.jpg`` per frame with a face."""

    def __init__(self, root: Path, fps: float) -> None:
        self.root, self.fps_given = root, fps

    def has(self, video: str) -> bool:
        return (self.root / video).is_dir()

    def fps(self, video: str) -> float:
        return self.fps_given

    def frames(self, video: str, count: int):
        """(frame index, RGB image or None) for frames 0..count-1."""
        import cv2

        from fer_lightning.media.video import IMAGE_SUFFIXES

        folder = self.root / video
        files = {}
        for f in folder.iterdir() if folder.is_dir() else ():
            if f.suffix.lower() in IMAGE_SUFFIXES and f.stem.isdigit():
                files[int(f.stem) - 1] = f
        for i in range(count):
            image = None
            if i in files:
                bgr = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise UserInputError(f"--faces: cannot read face image {files[i]}")
                image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield i, image


class FaceStore:
    """A store written by ``preprocess``: ``videos/<video>.mp4`` with per-frame has-face."""

    def __init__(self, root: Path) -> None:
        import pandas as pd

        from fer_lightning.store.read import load_index

        self.root = root
        self.index = load_index(root)
        table = pd.read_csv(root / "index.csv", dtype={"video_id": str}, keep_default_na=False)
        ok = table[table["status"] == "ok"]
        self.rates = {str(v): float(f) for v, f in zip(ok["video_id"], ok["fps"], strict=True) if f != ""}

    def has(self, video: str) -> bool:
        return video in self.rates and (self.root / "videos" / f"{video}.mp4").is_file()

    def fps(self, video: str) -> float:
        return self.rates[video]

    def frames(self, video: str, count: int):
        from fer_lightning.media.video import iter_frames

        table = self.index.frames() if self.index is not None else None
        found = table.get(video) if table is not None else None
        if found is None:
            raise UserInputError(f"--faces {self.root}: no per-frame facts of {video} (frames.parquet)")
        has_face = np.asarray(found[1], bool)
        decoded = iter_frames(self.root / "videos" / f"{video}.mp4")
        for i in range(min(count, len(has_face))):
            frame = next(decoded, None)
            if frame is None:
                return
            yield i, frame if has_face[i] else None


def open_faces(faces: str | Path, fps: float):
    """The face source at ``faces`` (see the module docs); an error says what was expected."""
    from fer_lightning.store.read import is_face_store, is_image_folder_store

    faces = Path(faces)
    if is_face_store(faces) and (faces / "index.csv").is_file():
        return FaceStore(faces)
    if is_image_folder_store(faces):
        return ImageFolders(faces, fps)
    raise MissingInputError(f"--faces {faces}: neither a face store written by preprocess (index.csv, "
                            "frames.parquet) nor a cropped_aligned folder (<video>/00001.jpg); give --videos to "
                            "write the store from raw videos")


def write_store(videos: str | Path, faces: str | Path, sample: SampleFile, workers: int, progress: bool) -> None:
    """Preprocess the raw ``videos`` into the store ``faces``, the sample's two-person videos
    (those it names ``_left``/``_right``) with both persons."""
    from fer_lightning.store.settings import PreprocessConfig
    from fer_lightning.store.write import preprocess

    pairs = sorted({v.rsplit("_", 1)[0] for v in sample.videos() if v.endswith(("_left", "_right"))})
    cfg = PreprocessConfig()
    Path(faces).mkdir(parents=True, exist_ok=True)
    if pairs:
        listing = Path(faces) / "two_person.txt"
        write_text_atomic(listing, "\n".join(pairs) + "\n")
        cfg = PreprocessConfig(two_person=str(listing))
    preprocess([videos], faces, cfg, workers=workers, progress=progress)


# -- the model ----------------------------------------------------------------------------------


def predict_faces(model, data_hp: dict, source, video: str, count: int, device, cfg, progress_bar
                  ) -> FramePredictions:
    """The model's outputs on frames 0..count-1 of ``video`` (black where there is no face)."""
    from fer_lightning.faces.detect import crop_face
    from fer_lightning.inference.stream import ModelStream, Timings

    size = int(data_hp.get("image_size") or 112)
    stream = ModelStream(model, device, int(data_hp.get("frame_step") or 1), cfg, int(data_hp.get("clip_len") or 16),
                         Timings())
    black = np.zeros((size, size, 3), np.uint8)
    outputs: dict[int, np.ndarray] = {}
    has_face = []
    for i, image in source.frames(video, count):
        has_face.append(image is not None)
        crop = black if image is None else crop_face(image, np.array([0, 0, image.shape[1], image.shape[0]]), size, 0.0)
        outputs.update(stream.push(i, crop))
        progress_bar.update(1)
    outputs.update(stream.finish())
    n = len(has_face)
    if n == 0:
        return FramePredictions(np.zeros(0, np.int64), np.zeros((0, len(model.target_names))), np.zeros(0, bool))
    return FramePredictions(np.arange(n), np.stack([outputs[i] for i in range(n)]), np.asarray(has_face))


def submit(ckpt: str | Path, sample_path: str | Path, faces: str | Path, out: str | Path,
           videos: str | Path | None = None, postprocess: str | Path | None = None, faceless: str | None = None,
           fps: float = 30.0, device: str = "auto", precision: str = "32-true", workers: int = 1,
           progress: bool = True) -> dict:
    """Write the filled sample to ``out`` and its report to ``<out>.json`` (module docs);
    returns the report."""
    from tqdm.auto import tqdm

    from fer_lightning.inference.device import resolve_device
    from fer_lightning.inference.settings import PredictConfig
    from fer_lightning.models.checkpoint import load_checkpoint_model

    sample = read_sample(sample_path)
    model, data_hp = load_checkpoint_model(ckpt)
    names = list(model.target_names) if model.objective.continuous else []
    if names != ["valence", "arousal"]:
        raise UserInputError(f"--ckpt {ckpt}: the ABAW file needs a valence-arousal model; this one predicts "
                             f"{names or model.task + ' classes'}")
    post, notes = None, []
    if postprocess is not None:
        post, note = fitted_postprocessing(postprocess, names, ckpt)
        notes += [note] if note else []
    if videos is not None:
        write_store(videos, faces, sample, workers, progress)
    source = open_faces(faces, fps)
    by_video = sample.videos()
    absent = [v for v in by_video if not source.has(v)]
    if len(absent) == len(by_video):
        raise MissingInputError(f"--faces {faces} holds none of the sample's {len(by_video)} videos "
                                f"(e.g. {absent[0]}); is it the test set's cropped_aligned folder or face store?")
    cfg = PredictConfig(device=device, precision=precision)
    run_on = resolve_device(device)
    model.to(run_on).eval()
    faceless = faceless or model.objective.faceless
    frames, annotations = {}, {}
    total = sum(int(f.max()) + 1 for f in by_video.values())
    with tqdm(total=total, desc="submit", unit="frame", disable=not progress) as bar:
        for video, wanted in by_video.items():
            count = int(wanted.max()) + 1
            rate = source.fps(video) if source.has(video) else fps
            if source.has(video):
                frames[video] = predict_faces(model, data_hp, source, video, count, run_on, cfg, bar)
            if not source.has(video) or len(frames[video].index) == 0:  # no face found in it: every frame black
                if video not in absent:
                    absent.append(video)
                frames[video] = predict_faces(model, data_hp, _NoFaces(), video, count, run_on, cfg, bar)
            # every frame of the video in order, whatever order or gaps the sample lists them in:
            # post-processing's delay and smoothing run over consecutive frames
            n = len(frames[video].index)
            annotations[video] = Annotations(values=np.full((n, len(names)), np.nan), position=np.arange(n, dtype=float),
                                             time=np.arange(n) / rate, rate=rate)
    final = final_predictions(frames, annotations, faceless, post)
    lines = [",".join(HEADER)]
    for location, video, frame in sample.rows:
        row = final[video].pred[min(frame, len(final[video].pred) - 1)]  # past the last frame: held, counted
        lines.append(f"{location},{row[0]:.6f},{row[1]:.6f}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, "\n".join(lines) + "\n")
    beyond = {v: int((by_video[v] >= len(frames[v].index)).sum()) for v in by_video}
    report = {
        "checkpoint": str(ckpt), "sample": str(sample_path), "faces": str(faces), "file": str(out),
        "rows": len(sample.rows), "videos": len(by_video), "faceless": faceless,
        "postprocess": post.as_dict() if post is not None else None, "postprocess_from": str(postprocess or ""),
        "rows_with_face": int(sum(frames[v].has_face[f[f < len(frames[v].has_face)]].sum() for v, f in by_video.items())),
        "videos_without_face": videos_without_face(frames),
        "videos_not_in_faces": absent,
        "rows_past_the_last_frame": {v: k for v, k in beyond.items() if k},
        "notes": notes,
    }
    write_text_atomic(out.with_name(out.name + ".json"), json.dumps(report, indent=1) + "\n")
    return report


def fitted_postprocessing(path: str | Path, names: list[str], ckpt: str | Path):
    """The post-processing an ``evaluate`` report fitted (its ``postprocess``), and a note when
    that report scored another checkpoint; an error says what the file lacks."""
    from fer_lightning.evaluation.postprocess import PostProcessor

    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"--postprocess: no such file {path} (an evaluation.json written by evaluate)")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserInputError(f"--postprocess {path}: not JSON ({err})") from err
    fitted = report.get("postprocess") if isinstance(report, dict) else None
    if not isinstance(fitted, dict):
        raise UserInputError(f"--postprocess {path}: holds no fitted post-processing (the evaluation.json that "
                             "`fer-lightning evaluate` writes has it)")
    try:
        post = PostProcessor.from_dict(fitted, names)
    except (TypeError, ValueError) as err:
        raise UserInputError(f"--postprocess {path}: {err}") from err
    other = report.get("checkpoint")
    note = None
    if other and Path(other).resolve() != Path(ckpt).resolve():
        note = f"the post-processing was fitted for {other}, not for {ckpt}"
    return post, note


class _NoFaces:
    """A video the face source lacks: every frame without a face."""

    def frames(self, video: str, count: int):
        for i in range(count):
            yield i, None
