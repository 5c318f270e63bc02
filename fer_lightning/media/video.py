"""Reading frames: decord for random access (readers opened lazily, per process, in a bounded
cache; PyAV instead for a video with a display rotation, which decord decodes wrongly:
:class:`UprightReader`), PyAV for one pass front to back (:func:`iter_frames`). Both give frames as the video is
shown: a display-matrix rotation (a phone held upright) is applied (:func:`display_rotation`).

A folder of numbered images (AFEW-VA ships its clips so) reads like a video too: see
:class:`ImageSequence`. So does a folder of face images numbered by frame with gaps where no
face was found (ABAW's ``cropped_aligned/<video>/00001.jpg``): its path is given as a
``printf`` pattern, ``<folder>/%05d.jpg``, and frame ``i`` is the file numbered ``i + 1``
(:class:`NumberedImages`).
"""

from __future__ import annotations

import gc
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SEQUENCE_FPS = 25.0  # frame rate assumed for a folder of images (AFEW-VA's clips: 25 fps)


class VideoReadError(RuntimeError):
    """A video could not be opened or decoded; the message names the file."""


# A decord reader's destructor joins its decoding thread. A process forked from one that holds
# readers (a DataLoader worker after validation ran in the main process, or after any reader
# became garbage) inherits the readers but not their threads, so destroying one there waits
# forever. Readers inherited through fork are therefore kept, never destroyed: the ones a
# ReaderCache held go to this list, and cyclic garbage inherited from the parent is frozen out
# of the child's garbage collector (gc.freeze, installed once decord is first used).
_INHERITED_READERS: list = []
_fork_guard_installed = False


def _guard_forks() -> None:
    global _fork_guard_installed
    if not _fork_guard_installed:
        os.register_at_fork(after_in_child=gc.freeze)
        _fork_guard_installed = True


def is_image_sequence(path: str | Path) -> bool:
    """True for a folder that directly holds image files (one per frame, in name order)."""
    path = Path(path)
    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())


class ImageSequence:
    """A folder of images read as a video: frame i is the i-th image in name order.

    Offers the part of decord's ``VideoReader`` the project uses (``len``,
    ``get_avg_fps``, indexing and :meth:`read`)."""

    def __init__(self, folder: str | Path, fps: float = IMAGE_SEQUENCE_FPS) -> None:
        self.folder = Path(folder)
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise VideoReadError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {self.folder}")
        self.fps = fps

    def __len__(self) -> int:
        return len(self.files)

    def get_avg_fps(self) -> float:
        return self.fps

    def image(self, i: int) -> np.ndarray:
        import cv2

        img = cv2.imread(str(self.files[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoReadError(f"cannot read image {self.files[i]}")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.image(i)

    def read(self, indices: np.ndarray) -> np.ndarray:
        return np.stack([self.image(int(i)) for i in indices])


def numbered_pattern(path: str | Path) -> bool:
    """True for a ``<folder>/%05d.jpg``-style path: a :class:`NumberedImages` folder."""
    return "%" in Path(path).name


class NumberedImages(ImageSequence):
    """Frames stored one image per frame, named by frame number from 1 (``%05d.jpg``: ABAW's
    ``cropped_aligned``), with no file where a frame has no face. Frame ``i`` is file
    ``pattern % (i + 1)``; its length is the highest number present. Only frames with a file
    may be read (the face store's ``has_face`` says which)."""

    def __init__(self, pattern: str | Path, fps: float = IMAGE_SEQUENCE_FPS) -> None:
        pattern = Path(pattern)
        self.folder, self.pattern, self.fps = pattern.parent, pattern.name, fps
        numbers = frame_numbers(self.folder)
        if not numbers:
            raise VideoReadError(f"no numbered images ({', '.join(IMAGE_SUFFIXES)}) in folder {self.folder}")
        self.count = max(numbers)

    def __len__(self) -> int:
        return self.count

    def image(self, i: int) -> np.ndarray:
        import cv2

        path = self.folder / (self.pattern % (i + 1))
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoReadError(f"cannot read image {path} (frame {i}: no face image there?)")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def frame_numbers(folder: str | Path) -> list[int]:
    """The numbers of a folder's images named by number (``00001.jpg`` -> 1), ascending."""
    with os.scandir(folder) as entries:
        names = [e.name for e in entries]
    return sorted(int(stem) for stem, suffix in map(os.path.splitext, names)
                  if suffix.lower() in IMAGE_SUFFIXES and stem.isdigit())


class ReaderCache:
    """A bounded LRU cache of open ``decord.VideoReader`` objects, private to one process.

    A DataLoader worker that inherits the parent's cache through fork must not share the
    parent's decoder state, so the cache empties itself whenever the process id changes.
    Bounding the number of open readers bounds decord's memory (it holds decoder buffers per
    open file) and its CPU use: an open reader keeps decoding ahead in a background thread, so
    hopping between many open readers burns CPU on frames nobody reads. Measured on random
    16-frame clips over 29 videos (2 cores): 1 open reader 1,214 frames/s (778 per CPU second),
    2 readers 800 (442), 8 readers 519 (266). Opening a reader costs about 2 ms, so the default
    keeps one.
    """

    def __init__(self, max_open: int = 1, num_threads: int = 1) -> None:
        self.max_open = max_open
        self.num_threads = num_threads
        self._readers: OrderedDict[str, object] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._readers)

    def __getstate__(self) -> dict:
        # readers never cross a process boundary (spawned DataLoader workers pickle datasets)
        return {"max_open": self.max_open, "num_threads": self.num_threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def get(self, path: str | Path):
        """Return an open reader for ``path``, opening it on first use in this process."""
        if os.getpid() != self._pid:  # a forked copy: the parent's readers are kept, never destroyed
            _INHERITED_READERS.extend(self._readers.values())
            self._readers = OrderedDict()
            self._pid = os.getpid()
        key = str(path)
        reader = self._readers.get(key)
        if reader is not None:
            self._readers.move_to_end(key)
            return reader
        reader = open_video(key, self.num_threads)
        self._readers[key] = reader
        while len(self._readers) > self.max_open:
            self._readers.popitem(last=False)
        return reader

    def read(self, path: str | Path, indices: np.ndarray) -> np.ndarray:
        """Decode the frames at ``indices`` of ``path`` as uint8 (N, H, W, 3) RGB."""
        reader = self.get(path)
        n = len(reader)
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise VideoReadError(
                f"{path}: asked for frames {indices.min()}..{indices.max()} but the video has {n} frames"
            )
        if isinstance(reader, ImageSequence | UprightReader):
            return reader.read(indices)
        try:
            return reader.get_batch(indices.tolist()).asnumpy()
        except Exception as err:  # decord raises its own DECORDError and RuntimeErrors
            raise VideoReadError(f"cannot decode frames of {path}: {err}") from err


def open_video(path: str | Path, num_threads: int = 1):
    """Open ``path`` with decord (a folder of images as an :class:`ImageSequence`); raise
    :class:`VideoReadError` naming the file on failure."""
    import decord

    if numbered_pattern(path):
        return NumberedImages(path)
    if Path(path).is_dir():
        return ImageSequence(path)
    path = str(path)
    if not os.path.isfile(path):
        raise VideoReadError(f"video file not found: {path}")
    if os.path.getsize(path) == 0:
        raise VideoReadError(f"video file is empty (0 bytes): {path}")
    if rotation := display_rotation(path):  # a portrait phone video: decord breaks on it
        reader = UprightReader(path, rotation)
        if len(reader) == 0:
            raise VideoReadError(f"video has no frames: {path}")
        return reader
    _guard_forks()
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads)
    except Exception as err:
        raise VideoReadError(f"{explain_unreadable(path) or 'cannot open video'}: {path} ({err})") from err
    if len(reader) == 0:
        raise VideoReadError(f"video has no frames: {path}")
    return reader


_ROTATIONS: dict[str, int] = {}  # per process (forked workers inherit it): path -> display rotation


def display_rotation(path: str | Path) -> int:
    """How far (degrees counter-clockwise: 0, 90, 180 or 270) the stored pixels of ``path``
    must turn to stand as the video is shown: the display matrix a phone writes when it records
    upright. decord ignores it; every reader here applies it. 0 when there is none, or the file
    cannot be probed (the reader's own error then names it). Probed once per file and process
    (about 11 ms: one frame decoded), unless :func:`known_upright` said so first."""
    import av

    key = str(path)
    if key in _ROTATIONS:
        return _ROTATIONS[key]
    rotation = 0
    try:
        with av.open(key) as container:
            if container.streams.video:
                for frame in container.decode(container.streams.video[0]):
                    rotation = _quarter_turns(frame)
                    break
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the reader that opens it
        return 0
    _ROTATIONS[key] = rotation
    return rotation


def _quarter_turns(frame) -> int:
    """A decoded PyAV frame's display rotation as 0, 90, 180 or 270 degrees counter-clockwise."""
    return int(round((frame.rotation or 0) / 90.0)) % 4 * 90


def known_upright(paths: Iterable[str | Path]) -> None:
    """Videos this project wrote itself (a face store's): stored upright, never probed."""
    _ROTATIONS.update((str(p), 0) for p in paths)


def upright(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Frames (..., H, W, C) turned ``rotation`` degrees counter-clockwise (see
    :func:`display_rotation`), contiguous."""
    if not rotation:
        return frames
    return np.ascontiguousarray(np.rot90(frames, k=rotation // 90, axes=(-3, -2)))


class UprightReader:
    """Random access to a video with a display rotation, by PyAV: decord turns such frames but
    not its buffers (garbage frames, then a size check failure), so it is not used for them.
    Frame ``i`` is the frame with the ``i``-th presentation time (a seek to the keyframe before
    it, then decoding forward; variable frame rates too); the frames come out upright. Slower
    than decord: train from a face store (written upright) for speed. Offers what the project
    uses of decord's ``VideoReader``, plus ``read``."""

    def __init__(self, path: str, rotation: int) -> None:
        import av

        self.path, self.rotation = str(path), rotation
        with av.open(self.path) as container:
            stream = container.streams.video[0]
            self._fps = float(stream.average_rate or stream.guessed_rate or 25)
            # frame i is the i-th presentation time: right for variable frame rates too
            self._pts = sorted(p.pts for p in container.demux(stream) if p.size and p.pts is not None)

    def __len__(self) -> int:
        return len(self._pts)

    def get_avg_fps(self) -> float:
        return self._fps

    def __getitem__(self, i: int) -> np.ndarray:
        return self.read(np.array([i]))[0]

    def read(self, indices: np.ndarray) -> np.ndarray:
        import bisect

        import av

        wanted = sorted(set(int(i) for i in np.asarray(indices).ravel()))
        if wanted and (wanted[0] < 0 or wanted[-1] >= len(self._pts)):
            raise VideoReadError(f"{self.path}: asked for frames {wanted[0]}..{wanted[-1]} but the video has "
                                 f"{len(self._pts)} frames")
        found: dict[int, np.ndarray] = {}
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                container.seek(self._pts[wanted[0]], stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    index = bisect.bisect_left(self._pts, frame.pts)
                    if index < len(self._pts) and self._pts[index] == frame.pts and index in wanted:
                        found[index] = upright(frame.to_ndarray(format="rgb24"), self.rotation)
                    if index >= wanted[-1]:
                        break
        except av.error.FFmpegError as err:
            raise VideoReadError(f"cannot decode frames of {self.path}: {err}") from err
        missing = [i for i in wanted if i not in found]
        if missing:
            raise VideoReadError(f"cannot decode frames {missing[:5]} of {self.path}")
        return np.stack([found[int(i)] for i in np.asarray(indices).ravel()])


def explain_unreadable(path: str | Path) -> str | None:
    """Why FFmpeg cannot read ``path`` as a video, in words (decord's own errors name C++
    check failures): not a media file, no video stream, a codec without a decoder, or no
    frames. None when no reason is found."""
    import av

    try:
        container = av.open(str(path))
    except Exception as err:
        return f"not a video file FFmpeg can read ({type(err).__name__}: {err})"
    with container:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams at all"
            return f"no video stream in the file ({kinds})"
        stream = container.streams.video[0]
        if stream.codec_context is None:
            return "unsupported video codec: this FFmpeg build has no decoder for it"
        try:
            for _ in container.decode(stream):
                return None
        except Exception as err:
            return f"cannot decode the video stream ({type(err).__name__}: {err})"
        return "the video stream holds no frames"


def iter_frames(path: str | Path, times: list[float] | None = None) -> Iterator[np.ndarray]:
    """Decode ``path`` front to back with PyAV, one RGB uint8 (H, W, 3) frame at a time; when
    ``times`` is given, each frame's presentation time in seconds is appended to it.

    Not decord: its reader decodes ahead in a background thread into an unbounded queue, so a
    slow consumer (a face detector) makes it hoard frames. Measured on 60 s of 720p (1,438
    frames): decord ``next()`` with a consumer that pauses 20 ms every 5th frame peaked at
    1,678 MB, its ``get_batch`` in 64-frame chunks at 1,701 MB; PyAV with MTCNN on every 5th
    frame at 111 MB, at the same speed.
    """
    import av

    if Path(path).is_dir():
        seq = ImageSequence(path)
        for i in range(len(seq)):
            if times is not None:
                times.append(i / seq.fps)
            yield seq.image(i)
        return
    try:
        container = av.open(str(path))
    except Exception as err:
        raise VideoReadError(f"cannot open video {path}: {err}") from err
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if times is not None:
                    times.append(float(frame.time) if frame.time is not None else float("nan"))
                # as the video is shown: a phone's portrait video is stored turned, with a display matrix
                yield upright(frame.to_ndarray(format="rgb24"), _quarter_turns(frame))
        except av.error.FFmpegError as err:
            raise VideoReadError(f"cannot decode {path}: {err}") from err


def count_frames(path: str | Path) -> int:
    """Frames the container lists (0 when unknown or unreadable), without decoding: what a
    progress bar's total needs. An image folder counts its images."""
    import av

    path = Path(path)
    if is_image_sequence(path):
        return len(ImageSequence(path))
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            if s.frames:
                return int(s.frames)
            if s.duration and s.average_rate:
                return int(float(s.duration * s.time_base) * float(s.average_rate))
    except Exception:  # a reader reports unreadable files properly; a count is only a hint
        pass
    return 0
