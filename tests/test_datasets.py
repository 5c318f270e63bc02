"""Corpus adapters read fixtures in each corpus's native layout, written here with real
encoded videos, and put specific labels on specific frames."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pandas as pd
import pytest

from fer_lightning.data.datamodule import AffectDataModule
from fer_lightning.data.datasets import load_dataset
from fer_lightning.data.splits import subject_splits


def write_video(path, frames: int, fps, size=64):
    """A real H.264 video whose frame i is uniformly grey level 2*i (so frames are identifiable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.full((size, size, 3), (2 * i) % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


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
        write_video(root / "recordings_video" / f"{vid}.mp4", int(2 * fps), fps)
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
    skipped = []
    records = {r.video_id: r for r in load_dataset("recola", recola_root, skipped=skipped, method="linear")}
    assert sorted(records) == ["dev_1", "train_1", "train_2"]
    assert skipped and skipped[0][0] == "test_1" and "ratings_gold_standard/valence/test_1.arff" in skipped[0][1]
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
    assert dm.skipped == ["test_1"] and "missing gold standard" in dm.skip_reasons["test_1"]
    val = dm.datasets["val"]
    seen = 0
    for i in range(len(val)):
        item = val[i]
        idx = item["frame_index"].numpy()
        for k in np.flatnonzero(idx >= 0):
            f = int(idx[k])
            assert abs(int(item["frames"][k].float().mean()) - 2 * f) <= 3  # the right frame was read
            if f != 20:
                np.testing.assert_allclose(item["targets"][k].numpy(), [-0.01 * f, 0.01 * f], atol=1e-6)
            assert bool(item["mask"][k]) == (f != 20)
            seen += 1
    assert seen == 50  # evaluation covers every frame once


def write_manifest_corpus(root, with_split: bool):
    rows = []
    for i in range(8):
        vid = f"clip{i}"
        write_video(root / "videos" / f"{vid}.mp4", 30, 30000 / 1001)
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
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)


def _mk(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_generic_manifest_resamples_scales_and_splits_by_subject(tmp_path):
    write_manifest_corpus(tmp_path, with_split=False)
    skipped = []
    records = load_dataset("manifest", tmp_path, skipped=skipped, scale=(0, 100), invalid=-1, method="nearest")
    assert [s[0] for s in skipped] == ["missing"] and "missing.mp4" in skipped[0][1]
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
