"""The chunked training stream: same items as single-clip reads, exact epoch sizes per shard,
disjoint shards, reproducible and changing epochs, batches that mix videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fer_lightning.corpora.adapters import load_dataset
from fer_lightning.data.chunked import ChunkedClipStream
from fer_lightning.data.clips import ClipDataset


def make_clips(root, clip_len=8, step=1):
    records = load_dataset("synthetic", root)
    return ClipDataset(records, clip_len=clip_len, frame_step=step, image_size=32, stride=clip_len)


def test_streamed_items_equal_single_clip_reads(tiny_corpus):
    clips = make_clips(tiny_corpus, clip_len=6, step=2)
    stream = ChunkedClipStream(clips, chunk_len=40, buffer_size=8, clips_per_epoch=30, seed=1)
    reference = ClipDataset(clips.records, clip_len=6, frame_step=2, image_size=32)
    ids = {r.video_id: i for i, r in enumerate(clips.records)}
    items = list(stream)
    assert len(items) == 30
    for item in items:
        idx = item["frame_index"].numpy()
        start = int(idx[0])
        assert (np.diff(idx[idx >= 0]) == 2).all()
        rec_i = ids[item["video_id"]]
        ref = reference.make_item(rec_i, start, lambda i, r=clips.records[rec_i]: reference.readers.read(r.path, i))
        for key in ("frames", "targets", "mask", "frame_index"):
            torch.testing.assert_close(item[key], ref[key], rtol=0, atol=0)
    starts = {(it["video_id"], int(it["frame_index"][0])) for it in items}
    assert len({s for _, s in starts}) > 10  # random positions and phases, not a fixed grid


def test_every_shard_yields_the_same_number_of_clips_from_its_own_videos(tiny_corpus):
    clips = make_clips(tiny_corpus)
    seen = {}
    for rank in (0, 1):
        stream = ChunkedClipStream(clips, chunk_len=16, buffer_size=4, num_workers=2, world_size=2,
                                   batch_size=3, seed=0, rank=rank)
        loader = DataLoader(stream, batch_size=3, num_workers=2)
        batches = list(loader)
        assert len(batches) == len(loader)  # the length Lightning is told is the length it gets
        assert sum(len(b["video_id"]) for b in batches) == len(stream) == 2 * stream.per_shard
        seen[rank] = {v for b in batches for v in b["video_id"]}
    assert len(seen[0]) >= 2 and not seen[0] & seen[1]  # 6 videos over 4 shards: disjoint


def test_epochs_differ_and_repeat_with_the_seed(tiny_corpus):
    def epochs(seed):
        stream = ChunkedClipStream(make_clips(tiny_corpus), chunk_len=24, buffer_size=6, clips_per_epoch=12,
                                   seed=seed)
        return [[(it["video_id"], int(it["frame_index"][0])) for it in stream] for _ in range(2)]

    a, b = epochs(5), epochs(5)
    assert a == b and a[0] != a[1] and epochs(6) != a


def test_the_buffer_mixes_videos_within_a_batch(tiny_corpus):
    stream = ChunkedClipStream(make_clips(tiny_corpus), chunk_len=16, buffer_size=32, clips_per_epoch=64, seed=2)
    batches = list(DataLoader(stream, batch_size=8))
    assert np.mean([len(set(b["video_id"])) for b in batches[:-1]]) >= 3


def test_a_video_that_breaks_mid_epoch_is_masked_and_named(tiny_corpus, tmp_path):
    import pytest

    records = load_dataset("synthetic", tiny_corpus)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(records[0].path.read_bytes()[:3000])  # opened fine at setup, truncated now
    records[0].path = broken
    clips = ClipDataset(records[:2], clip_len=8, image_size=16, stride=8, on_read_error="mask")
    with pytest.warns(UserWarning, match=f"masking unreadable frames of {records[0].video_id}"):
        items = list(ChunkedClipStream(clips, chunk_len=16, buffer_size=4, clips_per_epoch=24, seed=0))
    bad = [it for it in items if it["video_id"] == records[0].video_id]
    good = [it for it in items if it["video_id"] != records[0].video_id]
    assert bad and good and not any(it["mask"].any() for it in bad) and any(it["mask"].any() for it in good)
    assert clips.unreadable == {records[0].video_id}
    with pytest.warns(UserWarning):  # map-style reads follow the same policy
        assert not ClipDataset(records[:1], clip_len=8, image_size=16, on_read_error="mask")[0]["mask"].any()


@pytest.mark.timeout(180)
def test_workers_start_after_the_parent_used_opencv_threads(tiny_corpus):
    """A forked worker that changed OpenCV's thread count after the parent had used OpenCV's
    thread pool deadlocked (the pool's lock belongs to a thread the child does not have): the
    benchmark hung there after an in-process (num_workers=0) pass had augmented with OpenCV."""
    import cv2

    from fer_lightning.data.datamodule import AffectDataModule

    cv2.setNumThreads(2)
    img = np.random.default_rng(0).integers(0, 255, (1500, 1500, 3), dtype=np.uint8)
    for _ in range(5):
        cv2.GaussianBlur(img, (31, 31), 0)  # the parent's OpenCV thread pool is running now
    dm = AffectDataModule(root=str(tiny_corpus), clip_len=4, image_size=32, batch_size=4, num_workers=1,
                          augment={"flip": 0.5, "affine": 1.0, "photometric": 1.0})
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (4, 4, 3, 32, 32)


def _keys(items):
    return [(it["video_id"], int(it["frame_index"][0])) for it in items]


def test_a_fresh_stream_set_to_epoch_e_yields_what_a_running_one_does(tiny_corpus):
    """What a resumed run (a new process) or an epoch cut short (limit_train_batches) gets equals
    the uninterrupted stream, augmentation included: the random plan is replayed, not re-drawn."""
    from fer_lightning.data.transforms import ClipAugment

    def stream():
        records = load_dataset("synthetic", tiny_corpus)
        clips = ClipDataset(records, clip_len=8, image_size=32, stride=8, transform=ClipAugment())
        return ChunkedClipStream(clips, chunk_len=24, buffer_size=10, clips_per_epoch=12, seed=3)

    running = stream()
    epochs = [list(running) for _ in range(3)]
    assert len({tuple(_keys(e)) for e in epochs}) == 3

    resumed = stream()
    resumed.set_epoch(2)
    again = list(resumed)
    assert _keys(again) == _keys(epochs[2])
    for a, b in zip(again, epochs[2], strict=True):  # pixels too: one read per clip == chunk reads
        assert torch.equal(a["frames"], b["frames"])

    cut = stream()
    for i, _ in enumerate(cut):  # epoch 0 stopped after 3 clips
        if i == 2:
            break
    assert _keys(list(cut)) == _keys(epochs[1])


def test_later_epochs_start_without_refilling_the_buffer(tiny_corpus):
    """The buffer fills once: the first clip of epoch 1 needs at most one new chunk read, where a
    per-epoch buffer would read buffer_size / clips-per-chunk chunks first."""
    clips = make_clips(tiny_corpus)
    stream = ChunkedClipStream(clips, chunk_len=16, buffer_size=24, clips_per_epoch=20, seed=0)
    reads = []
    read = clips.readers.read
    clips.readers.read = lambda path, idx: reads.append(len(idx)) or read(path, idx)
    it = iter(stream)
    next(it)
    assert len(reads) >= 24 // 2  # epoch 0 fills the buffer: 2 clips per 16-frame chunk
    list(it)
    reads.clear()
    next(iter(stream))
    assert len(reads) <= 1
