"""Synthetic face-video corpus: procedurally drawn faces whose expression follows known signals.

Every video shows one subject (face shape, skin tone, hair, eye colour) moving and changing
scale over a textured background under drifting light. Two smooth random signals, valence and
arousal in [-1, 1], drive what the face shows:

- valence: mouth curvature (smile/frown), brow tilt, and a little mouth opening when positive;
- arousal: eye and brow opening, mouth opening, and the energy of the head's jitter.

Because the law from signal to pixels is known, a model trained on this corpus must be able to
learn it, which is what the tests and the demo assert.

Layout written under ``out`` (real corpus conventions, so adapters and tests exercise them)::

    index.csv                  video_id,subject,split,path,fps,num_frames,width,height
    corpus.json                generator arguments, class list, label conventions
    videos/<video_id>.mp4      H.264, yuv420p
    annotations/VA/<video_id>.txt     Aff-Wild2 style: header "valence,arousal", one row per
                                      frame, -5 marks an invalid frame
    annotations/EXPR/<video_id>.csv   frame_index,label,emotion (label -1 = invalid)
    faces/<video_id>.csv              frame_index,time_s,has_face,x0,y0,x1,y1 (ground truth box)

``index.csv`` is written last, so its presence means the corpus is complete.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.io import atomic_path, write_text_atomic
from fer_lightning.tasks import EMOTIONS

INVALID_VA = -5.0  # Aff-Wild2's marker for a frame without a valid valence/arousal label
INVALID_LABEL = -1
CANVAS = 128  # side of the canonical canvas a face is drawn on before it is placed in the frame

SKIN_TONES = np.array(
    [(255, 224, 196), (241, 194, 153), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 56, 35)],
    dtype=np.float32,
)
HAIR_COLOURS = np.array(
    [(20, 20, 20), (70, 45, 25), (120, 80, 40), (200, 170, 100), (150, 60, 30), (160, 160, 160)],
    dtype=np.float32,
)
IRIS_COLOURS = np.array([(60, 40, 20), (40, 90, 140), (60, 110, 60), (30, 30, 30)], dtype=np.float32)


@dataclass(frozen=True)
class SynthConfig:
    """Arguments of the generator; written to ``corpus.json`` so a corpus says how it was made.

    Args:
        videos: videos, one subject each
        seconds: length of each video, seconds
        fps: frame rate
        seed: random seed (the same seed makes the same corpus)
        size: frame width and height, pixels
        split: fractions of subjects in train, val and test
        faceless_prob: chance that a video holds one stretch of frames in which the face leaves
        label_faceless: label the frames where the face has left too (as RECOLA's raters rate
            continuously); false marks them invalid (-5, as Aff-Wild2 does)
    """

    videos: int = 48
    seconds: float = 20.0
    fps: float = 25.0
    seed: int = 0
    size: int = 256
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    faceless_prob: float = 0.5
    label_faceless: bool = False

    def validate(self) -> None:
        """Reject impossible arguments with a message that says which and why."""
        problems = []
        if self.videos < 1:
            problems.append(f"--videos must be at least 1 (got {self.videos})")
        if not self.fps > 0 or not math.isfinite(self.fps):
            problems.append(f"--fps must be a positive number (got {self.fps})")
        if not self.seconds > 0 or not math.isfinite(self.seconds):
            problems.append(f"--seconds must be a positive number (got {self.seconds})")
        elif self.fps > 0 and self.seconds * self.fps < 1:
            problems.append(f"--seconds x --fps gives no frame ({self.seconds} s at {self.fps} fps)")
        if self.size < 128 or self.size % 16:
            # below 128 px libx264 gave run-to-run byte differences here; 128+ is byte-stable
            problems.append(f"--size must be a multiple of 16 pixels, at least 128 (got {self.size})")
        if len(self.split) != 3 or any(f < 0 for f in self.split) or not sum(self.split) > 0:
            problems.append(f"--split needs three non-negative fractions (got {self.split})")
        if not 0 <= self.faceless_prob <= 1:
            problems.append(f"--faceless_prob must lie in [0, 1] (got {self.faceless_prob})")
        if problems:
            raise ValueError("synth: " + "; ".join(problems))

    @property
    def num_frames(self) -> int:
        return int(round(self.seconds * self.fps))


def emotion_from_va(valence: np.ndarray, arousal: np.ndarray) -> np.ndarray:
    """Map valence/arousal to a category index of :data:`EMOTIONS` on Russell's circumplex.

    Near the origin is neutral; otherwise the angle picks the category: happy (pleasant,
    moderately aroused), surprised (highly aroused), angry (unpleasant, aroused), sad
    (unpleasant, calm), calm (pleasant, low arousal).
    """
    v = np.asarray(valence, dtype=np.float64)
    a = np.asarray(arousal, dtype=np.float64)
    angle = np.degrees(np.arctan2(a, v)) % 360.0
    label = np.select(
        [angle < 67.5, angle < 112.5, angle < 180.0, angle < 270.0],
        [1, 2, 3, 4],
        default=5,
    )
    return np.where(np.hypot(v, a) < 0.3, 0, label).astype(np.int64)


def smooth_signal(rng: np.random.Generator, n: int, fps: float, min_s: float, max_s: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation (timescale in seconds)."""
    sigma = max(1.0, rng.uniform(min_s, max_s) * fps)
    half = int(4 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    noise = rng.standard_normal(n + 2 * half)
    out = np.convolve(noise, kernel / kernel.sum(), mode="valid")[:n]
    return (out - out.mean()) / (out.std() + 1e-8)


def affect_signals(rng: np.random.Generator, n: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Valence and arousal traces in [-1, 1] that wander over the whole range within a video."""
    traces = []
    for _ in range(2):
        raw = smooth_signal(rng, n, fps, 1.0, 3.0) * rng.uniform(0.7, 1.1) + rng.uniform(-0.3, 0.3)
        traces.append(np.tanh(raw).astype(np.float32))
    return traces[0], traces[1]


@dataclass(frozen=True)
class Identity:
    """What stays fixed for a subject: face geometry and colours."""

    face_w: float
    face_h: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hair_style: int
    iris: tuple[float, float, float]
    eye_dx: float
    eye_y: float
    eye_w: float
    mouth_w: float
    mouth_y: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.05)
        return cls(
            face_w=rng.uniform(34, 42),
            face_h=rng.uniform(44, 52),
            skin=tuple(np.clip(skin, 0, 255).tolist()),
            hair=tuple(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))].tolist()),
            hair_style=int(rng.integers(3)),
            iris=tuple(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))].tolist()),
            eye_dx=rng.uniform(13, 17),
            eye_y=rng.uniform(-10, -5),
            eye_w=rng.uniform(7, 9),
            mouth_w=rng.uniform(14, 19),
            mouth_y=rng.uniform(20, 25),
        )


def _pts(xs: np.ndarray, ys: np.ndarray, shift: int = 4) -> np.ndarray:
    """Float points to OpenCV's fixed-point int32 polyline format (sub-pixel drawing)."""
    return np.round(np.stack([xs, ys], axis=1) * (1 << shift)).astype(np.int32)


def draw_face(ident: Identity, valence: float, arousal: float) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face on the canonical canvas; returns RGB image and alpha mask (both CANVAS²)."""
    img = np.zeros((CANVAS, CANVAS, 3), np.uint8)
    alpha = np.zeros((CANVAS, CANVAS), np.uint8)
    c = CANVAS / 2
    s = 16  # fixed-point shift factor for cv2 (shift=4)
    fw, fh = ident.face_w, ident.face_h
    hair = ident.hair

    def ellipse(target, ctr, axes, colour, angle=0.0, start=0, end=360, thickness=-1):
        cv2.ellipse(
            target,
            (int(ctr[0] * s), int(ctr[1] * s)),
            (max(1, int(axes[0] * s)), max(1, int(axes[1] * s))),
            angle, start, end, colour, thickness, cv2.LINE_AA, 4,
        )

    if ident.hair_style == 1:  # long hair falls behind the face
        ellipse(img, (c, c + 6), (fw + 9, fh + 10), hair)
        ellipse(alpha, (c, c + 6), (fw + 9, fh + 10), 255)
    ellipse(img, (c, c), (fw, fh), ident.skin)
    ellipse(alpha, (c, c), (fw, fh), 255)
    # ears
    for side in (-1, 1):
        ellipse(img, (c + side * fw, c - 2), (5, 9), ident.skin)
        ellipse(alpha, (c + side * fw, c - 2), (5, 9), 255)
    if ident.hair_style in (0, 1):  # a cap of hair over the forehead
        ellipse(img, (c, c - fh * 0.55), (fw + 2, fh * 0.55), hair, 0, 180, 360)
        ellipse(alpha, (c, c - fh * 0.55), (fw + 2, fh * 0.55), 255, 0, 180, 360)
    else:  # short crop: thin band
        ellipse(img, (c, c - fh * 0.75), (fw * 0.9, fh * 0.3), hair, 0, 180, 360)

    a01 = (arousal + 1) / 2
    # eyes: opening grows with arousal
    eye_h = 1.2 + 4.8 * a01
    for side in (-1, 1):
        ex, ey = c + side * ident.eye_dx, c + ident.eye_y
        ellipse(img, (ex, ey), (ident.eye_w, eye_h), (250, 250, 250))
        ellipse(img, (ex, ey), (min(3.2, eye_h + 0.3), min(3.2, eye_h)), ident.iris)
        ellipse(img, (ex, ey), (ident.eye_w, eye_h), (40, 30, 30), thickness=1)
        # brows: raised with arousal, inner end lowered for negative valence
        lift = 4 + 6 * a01
        inner = ex - side * ident.eye_w
        outer = ex + side * ident.eye_w
        y_outer = ey - eye_h - lift
        y_inner = y_outer + 6.0 * max(0.0, -valence) - 2.0 * max(0.0, valence)
        pts = _pts(np.array([inner, outer]), np.array([y_inner, y_outer]))
        cv2.polylines(img, [pts], False, tuple(0.6 * np.array(hair)), 3, cv2.LINE_AA, 4)
    # nose
    nose = _pts(np.array([c, c - 2.5, c + 2.5]), np.array([c + 2, c + 10, c + 10]))
    cv2.polylines(img, [nose], False, tuple(0.75 * np.array(ident.skin)), 1, cv2.LINE_AA, 4)
    # mouth: parabola through the corners, depth set by valence (smile is positive)
    mx = np.linspace(-ident.mouth_w, ident.mouth_w, 21)
    depth = 12.0 * valence
    upper = c + ident.mouth_y + depth * (1 - (mx / ident.mouth_w) ** 2)  # image y points down
    opening = 1.0 + 6.0 * a01 * (0.6 + 0.4 * max(valence, 0.0))
    lower = upper + opening * (1 - (mx / ident.mouth_w) ** 2)
    poly = _pts(np.concatenate([c + mx, (c + mx)[::-1]]), np.concatenate([upper, lower[::-1]]))
    cv2.fillPoly(img, [poly], (90, 20, 30), cv2.LINE_AA, 4)
    cv2.polylines(img, [poly], True, (150, 40, 50), 2, cv2.LINE_AA, 4)
    return img, alpha


def face_extent(ident: Identity) -> np.ndarray:
    """Corners of the face's ground-truth box on the canvas (forehead to chin, ear to ear)."""
    c = CANVAS / 2
    x0, x1 = c - ident.face_w - 4, c + ident.face_w + 4
    y0, y1 = c - ident.face_h - 2, c + ident.face_h + 2
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured scene: low-frequency colour field plus random shapes, fixed per video."""
    coarse = rng.uniform(40, 200, (6, 6, 3)).astype(np.float32)
    bg = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(8, 16)):
        colour = tuple(float(x) for x in rng.uniform(20, 230, 3))
        p0 = tuple(int(x) for x in rng.integers(0, size, 2))
        p1 = tuple(int(x) for x in rng.integers(0, size, 2))
        if rng.random() < 0.5:
            cv2.rectangle(bg, p0, p1, colour, -1)
        else:
            cv2.line(bg, p0, p1, colour, int(rng.integers(2, 8)), cv2.LINE_AA)
    fine = rng.normal(0, 8, (size // 4, size // 4, 3)).astype(np.float32)
    bg += cv2.resize(fine, (size, size), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(bg, (0, 0), 1.0).astype(np.float32)


@dataclass
class VideoTruth:
    """Ground truth of one synthetic video, one entry per frame."""

    valence: np.ndarray
    arousal: np.ndarray
    has_face: np.ndarray
    boxes: np.ndarray  # (N, 4) x0, y0, x1, y1 in frame pixels; NaN where there is no face


def draw_synthetic_video(cfg: SynthConfig, index: int, path: Path) -> VideoTruth:
    """Draw, encode and write one video (atomically); return its per-frame ground truth."""
    cv2.setNumThreads(1)  # one process per video already fills the cores
    rng = np.random.default_rng([cfg.seed, index])
    n, size, fps = cfg.num_frames, cfg.size, cfg.fps
    ident = Identity.sample(rng)
    valence, arousal = affect_signals(rng, n, fps)
    bg = background(rng, size)

    scale, cx, cy, roll, jx, jy, light, tilt = head_motion(rng, n, fps, size, arousal, size / 256)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)[None, :, None]
    has_face = faceless_stretch(rng, n, fps, cfg.faceless_prob)

    extent = face_extent(ident)
    canvas_corners = np.array([[0, 0], [CANVAS, 0], [CANVAS, CANVAS], [0, CANVAS]], dtype=np.float64)
    boxes = np.full((n, 4), np.nan, dtype=np.float32)
    with h264_writer(path, size, fps) as write:
        for t in range(n):
            frame = bg.copy()
            if has_face[t]:
                face, alpha = draw_face(ident, float(valence[t]), float(arousal[t]))
                m = cv2.getRotationMatrix2D((CANVAS / 2, CANVAS / 2), float(roll[t]), float(scale[t]))
                m[:, 2] += (cx[t] + jx[t] - CANVAS / 2, cy[t] + jy[t] - CANVAS / 2)
                # composite only inside the region the canvas lands on
                land = canvas_corners @ m[:, :2].T + m[:, 2]
                x0, y0 = np.clip(np.floor(land.min(axis=0)).astype(int), 0, size)
                x1, y1 = np.clip(np.ceil(land.max(axis=0)).astype(int) + 1, 0, size)
                if x1 > x0 and y1 > y0:
                    m_roi = m - np.array([[0, 0, x0], [0, 0, y0]])
                    warped = cv2.warpAffine(face, m_roi, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
                    a = cv2.warpAffine(alpha, m_roi, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
                    a = a.astype(np.float32)[..., None] * (1 / 255)
                    roi = frame[y0:y1, x0:x1]
                    roi += (warped.astype(np.float32) - roi) * a
                corners = extent @ m[:, :2].T + m[:, 2]
                boxes[t] = (*corners.min(axis=0), *corners.max(axis=0))
            frame *= light[t] + tilt[t] * ramp
            write(np.clip(frame, 0, 255, out=frame).astype(np.uint8))
    np.clip(boxes, 0, size, out=boxes)
    return VideoTruth(valence=valence, arousal=arousal, has_face=has_face, boxes=boxes)


def head_motion(rng: np.random.Generator, n: int, fps: float, size: int, arousal: np.ndarray,
                base_scale: float) -> tuple[np.ndarray, ...]:
    """Per-frame head pose and light: slow wander of position, scale (around ``base_scale``) and
    roll, jitter whose energy is arousal's, drifting light and a left-right light tilt. Returns
    (scale, cx, cy, roll, jx, jy, light, tilt)."""
    scale = base_scale * (1.0 + 0.18 * smooth_signal(rng, n, fps, 2.0, 4.0).clip(-2, 2) / 2)
    margin = 0.32 * size
    cx = size / 2 + (size / 2 - margin) * np.tanh(0.8 * smooth_signal(rng, n, fps, 2.0, 5.0))
    cy = size / 2 + (size / 2 - margin) * np.tanh(0.8 * smooth_signal(rng, n, fps, 2.0, 5.0))
    roll = 8.0 * np.tanh(smooth_signal(rng, n, fps, 1.5, 3.0) / 2)
    energy = ((arousal + 1) / 2) ** 2 * 2.5 * size / 256
    jx = smooth_signal(rng, n, fps, 0.04, 0.08) * energy
    jy = smooth_signal(rng, n, fps, 0.04, 0.08) * energy
    light = (1.0 + 0.22 * np.tanh(smooth_signal(rng, n, fps, 3.0, 6.0))).astype(np.float32)
    tilt = (0.15 * np.tanh(smooth_signal(rng, n, fps, 3.0, 6.0))).astype(np.float32)
    return scale, cx, cy, roll, jx, jy, light, tilt


def faceless_stretch(rng: np.random.Generator, n: int, fps: float, prob: float) -> np.ndarray:
    """(n,) has_face: with chance ``prob``, one stretch of 0.4-1.2 s (at most a quarter) without it."""
    has_face = np.ones(n, dtype=bool)
    if n > 2 and rng.random() < prob:
        gap = int(np.clip(rng.uniform(0.4, 1.2) * fps, 1, max(1, n // 4)))
        start = int(rng.integers(0, n - gap + 1))
        has_face[start : start + gap] = False
    return has_face


@contextmanager
def h264_writer(path: Path, size: int, fps: float) -> Iterator[Callable[[np.ndarray], None]]:
    """``write(rgb)`` appending ``size`` x ``size`` uint8 RGB frames to ``path`` as H.264 at
    ``fps``: one encoder thread (the same bytes every run), flushed, closed and renamed into place
    when the block ends (nothing is left at ``path`` if it fails)."""
    import av

    with atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w", format="mp4")
        try:
            stream = container.add_stream("libx264", rate=_fps_fraction(fps))
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "20", "preset": "veryfast", "g": str(max(1, int(fps)))}
            stream.codec_context.thread_count = 1

            def write(rgb: np.ndarray) -> None:
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)

            yield write
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()


def _fps_fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def assign_splits(n: int, fractions: Sequence[float], seed: int) -> list[str]:
    """Split subjects into train/val/test by the given fractions (each non-empty when possible)."""
    f = np.asarray(fractions, dtype=np.float64) / sum(fractions)
    counts = np.floor(f * n).astype(int)
    for i in np.argsort(-(f * n - counts)):  # hand out the remainder to the largest remainders
        if counts.sum() >= n:
            break
        counts[i] += 1
    for i in range(3):  # a split asked for gets at least one subject when there are enough
        if f[i] > 0 and counts[i] == 0 and counts.max() > 1:
            counts[int(np.argmax(counts))] -= 1
            counts[i] += 1
    names = ["train"] * counts[0] + ["val"] * counts[1] + ["test"] * counts[2]
    order = np.random.default_rng([seed, 1_000_003]).permutation(n)
    out = [""] * n
    for rank, i in enumerate(order):
        out[i] = names[rank]
    return out


def write_annotations(out: Path, video_id: str, fps: float, truth: VideoTruth, label_faceless: bool = False) -> None:
    """Write the per-video annotation files in their corpus layouts (atomically); frames
    without a face are labelled only with ``label_faceless``."""
    valid = np.ones_like(truth.has_face) if label_faceless else truth.has_face
    v = np.where(valid, truth.valence, INVALID_VA)
    a = np.where(valid, truth.arousal, INVALID_VA)
    rows = "".join(f"{vi:.6f},{ai:.6f}\n" for vi, ai in zip(v, a, strict=True))
    write_text_atomic(out / "annotations" / "VA" / f"{video_id}.txt", "valence,arousal\n" + rows)

    labels = np.where(valid, emotion_from_va(truth.valence, truth.arousal), INVALID_LABEL)
    expr = ["frame_index,label,emotion"]
    expr += [f"{i},{lab},{EMOTIONS[lab] if lab >= 0 else ''}" for i, lab in enumerate(labels)]
    write_text_atomic(out / "annotations" / "EXPR" / f"{video_id}.csv", "\n".join(expr) + "\n")

    faces = ["frame_index,time_s,has_face,x0,y0,x1,y1"]
    for i, (hf, box) in enumerate(zip(truth.has_face, truth.boxes, strict=True)):
        coords = ",".join(f"{x:.2f}" for x in box) if hf else ",,,"
        faces.append(f"{i},{i / fps:.6f},{int(hf)},{coords}")
    write_text_atomic(out / "faces" / f"{video_id}.csv", "\n".join(faces) + "\n")


def _make_one(args: tuple[SynthConfig, int, str]) -> dict:
    cfg, index, out_str = args
    out = Path(out_str)
    video_id = f"synth_{index:03d}"
    path = out / "videos" / f"{video_id}.mp4"
    truth = draw_synthetic_video(cfg, index, path)
    write_annotations(out, video_id, cfg.fps, truth, cfg.label_faceless)
    return {
        "video_id": video_id,
        "subject": f"subject_{index:03d}",
        "path": f"videos/{video_id}.mp4",
        "fps": cfg.fps,
        "num_frames": cfg.num_frames,
        "width": cfg.size,
        "height": cfg.size,
        "faceless_frames": int((~truth.has_face).sum()),
    }


def generate_corpus(cfg: SynthConfig, out: str | Path, workers: int | None = None, progress: bool = True) -> Path:
    """Generate the synthetic corpus under ``out``; returns the path of its ``index.csv``."""
    from tqdm.auto import tqdm

    cfg.validate()
    out = Path(out)
    for sub in ("videos", "annotations/VA", "annotations/EXPR", "faces"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, cfg.videos))
    jobs = [(cfg, i, str(out)) for i in range(cfg.videos)]
    rows: list[dict] = []
    bar = tqdm(total=cfg.videos * cfg.num_frames, unit="frame", desc="synth", disable=not progress)
    if workers == 1:
        results = map(_make_one, jobs)
        pool = None
    else:
        pool = get_context("spawn").Pool(workers)
        results = pool.imap_unordered(_make_one, jobs)
    try:
        for row in results:
            rows.append(row)
            bar.update(row["num_frames"])
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    rows.sort(key=lambda r: r["video_id"])
    splits = assign_splits(len(rows), cfg.split, cfg.seed)
    meta = asdict(cfg) | {
        "classes": list(EMOTIONS),
        "targets": ["valence", "arousal"],
        "invalid_va": INVALID_VA,
        "invalid_label": INVALID_LABEL,
    }
    write_text_atomic(out / "corpus.json", json.dumps(meta, indent=2) + "\n")
    header = "video_id,subject,split,path,fps,num_frames,width,height,faceless_frames"
    lines = [header] + [
        f"{r['video_id']},{r['subject']},{s},{r['path']},{r['fps']},{r['num_frames']},"
        f"{r['width']},{r['height']},{r['faceless_frames']}"
        for r, s in zip(rows, splits, strict=True)
    ]
    index = out / "index.csv"
    write_text_atomic(index, "\n".join(lines) + "\n")
    return index
