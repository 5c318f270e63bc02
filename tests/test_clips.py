"""Clip windows, face crops and the decord-backed ClipDataset."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fer_lightning.corpora.adapters import load_dataset
from fer_lightning.data.clips import ClipDataset, clip_starts
from fer_lightning.faces.detect import crop_face
from fer_lightning.media.video import VideoReadError


@pytest.mark.parametrize(
    "n,T,stride,step,pad,expected",
    [
        (10, 4, 2, 1, False, [0, 2, 4, 6]),
        (11, 4, 3, 1, False, [0, 3, 6, 7]),  # last window moved back to reach the end
        (3, 4, 2, 1, False, [0]),  # shorter than a window: one padded window
        (10, 3, 5, 2, False, [0, 5]),  # span (3-1)*2+1 = 5
        (10, 4, 4, 1, True, [0, 4, 8]),  # evaluation: regular starts, tail padded
        (10, 3, 5, 2, True, [0, 1, 5, 6]),  # evaluation at step 2: both phases of each start
        (0, 4, 2, 1, False, []),
    ],
)
def test_clip_starts_hand_cases(n, T, stride, step, pad, expected):
    assert clip_starts(n, T, stride, step, pad) == expected


def test_clip_starts_rejects_nonsense():
    with pytest.raises(ValueError, match="must be >= 1"):
        clip_starts(10, 0, 1)


def test_crop_face_equals_slicing_at_unit_scale():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    # a 20x20 box with no margin and output 20 px: a pure translation, i.e. a slice
    out = crop_face(frame, np.array([30, 10, 50, 30], float), 20, 0.0)
    np.testing.assert_array_equal(out, frame[10:30, 30:50])
    # a box hanging off the left edge is zero-padded, not shifted
    out = crop_face(frame, np.array([-5, 10, 15, 30], float), 20, 0.0)
    np.testing.assert_array_equal(out[:, :5], 0)
    np.testing.assert_array_equal(out[:, 5:], frame[10:30, 0:15])


def _decode_all(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_dataset_items_match_labels_and_independent_decode(tiny_corpus):
    records = [r for r in load_dataset("synthetic", tiny_corpus) if not r.has_face.all()]
    rec = records[0]
    ds = ClipDataset([rec], clip_len=8, stride=8, image_size=48, face_margin=0.2, pad_last=True)
    assert len(ds) == -(-rec.num_frames // 8)  # ceil: every frame exactly once
    seen = torch.cat([ds[i]["frame_index"] for i in range(len(ds))])
    assert sorted(seen[seen >= 0].tolist()) == list(range(rec.num_frames))

    item = ds[0]
    assert item["frames"].dtype == torch.uint8 and item["frames"].shape == (8, 3, 48, 48)
    assert item["targets"].dtype == torch.float32 and item["targets"].shape == (8, 2)
    assert item["mask"].dtype == torch.bool and item["video_id"] == rec.video_id
    # frames equal crops of frames decoded by PyAV (an independent decoder), up to decoder rounding
    pyav = _decode_all(rec.path)
    for k, f in enumerate(item["frame_index"].tolist()):
        if rec.has_face[f]:
            ref = crop_face(pyav[f], rec.boxes[f], 48, 0.2)
            diff = np.abs(item["frames"][k].permute(1, 2, 0).numpy().astype(int) - ref.astype(int))
            assert diff.mean() < 2.0
    # labels are the annotation file's rows; faceless frames are masked and black
    for i in range(len(ds)):
        it = ds[i]
        idx = it["frame_index"].numpy()
        inside = idx >= 0
        np.testing.assert_array_equal(it["mask"].numpy(), np.where(inside, rec.has_face[np.clip(idx, 0, None)], False))
        np.testing.assert_allclose(it["targets"][it["mask"]].numpy(), rec.values[idx[it["mask"].numpy()]])
        assert (it["frames"][~it["mask"]] == 0).all()
        # what evaluation scores (a label, face or not) and where a face is, apart from the loss's mask
        labelled = np.isfinite(rec.values[np.clip(idx, 0, None)]).all(1) & inside
        np.testing.assert_array_equal(it["labelled"].numpy(), labelled)
        np.testing.assert_array_equal(it["has_face"].numpy(), np.where(inside, rec.has_face[np.clip(idx, 0, None)], False))


def test_pretrain_items_hold_class_indices(tiny_corpus):
    rec = load_dataset("synthetic", tiny_corpus)[0]
    ds = ClipDataset([rec], clip_len=6, task="pretrain", image_size=32)
    it = ds[0]
    assert it["targets"].dtype == torch.int64 and it["targets"].shape == (6,)
    np.testing.assert_array_equal(it["targets"][it["mask"]].numpy(), rec.labels[it["frame_index"][it["mask"]].numpy()])
    assert (it["targets"][~it["mask"]] == -1).all()


def test_readers_open_lazily_inside_workers(tiny_corpus):
    records = load_dataset("synthetic", tiny_corpus)
    ds = ClipDataset(records, clip_len=4, image_size=32)
    assert len(ds.readers) == 0
    batches = list(DataLoader(ds, batch_size=4, num_workers=2))
    assert sum(b["frames"].shape[0] for b in batches) == len(ds)
    assert len(ds.readers) == 0  # the parent never opened a decoder


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated"])
def test_unreadable_video_error_names_the_file(tiny_corpus, tmp_path, kind):
    rec = load_dataset("synthetic", tiny_corpus)[0]
    real = rec.path.read_bytes()
    content = {"empty": b"", "garbage": b"this is not a video" * 100, "truncated": real[:2048]}[kind]
    bad = tmp_path / "broken_clip.mp4"
    bad.write_bytes(content)
    rec.path = bad
    ds = ClipDataset([rec], clip_len=4, image_size=32)
    with pytest.raises(VideoReadError, match="broken_clip.mp4"):
        ds[0]


def test_video_shorter_than_labels_is_reported(tiny_corpus):
    rec = load_dataset("synthetic", tiny_corpus)[0]
    rec.num_frames = 200
    rec.has_face = np.ones(200, bool)
    rec.boxes = np.tile(rec.boxes[:1], (200, 1))
    rec.values = np.zeros((200, 2), np.float32)
    rec.labels = None
    ds = ClipDataset([rec], clip_len=4, stride=4, image_size=32)
    with pytest.raises(VideoReadError, match=r"synth_000\.mp4.*has 75 frames"):
        ds[len(ds) - 1]


def test_augmentation_is_one_draw_per_clip_and_configurable(tmp_path):
    import albumentations as A

    from fer_lightning.data.transforms import build_augment

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    clip = np.stack([frame] * 8)
    aug = build_augment(True)
    outs = [aug(clip) for _ in range(6)]
    for out in outs:  # identical frames stay identical: the same flip/affine/colour on all
        assert out.shape == clip.shape and out.dtype == np.uint8
        assert all(np.array_equal(out[0], f) for f in out[1:])
    assert len({o.tobytes() for o in outs}) > 1  # but clips differ from one another

    assert build_augment(False) is None and build_augment({"flip": 0.0, "affine": 0.0, "photometric": 0.0})(clip).tobytes() == clip.tobytes()
    pipeline = A.Compose([A.HorizontalFlip(p=1.0)])
    A.save(pipeline, str(tmp_path / "aug.yaml"), data_format="yaml")
    flipped = build_augment(str(tmp_path / "aug.yaml"))(clip)
    np.testing.assert_array_equal(flipped, clip[:, :, ::-1])
    np.testing.assert_array_equal(build_augment(A.to_dict(pipeline))(clip), clip[:, :, ::-1])
    with pytest.raises(ValueError, match="unknown keys"):
        build_augment({"blur": 1.0})


@pytest.mark.timeout(120)
def test_a_forked_process_never_destroys_the_readers_it_inherited(tiny_corpus):
    """decord's reader joins its decoding thread when destroyed; a forked child (a DataLoader
    worker) has the parent's readers but not their threads, so destroying one there hung forever
    (seen after in-process evaluation: a worker's garbage collector met a parent's reader)."""
    import gc
    import multiprocessing

    from fer_lightning.media.video import ReaderCache, open_video

    videos = sorted((tiny_corpus / "videos").glob("*.mp4"))
    cache = ReaderCache(max_open=1)
    cache.read(videos[0], [0])  # open in the parent, its thread running
    garbage = [open_video(videos[1])]
    garbage.append(garbage)  # a reader in a reference cycle: garbage the parent has not collected yet
    del garbage

    def child():
        cache.read(videos[2], [0])  # the inherited reader leaves the cache
        gc.collect()  # and the inherited garbage meets the collector
        cache.read(videos[3], [1])

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(60)
    if proc.is_alive():
        proc.kill()
    assert proc.exitcode == 0, "the forked child hung destroying a reader it inherited"


@pytest.mark.parametrize("step", [1, 2, 3])
def test_evaluation_windows_score_every_frame_whatever_the_frame_step(step):
    """Evaluation windows (pad_last, half overlap) of a model trained on every step-th frame
    reach every frame of a video, each frame seen by windows of its own phase only."""
    from pathlib import Path

    from fer_lightning.corpora.records import VideoRecord

    n, clip_len = 37, 4
    rec = VideoRecord("v", Path("v.mp4"), "s", "val", 25.0, n, np.zeros(n, bool), np.zeros((n, 4), np.float32),
                      values=np.zeros((n, 2), np.float32))
    span = (clip_len - 1) * step + 1
    ds = ClipDataset([rec], clip_len=clip_len, stride=max(1, round(span * 0.5)), frame_step=step, pad_last=True)
    covered = set()
    for _, start in ds.windows:
        frames = start + np.arange(clip_len) * step
        covered |= {int(f) for f in frames if f < n}
        assert len({f % step for f in frames}) == 1
    assert covered == set(range(n))
