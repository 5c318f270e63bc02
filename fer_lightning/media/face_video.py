"""Writing the store's face videos: one S x S H.264 frame per source frame, black where no face."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np


class FaceVideoWriter:
    """Encode face crops frame by frame into ``path`` (a temporary name), then rename it into
    place with :meth:`close`, or delete it with :meth:`abort`.

    Frames are addressed by source frame index: :meth:`write` and :meth:`close` fill every
    index not written with a black frame, so frame ``i`` of the result is always source frame
    ``i``. ``libx264`` with one thread encodes the same frames to the same bytes on every run.
    """

    def __init__(self, path: str | Path, size: int, fps: float, crf: int = 18, gop: int = 16) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = size
        self.next_index = 0
        self._av = av
        self._container = av.open(str(self.path), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(25)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width = self._stream.height = size
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": "veryfast", "g": str(gop), "threads": "1",
                               "x264-params": "rc-lookahead=0"}
        self._stream.codec_context.thread_count = 1
        self._black = np.zeros((size, size, 3), np.uint8)

    def write(self, index: int, crop: np.ndarray | None) -> None:
        """Frame ``index``: ``crop`` (S, S, 3) RGB uint8, or black for None."""
        if index < self.next_index:
            raise ValueError(f"frame {index} written after frame {self.next_index - 1}")
        while self.next_index < index:
            self._encode(self._black)
        self._encode(self._black if crop is None else crop)

    def close(self, num_frames: int, dest: str | Path) -> None:
        """Pad with black up to ``num_frames``, finish the file and rename it onto ``dest``."""
        while self.next_index < num_frames:
            self._encode(self._black)
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, dest)

    def abort(self) -> None:
        """Stop and delete the temporary file."""
        try:
            self._container.close()
        except Exception:  # a half-written container may refuse to finish cleanly
            pass
        self.path.unlink(missing_ok=True)

    def _encode(self, image: np.ndarray) -> None:
        # convert here, on one thread: left to the encoder, swscale's own threads made the same
        # crops encode to different bytes now and then
        frame = self._av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p", threads=1)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.next_index += 1
