"""Annotated video: the face box and a live valence/arousal gauge drawn on every frame."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from fer_lightning.io import atomic_path


def draw_gauge(frame: np.ndarray, values: np.ndarray, names: list[str]) -> None:
    """A valence (x) / arousal (y) disc with the current point, in the top-left corner; for
    other outputs (class probabilities) a bar per output. Draws in place."""
    h, w = frame.shape[:2]
    r = max(24, min(h, w) // 8)
    cx, cy = r + 10, r + 10
    overlay = frame.copy()
    if {"valence", "arousal"} <= set(names):
        cv2.circle(overlay, (cx, cy), r, (30, 30, 30), -1, cv2.LINE_AA)
        cv2.addWeighted(overlay, 0.55, frame, 0.45, 0, dst=frame)
        cv2.circle(frame, (cx, cy), r, (220, 220, 220), 1, cv2.LINE_AA)
        cv2.line(frame, (cx - r, cy), (cx + r, cy), (150, 150, 150), 1)
        cv2.line(frame, (cx, cy - r), (cx, cy + r), (150, 150, 150), 1)
        v, a = values[names.index("valence")], values[names.index("arousal")]
        if np.isfinite(v) and np.isfinite(a):
            x, y = int(cx + np.clip(v, -1, 1) * r), int(cy - np.clip(a, -1, 1) * r)
            cv2.circle(frame, (x, y), max(3, r // 10), (255, 80, 60), -1, cv2.LINE_AA)
            text = f"V {v:+.2f}  A {a:+.2f}"
        else:
            text = "no face"
        cv2.putText(frame, text, (10, cy + r + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        return
    bar_w = 2 * r
    for k, (name, value) in enumerate(zip(names, values, strict=True)):
        y = 12 + 16 * k
        cv2.rectangle(frame, (10, y), (10 + bar_w, y + 10), (60, 60, 60), -1)
        if np.isfinite(value):
            cv2.rectangle(frame, (10, y), (10 + int(np.clip(value, 0, 1) * bar_w), y + 10), (255, 80, 60), -1)
        cv2.putText(frame, name, (16 + bar_w, y + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)


def render_video(source: str | Path, dest: str | Path, boxes: np.ndarray, values: np.ndarray, names: list[str],
                 fps: float) -> Path:
    """Decode ``source`` again and write ``dest`` (H.264 MP4) with box and gauge per frame.
    ``boxes`` (N, 4) and ``values`` (N, D) are per frame, NaN without a face."""
    import av

    from fer_lightning.media.video import iter_frames

    dest = Path(dest)
    with atomic_path(dest) as tmp:
        container = av.open(str(tmp), mode="w", format="mp4")
        try:
            stream = None
            for i, frame in enumerate(iter_frames(source)):
                if i >= len(values):
                    break
                frame = np.ascontiguousarray(frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2])
                if stream is None:
                    rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
                    stream = container.add_stream("libx264", rate=rate)
                    stream.height, stream.width = frame.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "23", "preset": "veryfast"}
                if np.isfinite(boxes[i]).all():
                    x0, y0, x1, y1 = (int(round(float(v))) for v in boxes[i])
                    cv2.rectangle(frame, (x0, y0), (x1, y1), (60, 220, 60), 2, cv2.LINE_AA)
                draw_gauge(frame, values[i], names)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            if stream is not None:
                for packet in stream.encode():
                    container.mux(packet)
        finally:
            container.close()
    return dest
