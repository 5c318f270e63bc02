"""Reading a face-clip store: a face video whose frame count differs a little from the corpus's
is used with its labels fitted to it; one that differs a lot, or is missing, skips that video
with its reason (never the run); ``strict`` makes those errors."""

from __future__ import annotations

import json
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


def test_the_index_finds_a_raw_path_on_another_machine_by_its_trailing_folders(tmp_path):
    from fer_lightning.store.index import write_index
    from fer_lightning.store.read import StoreIndex

    def entry(vid, rel):
        return {"video_id": vid, "source": f"/prep/{rel}", "source_rel": rel, "fps": 25.0, "num_frames": 4,
                "face_frames": 4, "coverage": 1.0, "status": "ok", "reason": "", "outputs": [
                    {"video_id": vid, "face_frames": 4, "coverage": 1.0}]}

    for vid in ("corpus__a__clip", "corpus__b__clip", "solo"):
        store_video(tmp_path, vid, 4)
    write_index(tmp_path, [entry("corpus__a__clip", "corpus/a/clip.mp4"), entry("corpus__b__clip", "corpus/b/clip.mp4"),
                           entry("solo", "corpus/b/solo.mp4")], 112)
    index = StoreIndex(tmp_path)
    assert index.source_of("/scratch/data/a/clip.mp4") == "corpus__a__clip"  # another root, same a/clip.mp4
    assert index.source_of("/prep/corpus/b/clip.mp4") == "corpus__b__clip"  # the path preprocess read
    assert index.source_of("/elsewhere/solo.mp4") == "solo"  # one source of that name: no folders needed
    assert index.source_of("/scratch/clip.mp4") is None  # a tie between a/ and b/: no guess
    assert index.source_of("/scratch/other.mp4") is None
    assert index.info("/x/b/clip.mp4") == (25.0, 4, 112, 112)
    assert index.stand_ins(Path("/node/corpus"), (".mp4",), recursive=False) == [
        Path("/node/corpus/clip.mp4"), Path("/node/corpus/clip.mp4"), Path("/node/corpus/solo.mp4")]


def test_a_pretraining_manifest_whose_videos_share_a_name_through_a_store_without_its_raw_corpus(tmp_path, capsys):
    """Two clip.mp4 in different folders of an emotion manifest; the store was made from the
    manifest (ids from its paths) and the raw videos are not on this machine. Each video keeps
    its own labels and faces, and data check counts each class's face frames per split."""
    from fer_lightning.cli.main import main
    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.store.index import write_index

    classes = ["neutral", "happy", "sad"]
    store, corpus = tmp_path / "store", tmp_path / "corpus"
    corpus.mkdir()
    rows, entries = [], []
    for k, (folder, n) in enumerate((("a", 30), ("b", 40))):
        vid = f"{folder}__clip"
        store_video(store, vid, n)  # has a face where frame % 7 != 3
        entries.append({"video_id": vid, "source": f"/prep/{folder}/clip.mp4", "source_rel": f"{folder}/clip.mp4",
                        "fps": 25.0, "num_frames": n, "face_frames": 0, "coverage": 0.0, "status": "ok",
                        "reason": "", "outputs": [{"video_id": vid, "face_frames": 0, "coverage": 0.0}]})
        rows += [{"video": f"{folder}/clip.mp4", "frame": f, "label": classes[(f // 5 + k) % 3],
                  "split": ("train", "val")[k]} for f in range(n) if f % 4]  # every 4th frame unlabelled
    write_index(store, entries, 112)
    manifest = pd.DataFrame(rows)
    manifest.to_parquet(corpus / "labels.parquet", index=False)
    dm = AffectDataModule(root=str(corpus), dataset="emotion_manifest", task="pretrain", class_names=classes,
                          face_store=str(store), dataset_args={"manifest": "labels.parquet"}, clip_len=8,
                          image_size=32, batch_size=2, num_workers=0, augment=False, held_out_from_train=0.0)
    dm.setup()
    records = {r.video_id: r for split in ("train", "val") for r in dm.split_records(split)}
    assert sorted(records) == ["a__clip", "b__clip"] and dm.skipped == []
    assert records["b__clip"].num_frames == 40 and records["b__clip"].path == store / "videos" / "b__clip.mp4"
    capsys.readouterr()
    assert main(["data", "check", "--dataset", "emotion_manifest", "--root", str(corpus), "--face_store", str(store),
                 "--dataset_args", '{"manifest": "labels.parquet"}', "--data.task=pretrain",
                 "--data.class_names=[neutral, happy, sad]", "--data.held_out_from_train=0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    face = manifest["frame"] % 7 != 3  # the store's has_face, by hand
    for split in ("train", "val"):
        expected = manifest[face & (manifest["split"] == split)]["label"].value_counts()
        assert summary["splits"][split]["class_frames"] == {c: int(expected.get(c, 0)) for c in classes}
