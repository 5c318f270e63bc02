"""Training clips cut from long contiguous reads, mixed through a shuffle buffer.

Random 16- or 32-frame seeks into H.264 face videos decode up to a GOP of frames nobody asked
for and, measured with decord on a 16-core machine, plateau at about 4k
frames/s however many workers read, while sequential reads scale with cores (40k frames/s on 16
processes). :class:`ChunkedClipStream` therefore reads ``chunk_len`` contiguous frames of one
video at a random position, cuts them into clips at a random phase, and hands clips out in
random order from a buffer that mixes many chunks (so a batch still holds clips of many
videos).

Each (rank, worker) shard yields the same number of clips, so every DDP rank sees the same
number of batches; shards read disjoint sets of videos when there are enough of them. Videos
are drawn in proportion to their length. A shard's stream runs on across epochs (the buffer is
filled once, not at every epoch start, and persistent workers keep it), epoch ``e`` is its clips
``e * per_shard`` onwards, so epochs differ, a run with the same seed repeats exactly, and a
resumed run replays the random plan to where it stopped.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import IterableDataset, WeightedRandomSampler, get_worker_info

from fer_lightning.data.clips import ClipDataset
from fer_lightning.media.video import VideoReadError


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
        """This epoch's ``per_shard`` clips. The shard's stream runs on across epochs: the shuffle
        buffer is filled once, and later epochs continue from it, so decoding keeps overlapping
        with training instead of stalling at every epoch start (an epoch smaller than the buffer
        would otherwise be decoded whole before its first batch). Epoch ``e`` is always clips
        ``e * per_shard ...`` of that stream: a fresh process (a resumed run) or an epoch cut
        short (``limit_train_batches``) replays the stream's random plan up to there without
        decoding, and decodes only the clips it then still holds, one read each."""
        shard, shards = self._shard()
        epoch, self._epoch = self._epoch, self._epoch + 1  # a persistent worker's copy keeps counting
        state = getattr(self, "_state", None)
        begin = epoch * self.per_shard
        if state is None or state.shard != shard or state.position > begin:
            state = self._state = _StreamState(self, shard, shards)
        while state.position < begin:
            state.next(decode=False)
        for _ in range(self.per_shard):
            yield self._materialize(state.next(decode=True), shard)

    def _materialize(self, entry: _Entry, shard: int) -> dict:
        if entry.item is None:  # planned but not decoded (a replayed stream): one read of its own
            entry.item = self._make_item(entry, shard, lambda idx, r=self.clips.records[entry.rec_i]:
                                         self.clips.read_frames(r, idx))
        return entry.item

    def _make_item(self, entry: _Entry, shard: int, decode) -> dict:
        transform = self.clips.transform
        if callable(getattr(transform, "seed", None)):  # per clip: the same draw however it is read
            transform.seed(int(np.random.SeedSequence([self.seed, shard, entry.k]).generate_state(1)[0]))
        return self.clips.make_item(entry.rec_i, entry.start, decode)

    def _chunk_plan(self, rec_i: int, rng: np.random.Generator) -> tuple[int, int, list[int]]:
        """Where one contiguous read of record ``rec_i`` goes: (lo, hi, clip starts), drawn at a
        random position and phase."""
        n = self.clips.records[rec_i].num_frames
        want = self.chunk_clips * self.span + self.span - 1  # room for a random phase
        lo = int(rng.integers(0, max(1, n - want) + 1))
        hi = min(n, lo + want)
        phase = int(rng.integers(0, self.span)) if hi - lo >= want else 0
        starts = list(range(lo + phase, max(lo + phase + 1, hi - self.span + 1), self.span))[: self.chunk_clips]
        return lo, hi, starts

    def _read_chunk(self, rec_i: int, lo: int, hi: int, entries: list[_Entry], shard: int) -> None:
        """Decode frames ``lo..hi`` of record ``rec_i`` once and cut the entries' clips from them."""
        rec = self.clips.records[rec_i]
        wanted = np.flatnonzero(rec.has_face[lo:hi]) + lo
        frames, failure = {}, None
        if len(wanted):
            try:
                frames = dict(zip(wanted.tolist(), self.clips.read_frames(rec, wanted), strict=True))
            except VideoReadError as err:  # make_item applies the dataset's on_read_error policy
                failure = err

        def decode(idx: np.ndarray) -> np.ndarray:
            if failure is not None and rec.frames is not None:  # images fail one by one: only the bad one's clips mask
                return self.clips.read_frames(rec, idx)
            if failure is not None:
                raise failure
            return np.stack([frames[int(i)] for i in idx])

        for entry in entries:
            entry.item = self._make_item(entry, shard, decode)


class _Entry:
    """One planned clip of a shard's stream: record, first frame, its number ``k`` in the stream
    (which seeds its augmentation) and, once decoded, the item."""

    __slots__ = ("rec_i", "start", "k", "item")

    def __init__(self, rec_i: int, start: int, k: int) -> None:
        self.rec_i, self.start, self.k, self.item = rec_i, start, k, None


class _StreamState:
    """A shard's endless clip stream: its random plan, the shuffle buffer and the position
    (clips handed out so far). The plan never depends on decoded pixels, so it can be replayed
    without decoding."""

    def __init__(self, stream: ChunkedClipStream, shard: int, shards: int) -> None:
        self.stream, self.shard = stream, shard
        self.rng = np.random.default_rng([stream.seed, shard])
        mine = np.arange(len(stream.clips.records))
        if len(mine) >= shards:
            mine = mine[shard::shards]
        w = stream.video_weights[mine]
        self.mine = mine
        self.p = w / w.sum() if w.sum() > 0 else np.full(len(mine), 1.0 / len(mine))
        self.buffer: list[_Entry] = []
        self.pending: list[_Entry] = []  # the rest of the current chunk, in order
        self.produced = 0
        self.position = 0

    def next(self, decode: bool) -> _Entry:
        """The next clip out of the buffer; ``decode``: read each new chunk as it is planned."""
        s = self.stream
        while len(self.buffer) < s.buffer_size:
            if not self.pending:
                rec_i = int(self.mine[self.rng.choice(len(self.mine), p=self.p)])
                lo, hi, starts = s._chunk_plan(rec_i, self.rng)
                self.pending = [_Entry(rec_i, start, self.produced + j) for j, start in enumerate(starts)]
                self.produced += len(starts)
                if decode:
                    s._read_chunk(rec_i, lo, hi, self.pending, self.shard)
            self.buffer.append(self.pending.pop(0))
        self.position += 1
        return self.buffer.pop(int(self.rng.integers(len(self.buffer))))


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


def class_balanced_sampler(clips: ClipDataset, num_classes: int) -> WeightedRandomSampler:
    """For the ``random`` reader (one seek per window): draws windows with replacement, each
    weighing its labelled frames' mean :func:`inverse_class_frequency`, so rare emotion classes
    are seen as often as common ones, as :func:`class_balanced_weights` does for the stream."""
    inv = inverse_class_frequency(clips.records, num_classes)
    weights = []
    for rec_i, start in clips.windows:
        lab = clips.records[rec_i].labels[start: start + (clips.clip_len - 1) * clips.frame_step + 1: clips.frame_step]
        lab = lab[lab >= 0]
        weights.append(float(inv[lab].mean()) if len(lab) else 0.0)
    return WeightedRandomSampler(weights, num_samples=len(clips), replacement=True)
