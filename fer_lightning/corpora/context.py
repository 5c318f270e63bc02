"""What an adapter receives besides the corpus folder and its own options.

An :class:`AdapterContext` carries the face store's index (so that no raw video is opened where
a store already knows it), the run's emotion classes, and the two lists an adapter reports
into: videos it leaves out (``skipped``) and videos the corpus ships without labels
(``unlabelled``, e.g. a test partition). :func:`fer_lightning.corpora.load.load_corpus` makes
one per load; nothing is passed on the side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fer_lightning.media.video import open_video
from fer_lightning.store.read import StoreIndex


@dataclass
class AdapterContext:
    """The inputs and outputs an adapter shares with its caller.

    Attributes:
        index: a face store's index (:func:`fer_lightning.store.read.load_index`): it answers
            for the raw videos it holds (frame rate, frame count, and which videos there are
            where the corpus folder holds none, as on a compute node that got the store and the
            labels only).
        class_names: the run's emotion classes in logit order (``data.class_names``), for an
            adapter that reads class labels; None where the run has none.
        image_size: the side of the run's face crops (``data.image_size``): image corpora read
            their images at this size.
        skipped: ``(video_id, reason)`` for each video the adapter leaves out.
        unlabelled: ``(video_id, reason)`` for each video of a partition the corpus publishes
            without labels: how the corpus ships, not a problem with it.
    """

    index: StoreIndex | None = None
    class_names: Sequence[str] | None = None
    image_size: int = 112
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unlabelled: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, video_id: str, reason: str) -> None:
        """Leave ``video_id`` out, saying why (reported by setup and ``data check``)."""
        self.skipped.append((video_id, reason))

    def without_labels(self, video_id: str, reason: str) -> None:
        """Report ``video_id`` as shipped without labels (not used, not a fault)."""
        self.unlabelled.append((video_id, reason))

    def video_info(self, path: str | Path) -> tuple[float, int, int, int]:
        """(fps, frame count, width, height) of a video: from the face store's index when it
        holds the video (the frames preprocessing decoded), else read from the file."""
        if self.index is not None and (known := self.index.info(path)):
            return known
        reader = open_video(path)
        h, w = reader[0].shape[:2]
        return float(reader.get_avg_fps()), len(reader), w, h

    def find_videos(self, folder: Path, suffixes: tuple[str, ...], recursive: bool = False) -> list[Path]:
        """The video files (``suffixes``, lower case) in ``folder``, or below it with
        ``recursive``, sorted. Where the folder holds none and a face store's index is known,
        the store's sources stand for them
        (:meth:`~fer_lightning.store.read.StoreIndex.stand_ins`): the raw corpus need not be on
        the machine that trains."""
        if folder.is_dir():
            found = sorted(p for p in (folder.rglob("*") if recursive else folder.glob("*"))
                           if p.suffix.lower() in suffixes and p.is_file())
            if found:
                return found
        return self.index.stand_ins(folder, suffixes, recursive) if self.index is not None else []
