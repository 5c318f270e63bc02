"""Small real videos written by the tests themselves (PyAV, the FFmpeg its wheel ships)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def grey_ramp(frames: int, size: int = 64) -> Iterable[np.ndarray]:
    """RGB frames whose frame ``i`` is uniformly grey level ``2 * i`` (mod 256): each frame says
    which it is after a lossy round trip."""
    for i in range(frames):
        yield np.full((size, size, 3), (2 * i) % 256, np.uint8)


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 25, codec: str = "libx264",
                pts_ms: Sequence[int] | None = None, options: dict | None = None) -> Path:
    """Encode RGB frames (H, W, 3 uint8) into ``path``: H.264 by default, ``codec="mpeg4"`` for an
    MPEG-4 Part 2 AVI; ``pts_ms`` gives each frame's time (a variable frame rate)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        s.pix_fmt = "yuv420p"
        if options:
            s.options = options
        if pts_ms is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        for i, img in enumerate(frames):
            if i == 0:
                s.height, s.width = img.shape[:2]
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_phone_video(path: str | Path, upright_frames: Iterable[np.ndarray], degrees: int = 90, fps: float = 25,
                      pts_ms: Sequence[int] | None = None) -> Path:
    """An MP4 as a phone records one held upright: the pixels stored turned, and the track's
    display matrix (``tkhd``) saying to turn them ``degrees`` clockwise (90, 180 or 270) when
    shown, as FFmpeg's ``rotate`` tag and every player read it; ``pts_ms``: a variable frame rate."""
    import struct

    k = {90: 1, 180: 2, 270: 3}[degrees]
    write_video(path, (np.ascontiguousarray(np.rot90(f, k=k)) for f in upright_frames), fps, pts_ms=pts_ms)
    one, minus_one, w = 0x00010000, 0xFFFF0000, 0x40000000
    identity = struct.pack(">9I", one, 0, 0, 0, one, 0, 0, 0, w)
    turned = {90: (0, one, 0, minus_one, 0, 0, 0, 0, w), 180: (minus_one, 0, 0, 0, minus_one, 0, 0, 0, w),
              270: (0, minus_one, 0, one, 0, 0, 0, 0, w)}[degrees]
    data = bytearray(Path(path).read_bytes())
    at = data.find(identity, data.find(b"tkhd"))  # the video track's matrix (the file has one track)
    assert at > 0, "no track matrix found"
    data[at:at + 36] = struct.pack(">9I", *turned)
    Path(path).write_bytes(bytes(data))
    return Path(path)
