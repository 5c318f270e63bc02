"""Reading a face-clip store: a face video whose frame count differs a little from the corpus's
is used with its labels fitted to it; one that differs a lot, or is missing, skips that video
with its reason (never the run); ``strict`` makes those errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_lightning.corpora.records import VideoRecord
from fer_lightning.store.read import attach_store


def record(video_id: str, n: int) -> VideoRecord:
    values = np.stack([np.arange(n) / 100, -np.arange(n) / 100], axis=1).astype(np.float32)
    return VideoRecord(video_id, Path(f"/corpus/{video_id}.mp4"), video_id, "train", 25.0, n,
                       np.ones(n, bool), np.zeros((n, 4), np.float32), values=values)


def store_video(store: Path, video_id: str, n: int) -> None:
    (store / "meta").mkdir(parents=True, exist_ok=True)
    (store / "videos").mkdir(parents=True, exist_ok=True)
    has_face = np.arange(n) % 7 != 3
    pd.DataFrame({"frame_index": np.arange(n), "has_face": has_face.astype(int)}).to_csv(
        store / "meta" / f"{video_id}.csv", index=False)
    (store / "videos" / f"{video_id}.mp4").write_bytes(b"")


def test_small_differences_fit_labels_to_the_store_and_large_ones_skip_with_a_reason(tmp_path):
    store = tmp_path / "store"
    store_video(store, "short", 47)   # the container listed 50 frames, FFmpeg decoded 47
    store_video(store, "long", 52)
    store_video(store, "other", 30)   # made from another video
    records = [record("short", 50), record("long", 52 - 2), record("other", 50), record("absent", 50)]
    out, left_out = attach_store(records, store, tolerance=5)
    got = {r.video_id: r for r in out}
    assert sorted(got) == ["long", "short"]
    short, long_ = got["short"], got["long"]
    assert short.num_frames == 47 and len(short.values) == 47 and len(short.has_face) == 47
    np.testing.assert_array_equal(short.values, records[0].values[:47])  # frame i keeps label i
    assert "corpus 50 frames, face store 47" in short.extra["frame_count_note"]
    assert long_.num_frames == 52 and np.isnan(long_.values[50:]).all()  # no label: masked
    np.testing.assert_array_equal(long_.values[:50], records[1].values)
    np.testing.assert_array_equal(short.has_face, np.arange(47) % 7 != 3)  # what preprocessing found
    reasons = dict(left_out)
    assert sorted(reasons) == ["absent", "other"]
    assert "not in the face store" in reasons["absent"]
    assert "30 frames" in reasons["other"] and "50" in reasons["other"] and "store_length_tolerance" in reasons["other"]
    with pytest.raises(ValueError, match="other: the face store holds 30 frames"):
        attach_store(records, store, tolerance=5, strict=True)


def test_the_datamodule_skips_a_mismatched_video_and_strict_stops_on_it(tiny_corpus, tmp_path):
    from fer_lightning.corpora.adapters import load_dataset
    from fer_lightning.data.datamodule import AffectDataModule

    store = tmp_path / "store"
    records = load_dataset("synthetic", tiny_corpus)
    for i, r in enumerate(records):
        store_video(store, r.video_id, r.num_frames - (40 if i == 0 else 1))
    common = dict(root=str(tiny_corpus), face_store=str(store), clip_len=4, image_size=32, batch_size=2,
                  num_workers=0, augment=False)
    dm = AffectDataModule(**common)
    dm.setup()
    assert dm.skipped == [records[0].video_id] and "store_length_tolerance" in dm.skip_reasons[records[0].video_id]
    kept = {r.video_id: r for s in ("train", "val", "test") for r in dm.split_records(s)}
    assert len(kept) == len(records) - 1 and all(kept[r.video_id].num_frames == r.num_frames - 1 for r in records[1:])
    with pytest.raises(ValueError, match=f"{records[0].video_id}: the face store holds"):
        AffectDataModule(**common, strict=True).setup()
