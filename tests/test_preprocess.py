"""fer-lightning preprocess on real face videos: store layout, coverage, bad files, resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import av
import decord
import numpy as np
import pandas as pd
import pytest

from fer_lightning.data.store import PreprocessConfig, find_videos, preprocess


@pytest.fixture(scope="module")
def store_run(feat_data, tmp_path_factory):
    inputs = tmp_path_factory.mktemp("inputs")
    for name in ("WolfgangLanger_Pexels.mp4", "no_face.mp4", "face_noface.mov"):
        shutil.copy(feat_data / name, inputs / name)
    (inputs / "truncated.mp4").write_bytes((feat_data / "single_face.mp4").read_bytes()[:3000])
    (inputs / "empty.mp4").write_bytes(b"")
    store = tmp_path_factory.mktemp("store")
    report = preprocess([inputs], store, PreprocessConfig(), workers=2, progress=False)
    return inputs, store, report


def test_report_lists_every_video_and_why_bad_ones_failed(store_run):
    _, store, report = store_run
    assert (report["videos"], report["ok"], report["failed"]) == (5, 3, 2)
    by_id = {e["video_id"]: e for e in report["entries"]}
    assert "empty.mp4" in by_id["empty"]["reason"] and "empty" in by_id["empty"]["reason"]
    assert "truncated.mp4" in by_id["truncated"]["reason"]
    # no_face.mp4's container lists 98 frames of which FFmpeg decodes 95: both said, not hidden
    assert by_id["no_face"]["status"] == "ok"
    assert by_id["no_face"]["reason"] == "container lists 98 frames, 95 decode; no face found in any frame"
    assert json.loads((store / "report.json").read_text())["failed"] == 2
    index = pd.read_csv(store / "index.csv")
    assert list(index["video_id"]) == sorted(by_id) and set(index["status"]) == {"ok", "failed"}
    assert not (store / "videos" / "empty.mp4").exists() and not (store / "meta" / "truncated.csv").exists()


def test_one_store_row_and_one_face_frame_per_source_frame(store_run, feat_data):
    _, store, _ = store_run
    for vid, src in (("WolfgangLanger_Pexels", "WolfgangLanger_Pexels.mp4"), ("no_face", "no_face.mp4"),
                     ("face_noface", "face_noface.mov")):
        source = decord.VideoReader(str(feat_data / src))
        with av.open(str(feat_data / src)) as c:  # rows follow the frames FFmpeg decodes
            decoded = sum(1 for _ in c.decode(video=0))
        meta = pd.read_csv(store / "meta" / f"{vid}.csv")
        faces = decord.VideoReader(str(store / "videos" / f"{vid}.mp4"))
        assert len(meta) == decoded == len(faces)
        assert faces[0].shape == (112, 112, 3)
        assert faces.get_avg_fps() == pytest.approx(source.get_avg_fps(), rel=1e-3)
        assert list(meta["frame_index"]) == list(range(decoded))
        assert len(source) >= decoded
        assert (np.diff(meta["time_s"]) > 0).all()
        assert meta.loc[meta["has_face"] == 0, ["x0", "lm0_x"]].isna().all().all()


def test_coverage_and_transition_on_real_faces(store_run):
    _, store, report = store_run
    wolfgang = pd.read_csv(store / "meta" / "WolfgangLanger_Pexels.csv")
    assert wolfgang["has_face"].mean() >= 0.95
    assert wolfgang["detected"].sum() < len(wolfgang) / 3  # tracked between sparse detections
    assert pd.read_csv(store / "meta" / "no_face.csv")["has_face"].sum() == 0
    cut = pd.read_csv(store / "meta" / "face_noface.csv")["has_face"].to_numpy()
    first_gone = int(np.flatnonzero(cut == 0)[0])
    assert abs(first_gone - 72) <= 3 and cut[first_gone:].sum() == 0  # found by eye: black at 72
    # a faceless frame is black in the store, a face frame is not
    faces = decord.VideoReader(str(store / "videos" / "face_noface.mp4"))
    assert faces[first_gone + 5].asnumpy().max() < 30 and faces[10].asnumpy().mean() > 40


def test_rerun_skips_finished_videos_and_redoes_unfinished(store_run):
    inputs, store, _ = store_run
    done = store / "videos" / "WolfgangLanger_Pexels.mp4"
    stamp = done.stat().st_mtime_ns
    (store / "meta" / "no_face.csv").unlink()  # as if killed before its metadata landed
    report = preprocess([inputs], store, PreprocessConfig(), workers=1, progress=False)
    by_id = {e["video_id"]: e for e in report["entries"]}
    assert by_id["WolfgangLanger_Pexels"]["reason"] == "already in store"
    assert by_id["WolfgangLanger_Pexels"]["coverage"] >= 0.95
    assert done.stat().st_mtime_ns == stamp
    assert by_id["no_face"]["reason"].endswith("no face found in any frame")
    assert (store / "meta" / "no_face.csv").exists()
    # a later run over one file keeps the others in the index and report
    report = preprocess([inputs / "no_face.mp4"], store, PreprocessConfig(), workers=1, progress=False)
    assert report["videos"] == 5 and len(pd.read_csv(store / "index.csv")) == 5


def test_find_videos_reads_folders_and_manifests(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "a/y.MOV", "a/notes.txt", "z.avi"):
        (tmp_path / name).write_bytes(b"")
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\nz.avi,1\n# comment\n")
    assert [p.name for p in find_videos([tmp_path / "a"])] == ["x.mp4", "y.MOV"]
    assert find_videos([manifest]) == [tmp_path / "z.avi"]


def test_cli_exit_code_reflects_failures(tmp_path, feat_data):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    cmd = [sys.executable, "-m", "fer_lightning.cli", "preprocess", "--input", str(bad),
           str(feat_data / "no_face.mp4"), "--output", str(tmp_path / "store"), "--workers", "1"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "1 ok, 1 failed" in proc.stdout and "bad.mp4" in proc.stdout
    proc = subprocess.run(cmd + ["--allow-failures"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0


def test_datamodule_reads_clips_from_the_store(tmp_path):
    """Synthetic video through the real detector; clips then read the store's aligned faces."""
    import cv2

    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.data.datasets import load_dataset
    from fer_lightning.data.synthetic import SynthConfig, generate_corpus

    corpus = tmp_path / "corpus"  # 256 px frames: faces of about 90 px, as in the default corpus
    generate_corpus(SynthConfig(videos=4, seconds=2.0, fps=25.0, seed=5, size=256, split=(1, 1, 1)),
                    corpus, workers=2, progress=False)
    store = tmp_path / "store"
    sources = sorted((corpus / "videos").glob("*.mp4"))
    report = preprocess(sources[:3], store, PreprocessConfig(), workers=2, progress=False)
    # MTCNN finds about half of these drawn faces; the clips must follow whatever it found
    assert report["ok"] == 3 and report["face_frames"] > 0.3 * report["frames"], report
    dm = AffectDataModule(root=str(corpus), face_store=str(store), clip_len=8, image_size=64,
                          batch_size=2, num_workers=0, augment=False)
    dm.setup()
    assert dm.skipped == ["synth_003"]  # not preprocessed: skipped and reported
    records = {r.video_id: r for r in load_dataset("synthetic", corpus)}
    checked = 0
    for ds in dm.datasets.values():
        for i in range(len(ds)):
            item = ds[i]
            rec = records[item["video_id"]]
            meta = pd.read_csv(store / "meta" / f"{rec.video_id}.csv")
            idx = item["frame_index"].numpy()
            inside = idx >= 0
            expected = np.zeros_like(inside)
            expected[inside] = meta["has_face"].to_numpy(bool)[idx[inside]] & np.isfinite(rec.values[idx[inside]]).all(axis=1)
            np.testing.assert_array_equal(item["mask"].numpy(), expected)
            faces = decord.VideoReader(str(store / "videos" / f"{rec.video_id}.mp4"))
            for k in np.flatnonzero(expected)[:2]:
                ref = cv2.resize(faces[int(idx[k])].asnumpy(), (64, 64), interpolation=cv2.INTER_AREA)
                got = item["frames"][k].permute(1, 2, 0).numpy()
                assert np.abs(got.astype(int) - ref.astype(int)).mean() < 2
                checked += 1
    assert checked >= 4
