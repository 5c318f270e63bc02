"""Training clips cut from long contiguous reads, mixed through a shuffle buffer.

Random 16- or 32-frame seeks into H.264 face videos decode up to a GOP of frames nobody asked
for and, measured on a 16-core machine (``shared/probes/README.md``), plateau at about 4k
frames/s however many workers read, while sequential reads scale with cores (40k frames/s on 16
processes). :class:`ChunkedClipStream` therefore reads ``chunk_len`` contiguous frames of one
video at a random position, cuts them into clips at a random phase, and hands clips out in
random order from a buffer that mixes many chunks (so a batch still holds clips of many
videos).

Each (rank, worker) shard yields the same number of clips, so every DDP rank sees the same
number of batches; shards read disjoint sets of videos when there are enough of them. Videos
are drawn in proportion to their length. Every call of ``__iter__`` (one per epoch) continues
the shard's random stream, so epochs differ and a run with the same seed repeats exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from fer_lightning.data.clips import ClipDataset
from fer_lightning.data.video import VideoReadError


class ChunkedClipStream(IterableDataset):
    """Training items (the same dicts as :class:`ClipDataset`) from contiguous chunk reads.

    Args:
        clips: a :class:`ClipDataset` over the training records: it supplies the records, the
            window geometry, the transform and the item layout; its stride-tiled window count
            is the default epoch length.
        chunk_len: frames decoded per read (rounded up to whole clips).
        buffer_size: clips held for shuffling; a clip leaves once the buffer is full.
        num_workers: DataLoader workers per rank (for the epoch length and the shards).
        world_size: DDP ranks.
        clips_per_epoch: clips per rank per epoch (default: the tiled window count / ranks).
        batch_size: each shard yields a whole number of batches, so the DataLoader's length is
            exact whatever the number of workers.
        seed: base of every shard's random stream.
        rank: this process's DDP rank (default: torch.distributed's, or 0).
        video_weights: how often each record is drawn, relative (default: its frame count);
            class-balanced pretraining passes :func:`class_balanced_weights`.

    Call :meth:`set_epoch` before an epoch's iterator is made (``AffectModule`` does, at the start
    of every training epoch), so that a resumed run draws what an uninterrupted one would have.
    """

    def __init__(self, clips: ClipDataset, chunk_len: int = 128, buffer_size: int = 256, num_workers: int = 0,
                 world_size: int = 1, clips_per_epoch: int | None = None, batch_size: int = 1, seed: int = 0,
                 rank: int | None = None, video_weights: np.ndarray | None = None) -> None:
        super().__init__()
        if not clips.records:
            raise ValueError("no training videos to stream clips from")
        self.clips = clips
        self.span = (clips.clip_len - 1) * clips.frame_step + 1
        self.chunk_clips = max(1, -(-chunk_len // self.span))  # whole clips per chunk
        self.buffer_size = buffer_size
        self.num_workers = max(1, num_workers)
        self.world_size = world_size
        per_rank = clips_per_epoch if clips_per_epoch is not None else len(clips) // world_size
        self.per_shard = max(1, per_rank // self.num_workers // batch_size) * batch_size
        self.seed = seed
        self.rank = rank
        lengths = np.array([r.num_frames for r in clips.records], np.float64)
        self.video_weights = lengths if video_weights is None else np.asarray(video_weights, np.float64)
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next ``__iter__`` draws for; later calls of ``__iter__`` in a persistent
        worker continue from it."""
        self._epoch = epoch

    def __len__(self) -> int:
        """Clips per rank per epoch."""
        return self.per_shard * self.num_workers

    def _shard(self) -> tuple[int, int]:
        info = get_worker_info()
        worker = info.id if info else 0
        rank = self.rank
        if rank is None:
            dist = torch.distributed
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        return rank * self.num_workers + worker, self.world_size * self.num_workers

    def __iter__(self):
        shard, shards = self._shard()
        rng = np.random.default_rng([self.seed, shard, self._epoch])
        self._epoch += 1  # the dataset copy in a persistent worker keeps counting epochs
        if callable(getattr(self.clips.transform, "seed", None)):
            self.clips.transform.seed(int(rng.integers(2**31)))  # augmentation follows the epoch too
        records = self.clips.records
        mine = np.arange(len(records))
        if len(records) >= shards:
            mine = mine[shard::shards]
        w = self.video_weights[mine]
        p = w / w.sum() if w.sum() > 0 else np.full(len(mine), 1.0 / len(mine))
        buffer: list[dict] = []
        produced = 0
        while produced < self.per_shard:
            rec_i = int(mine[rng.choice(len(mine), p=p)])
            for item in self._chunk(rec_i, rng):
                if produced >= self.per_shard:
                    break
                buffer.append(item)
                produced += 1
                if len(buffer) >= self.buffer_size:
                    yield buffer.pop(int(rng.integers(len(buffer))))
        rng.shuffle(buffer)
        yield from buffer

    def _chunk(self, rec_i: int, rng: np.random.Generator):
        """Clips of one contiguous read of record ``rec_i`` at a random position and phase."""
        rec = self.clips.records[rec_i]
        n = rec.num_frames
        want = self.chunk_clips * self.span + self.span - 1  # room for a random phase
        lo = int(rng.integers(0, max(1, n - want) + 1))
        hi = min(n, lo + want)
        phase = int(rng.integers(0, self.span)) if hi - lo >= want else 0
        starts = list(range(lo + phase, max(lo + phase + 1, hi - self.span + 1), self.span))[: self.chunk_clips]
        has = rec.has_face[lo:hi]
        wanted = np.flatnonzero(has) + lo
        frames, failure = {}, None
        if len(wanted):
            try:
                frames = dict(zip(wanted.tolist(), self.clips.readers.read(rec.path, wanted), strict=True))
            except VideoReadError as err:  # make_item applies the dataset's on_read_error policy
                failure = err

        def decode(idx: np.ndarray) -> np.ndarray:
            if failure is not None:
                raise failure
            return np.stack([frames[int(i)] for i in idx])

        for start in starts:
            yield self.clips.make_item(rec_i, start, decode)


def inverse_class_frequency(records, num_classes: int) -> np.ndarray:
    """(C,) weight per class: 1 / (its share of the labelled face frames); 0 for absent classes."""
    counts = np.zeros(num_classes, np.float64)
    for r in records:
        lab = r.labels[(r.labels >= 0) & r.has_face]
        counts += np.bincount(lab, minlength=num_classes)[:num_classes]
    return np.where(counts > 0, counts.sum() / np.maximum(counts, 1), 0.0)


def class_balanced_weights(records, num_classes: int) -> np.ndarray:
    """Per-record draw weights that even out emotion classes: each labelled frame counts its
    class's :func:`inverse_class_frequency`, so a video full of a rare class is drawn as often
    as one full of a common class is, frame for frame."""
    inv = inverse_class_frequency(records, num_classes)
    return np.array([inv[r.labels[(r.labels >= 0) & r.has_face]].sum() for r in records], np.float64)
