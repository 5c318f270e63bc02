"""fer-lightning preprocess on real face videos: store layout, coverage, bad files, resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import decord
import numpy as np
import pandas as pd
import pytest
import torch
from videos import write_video

from fer_lightning.media.discover import find_videos
from fer_lightning.store.settings import PreprocessConfig
from fer_lightning.store.write import preprocess


@pytest.fixture(scope="module")
def store_run(feat_data, tmp_path_factory):
    inputs = tmp_path_factory.mktemp("inputs")
    for name in ("WolfgangLanger_Pexels.mp4", "no_face.mp4", "face_noface.mov", "noface_face.mov"):
        shutil.copy(feat_data / name, inputs / name)
    (inputs / "truncated.mp4").write_bytes((feat_data / "single_face.mp4").read_bytes()[:3000])
    (inputs / "empty.mp4").write_bytes(b"")
    store = tmp_path_factory.mktemp("store")
    report = preprocess([inputs], store, PreprocessConfig(), workers=2, progress=False)
    return inputs, store, report


def test_report_lists_every_video_and_why_bad_ones_failed(store_run):
    _, store, report = store_run
    assert (report["videos"], report["ok"], report["failed"]) == (6, 4, 2)
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
    appear = pd.read_csv(store / "meta" / "noface_face.csv")["has_face"].to_numpy()
    first_face = int(np.flatnonzero(appear)[0])
    assert abs(first_face - 96) <= 3 and appear[first_face:].mean() > 0.95  # found by eye: face from 96
    # a faceless frame is black in the store, a face frame is not
    faces = decord.VideoReader(str(store / "videos" / "face_noface.mp4"))
    assert faces[first_gone + 5].asnumpy().max() < 30 and faces[10].asnumpy().mean() > 40


def test_aligned_crops_are_centred_on_the_face(store_run):
    """The detector, run again on the store's 112 px crops, finds one face in the middle."""
    from fer_lightning.faces.detect import create_detector

    _, store, _ = store_run
    faces = decord.VideoReader(str(store / "videos" / "WolfgangLanger_Pexels.mp4"))
    detector = create_detector("mtcnn", min_face_size=20)
    centres, widths = [], []
    for i in range(0, len(faces), 20):
        found = detector.detect(faces[i].asnumpy())
        assert len(found) == 1, i
        x0, y0, x1, y1 = found[0].box
        centres.append(((x0 + x1) / 2, (y0 + y1) / 2))
        widths.append(x1 - x0)
    centres = np.array(centres)
    assert np.abs(centres[:, 0] - 56).max() < 8 and np.abs(centres[:, 1] - 60).max() < 12, centres.round(1)
    assert 45 < np.median(widths) < 100  # the face fills the crop, with the margin around it


def test_rerun_skips_finished_videos_and_redoes_unfinished(store_run):
    inputs, store, _ = store_run
    done = store / "videos" / "WolfgangLanger_Pexels.mp4"
    stamp = done.stat().st_mtime_ns
    (store / "meta" / "no_face.csv").unlink()  # as if killed before its metadata landed
    report = preprocess([inputs], store, PreprocessConfig(), workers=1, progress=False)
    by_id = {e["video_id"]: e for e in report["entries"]}
    assert "WolfgangLanger_Pexels" in report["already_in_store"] and "no_face" not in report["already_in_store"]
    assert by_id["WolfgangLanger_Pexels"]["coverage"] >= 0.95
    assert done.stat().st_mtime_ns == stamp
    assert by_id["no_face"]["reason"].endswith("no face found in any frame")
    assert (store / "meta" / "no_face.csv").exists()
    # a later run over one file keeps the others in the index and report
    report = preprocess([inputs / "no_face.mp4"], store, PreprocessConfig(), workers=1, progress=False)
    assert report["videos"] == 6 and len(pd.read_csv(store / "index.csv")) == 6


def test_find_videos_reads_folders_and_manifests(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "a/y.MOV", "a/notes.txt", "z.avi"):
        (tmp_path / name).write_bytes(b"")
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\nz.avi,1\n# comment\n")
    assert [p.name for p in find_videos([tmp_path / "a"])] == ["x.mp4", "y.MOV"]
    assert find_videos([manifest]) == [tmp_path / "z.avi"]


@pytest.mark.cli
def test_cli_exit_code_reflects_failures(tmp_path, feat_data):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    cmd = [sys.executable, "-m", "fer_lightning.cli", "preprocess", "--input", str(bad),
           str(feat_data / "no_face.mp4"), "--output", str(tmp_path / "store"), "--workers", "1"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "1 ok, 1 failed" in proc.stdout and "bad.mp4" in proc.stdout
    proc = subprocess.run(cmd + ["--allow_failures", "true"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    """Four synthetic videos; the first three through the real detector into a face store."""
    from fer_lightning.corpora.synthetic.generator import SynthConfig, generate_corpus

    tmp = tmp_path_factory.mktemp("synthetic_store")
    corpus = tmp / "corpus"  # 256 px frames: faces of about 90 px, as in the default corpus
    generate_corpus(SynthConfig(videos=4, seconds=2.0, fps=25.0, seed=5, size=256, split=(1, 1, 1)),
                    corpus, workers=2, progress=False)
    store = tmp / "store"
    sources = sorted((corpus / "videos").glob("*.mp4"))
    report = preprocess(sources[:3], store, PreprocessConfig(), workers=2, progress=False)
    return corpus, store, report


def _all_items(dm) -> list[dict]:
    return [ds[i] for ds in dm.datasets.values() for i in range(len(ds))]


def test_datamodule_reads_clips_from_the_store(synthetic_store):
    """Synthetic video through the real detector; clips then read the store's aligned faces."""
    import cv2

    from fer_lightning.corpora.adapters import load_dataset
    from fer_lightning.data.datamodule import AffectDataModule

    corpus, store, report = synthetic_store
    # MTCNN finds about half of these drawn faces with OpenCV 5.0 (80 of 150 frames) and a
    # quarter with 5.1 (40): they sit at the edge of what it detects. The clips must follow
    # whatever it found
    assert report["ok"] == 3 and report["face_frames"] > 0.1 * report["frames"], report
    dm = AffectDataModule(root=str(corpus), face_store=str(store), clip_len=8, image_size=64,
                          batch_size=2, num_workers=0, augment=False)
    dm.setup()
    assert dm.skipped == ["synth_003"]  # not preprocessed: skipped and reported
    records = {r.video_id: r for r in load_dataset("synthetic", corpus)}
    checked = 0
    for item in _all_items(dm):
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


def test_the_store_index_holds_every_frame_of_every_face_video(synthetic_store):
    corpus, store, _ = synthetic_store
    frames = pd.read_parquet(store / "frames.parquet")
    index = pd.read_csv(store / "index.csv")
    assert list(frames["video_id"].astype(str).unique()) == list(index["video_id"])
    for vid, rows in frames.groupby("video_id", observed=True):
        meta = pd.read_csv(store / "meta" / f"{vid}.csv")  # what preprocess wrote per video
        np.testing.assert_array_equal(rows["frame_index"], meta["frame_index"])
        np.testing.assert_array_equal(rows["has_face"], meta["has_face"].astype(bool))
        np.testing.assert_allclose(rows["time_s"], meta["time_s"])
    assert (index["size"] == 112).all() and (index["source_rel"] == index["video_id"] + ".mp4").all()


@pytest.mark.ddp
def test_training_needs_only_the_store_and_the_labels_on_every_rank(synthetic_store, tmp_path):
    """The raw videos and the store's per-video metadata removed, as on a compute node that got
    the store's videos, its index and the labels: the same clips, and a fit on two gloo ranks
    that reads the index and writes nothing into the store."""
    from test_ddp import ROOT, TINY, cli

    from fer_lightning.data.datamodule import AffectDataModule

    corpus, store = (Path(shutil.copytree(p, tmp_path / p.name)) for p in synthetic_store[:2])
    settings = dict(face_store=str(store), clip_len=8, image_size=64, batch_size=2, num_workers=0, augment=False)
    before = AffectDataModule(root=str(corpus), **settings)
    before.setup()
    shutil.rmtree(corpus / "videos")
    shutil.rmtree(store / "meta")
    after = AffectDataModule(root=str(corpus), **settings)
    after.setup()
    assert after.skipped == before.skipped == ["synth_003"]
    for a, b in zip(_all_items(before), _all_items(after), strict=True):
        assert a["video_id"] == b["video_id"]
        for key in ("frames", "mask", "targets", "frame_index"):
            assert torch.equal(a[key], b[key]), key

    listing = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    cli(tmp_path / "ddp", "fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"), "--config",
        str(ROOT / "experiments/presets/cpu.yaml"), "--config", str(ROOT / "experiments/presets/ddp.yaml"),
        "--trainer.devices=2", f"--data.root={corpus}", f"--data.face_store={store}", *TINY,
        "--trainer.max_epochs=1", "--evaluate_after_fit=false")
    assert list((tmp_path / "ddp" / "runs").rglob("last.ckpt"))
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == listing


@pytest.fixture(scope="module")
def multi_face_video(feat_data, tmp_path_factory):
    """multi_face.jpg (five people) as 2.4 s of video: all five for 30 frames, then 30 frames
    where only the person at the top left (not the largest face) remains visible."""
    import cv2

    from fer_lightning.faces.detect import create_detector

    img = cv2.cvtColor(cv2.imread(str(feat_data / "multi_face.jpg")), cv2.COLOR_BGR2RGB)[:666]
    faces = sorted(create_detector("mtcnn").detect(img), key=lambda d: d.box[0])
    assert len(faces) == 5
    keep = faces[0]  # x0 ~ 219: the leftmost, smaller than three of the others
    assert sorted(d.area for d in faces).index(keep.area) < 3
    alone = np.zeros_like(img)
    x0, y0, x1, y1 = keep.box.astype(int)
    alone[max(0, y0 - 40): y1 + 40, max(0, x0 - 40): x1 + 40] = img[max(0, y0 - 40): y1 + 40, max(0, x0 - 40): x1 + 40]
    path = tmp_path_factory.mktemp("multi") / "multi_face.mp4"
    write_video(path, [img] * 30 + [alone] * 30)
    return path, faces, keep


def box_centre(meta):
    rows = meta[meta["has_face"] == 1]
    return np.array([(rows["x0"] + rows["x1"]).median() / 2, (rows["y0"] + rows["y1"]).median() / 2])


def test_main_subject_is_the_most_persistent_face(multi_face_video, tmp_path):
    path, faces, keep = multi_face_video
    report = preprocess([path], tmp_path / "store", PreprocessConfig(), workers=1, progress=False)
    assert [o["video_id"] for o in report["entries"][0]["outputs"]] == ["multi_face"]
    meta = pd.read_csv(tmp_path / "store" / "meta" / "multi_face.csv")
    assert len(meta) == 60 and meta["has_face"].all()
    centre = keep.box.reshape(2, 2).mean(0)
    assert np.abs(box_centre(meta) - centre).max() < 10
    assert meta["track_id"].nunique() == 1


def test_faces_all_emits_one_video_per_face_left_to_right(multi_face_video, tmp_path):
    path, faces, _ = multi_face_video
    store = tmp_path / "store"
    cfg = PreprocessConfig(faces="all", min_track_seconds=1.0)
    report = preprocess([path], store, cfg, workers=1, progress=False)
    outs = report["entries"][0]["outputs"]
    assert [o["video_id"] for o in outs] == [f"multi_face_face{i}" for i in range(1, 6)]
    for out, face in zip(outs, faces, strict=True):  # ordered left to right, each on its own person
        meta = pd.read_csv(store / "meta" / f"{out['video_id']}.csv")
        assert len(meta) == 60 and len(decord.VideoReader(str(store / "videos" / f"{out['video_id']}.mp4"))) == 60
        assert np.abs(box_centre(meta) - face.box.reshape(2, 2).mean(0)).max() < 10
    assert [o["face_frames"] for o in outs][1:] == [30] * 4 and outs[0]["face_frames"] == 60
    assert set(pd.read_csv(store / "index.csv")["video_id"]) == {o["video_id"] for o in outs}
    # two faces: Aff-Wild2's naming, <video>_left and <video>_right
    img = decord.VideoReader(str(path))[0].asnumpy()
    pair = np.ascontiguousarray(img[40:400, 200:430])
    write_video(tmp_path / "pair.mp4", [pair] * 40)
    report = preprocess([tmp_path / "pair.mp4"], tmp_path / "pair_store", cfg, workers=1, progress=False)
    assert [o["video_id"] for o in report["entries"][0]["outputs"]] == ["pair_left", "pair_right"]
    left = pd.read_csv(tmp_path / "pair_store" / "meta" / "pair_left.csv")
    right = pd.read_csv(tmp_path / "pair_store" / "meta" / "pair_right.csv")
    assert box_centre(left)[0] < box_centre(right)[0]


def test_two_person_videos_get_left_and_right_and_no_other_video_is_renamed(multi_face_video, tmp_path):
    # Aff-Wild2: the annotation folder says which videos hold two annotated persons; a video
    # where other faces show (five people for 1.2 s here) keeps its own id and main subject
    path, _, keep = multi_face_video
    img = decord.VideoReader(str(path))[0].asnumpy()
    write_video(tmp_path / "videos" / "pair.mp4", [np.ascontiguousarray(img[40:400, 200:430])] * 40)
    write_video(tmp_path / "videos" / "multi_face.mp4", decord.VideoReader(str(path)).get_batch(range(60)).asnumpy())
    ann = tmp_path / "VA_Estimation_Challenge" / "Train_Set"
    ann.mkdir(parents=True)
    for name in ("pair_left", "pair_right", "multi_face"):
        (ann / f"{name}.txt").write_text("valence,arousal\n0,0\n")
    cfg = PreprocessConfig(two_person=str(tmp_path / "VA_Estimation_Challenge"))
    report = preprocess([tmp_path / "videos"], tmp_path / "store", cfg, workers=1, progress=False)
    outputs = {e["video_id"]: [o["video_id"] for o in e["outputs"]] for e in report["entries"]}
    assert outputs == {"pair": ["pair_left", "pair_right"], "multi_face": ["multi_face"]}
    left, right = (pd.read_csv(tmp_path / "store" / "meta" / f"pair_{side}.csv") for side in ("left", "right"))
    assert box_centre(left)[0] < box_centre(right)[0] and left["has_face"].all() and right["has_face"].all()
    main = pd.read_csv(tmp_path / "store" / "meta" / "multi_face.csv")
    assert np.abs(box_centre(main) - keep.box.reshape(2, 2).mean(0)).max() < 10
    again = preprocess([tmp_path / "videos"], tmp_path / "store", cfg, workers=1, progress=False)
    assert again["already_in_store"] == ["multi_face", "pair"]  # a rerun resumes: nothing is redone
    with pytest.raises(ValueError, match="--two_person: no such folder"):
        preprocess([tmp_path / "videos"], tmp_path / "store2", PreprocessConfig(two_person=str(tmp_path / "none")),
                   workers=1, progress=False)


def test_variable_frame_rate_keeps_true_frame_times(feat_data, tmp_path):
    frames = decord.VideoReader(str(feat_data / "WolfgangLanger_Pexels.mp4")).get_batch(list(range(0, 120, 2))).asnumpy()
    pts = np.cumsum([0] + [40 if i % 3 else 120 for i in range(1, 60)]).tolist()
    write_video(tmp_path / "vfr.mp4", list(frames), pts_ms=pts)
    report = preprocess([tmp_path / "vfr.mp4"], tmp_path / "store", PreprocessConfig(), workers=1, progress=False)
    entry = report["entries"][0]
    assert entry["status"] == "ok" and "variable frame rate" in entry["reason"], entry
    meta = pd.read_csv(tmp_path / "store" / "meta" / "vfr.csv")
    np.testing.assert_allclose(meta["time_s"], np.array(pts) / 1000, atol=1e-3)
    assert meta["has_face"].mean() > 0.95


def test_bad_files_get_clear_reasons_and_leave_the_store_intact(feat_data, tmp_path):
    import shutil

    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(feat_data / "single_face.mp4", good / "single_face.mp4")
    store = tmp_path / "store"
    preprocess([good], store, PreprocessConfig(), workers=1, progress=False)
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file() and p.parent.name in ("videos", "meta", "done")}

    bad = tmp_path / "bad"
    bad.mkdir()
    with av.open(str(bad / "zero_frames.mp4"), "w") as c:  # a container, header written, no frame
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = 128
        c.start_encoding()
    (bad / "notes.mp4").write_text("this is not a video\n" * 20)
    shutil.copy(feat_data / "single_face.jpg", bad / "photo.avi")  # an image under a video name
    frames = [np.full((64, 64, 3), i * 20, np.uint8) for i in range(5)]
    with av.open(str(bad / "mpeg4.avi"), "w") as c:  # then its codec tag patched to one nobody knows
        s = c.add_stream("mpeg4", rate=25)
        s.width = s.height = 64
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    (bad / "unknown_codec.avi").write_bytes((bad / "mpeg4.avi").read_bytes().replace(b"FMP4", b"QQ9Z"))
    (bad / "mpeg4.avi").unlink()

    report = preprocess([bad, good], store, PreprocessConfig(), workers=2, progress=False)
    by_id = {e["video_id"]: e for e in report["entries"]}
    assert sorted(report["failed_this_run"]) == ["notes", "photo", "unknown_codec", "zero_frames"]
    assert by_id["zero_frames"]["reason"].startswith("no video stream")
    assert by_id["notes"]["reason"].startswith("not a video file")
    assert by_id["unknown_codec"]["reason"].startswith("unsupported video codec")
    for vid in ("zero_frames", "notes", "photo", "unknown_codec"):
        assert vid in by_id[vid]["reason"]  # the file is named
    assert report["already_in_store"] == ["single_face"]
    after = {p: p.read_bytes() for p in before}
    assert after == before  # nothing already written was touched
    assert not list((store / "tmp").iterdir())


@pytest.mark.cli
def test_killed_run_resumes_to_the_same_store(feat_data, tmp_path):
    """SIGKILL in the middle of a video, rerun: the store equals an uninterrupted run's."""
    import signal
    import time

    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("WolfgangLanger_Pexels.mp4", "face_noface.mov", "single_face.mp4"):
        shutil.copy(feat_data / name, inputs / name)
    env = dict(os.environ, HF_HUB_OFFLINE="1")

    def run(store, **kw):
        cmd = [sys.executable, "-m", "fer_lightning.cli", "preprocess", "--input", str(inputs), "--output",
               str(store), "--workers", "1"]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, **kw)

    assert run(tmp_path / "whole").wait(timeout=300) == 0
    killed = tmp_path / "killed"
    proc = run(killed)
    deadline = time.time() + 300
    # sorted inputs: WolfgangLanger_Pexels first, then face_noface; kill while face_noface is half done
    while time.time() < deadline and not list((killed / "tmp").glob("face_noface.t*.mp4")):
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (killed / "done" / "WolfgangLanger_Pexels.json").exists()
    assert not (killed / "done" / "face_noface.json").exists()
    assert run(killed).wait(timeout=300) == 0

    def files(store):
        return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*")
                if p.is_file() and p.name != "report.json"}

    whole, resumed = files(tmp_path / "whole"), files(killed)
    assert sorted(whole) == sorted(resumed)
    for name in whole:  # face videos too: libx264 on one thread, no look-ahead, is reproducible
        assert whole[name] == resumed[name], name


def test_a_per_frame_manifest_lists_each_video_once_in_linear_time(tmp_path):
    # a pretraining manifest has a row per frame, each naming its video: 300,000 rows, 3 videos
    rows = ["video,frame,label"] + [f"clips/v{i % 3}.mp4,{i // 3},happy" for i in range(300_000)]
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n".join(rows) + "\n")
    assert find_videos([manifest]) == [tmp_path / "clips" / f"v{i}.mp4" for i in range(3)]


def test_video_ids_are_file_names_until_two_share_one_then_paths():
    from fer_lightning.store.ids import video_ids

    assert video_ids(["a/x.mp4", "a/y.mp4", "z.avi"]) == ["x", "y", "z"]
    assert video_ids(["b1/clip001.mp4", "b2/clip001.mp4", "b2/other.mp4"]) == ["b1__clip001", "b2__clip001", "other"]
    assert video_ids(["a/x.mp4", "a/x.avi"]) == ["a__x_mp4", "a__x_avi"]  # the path alone still clashes
    assert video_ids(["a/x.mp4", "a/x.mp4"]) == ["x", "x"]  # one video listed twice: one id
    # ids already given stay, and a newcomer that shares a name does not take one of them
    assert video_ids(["old/clip.mp4", "new/clip.mp4"], ["clip", None]) == ["clip", "new__clip"]
    with pytest.raises(ValueError, match="would name both"):
        video_ids(["q.mp4", "r.mp4", "a/b.mp4", "c/b.mp4"], ["a__b", "a__b_mp4", None, None])


def test_videos_that_share_a_file_name_get_path_ids_kept_across_runs(tmp_path):
    frames = [np.zeros((32, 32, 3), np.uint8)] * 3
    for sub in ("a", "b"):
        write_video(tmp_path / "two" / sub / "clip001.mp4", frames)
    write_video(tmp_path / "two" / "b" / "solo.mp4", frames)
    store = tmp_path / "store"
    preprocess([tmp_path / "two"], store, PreprocessConfig(), workers=1, progress=False)
    index = pd.read_csv(store / "index.csv").set_index("source_rel")
    assert index.loc["two/a/clip001.mp4", "video_id"] == "two__a__clip001"
    assert index.loc["two/b/clip001.mp4", "video_id"] == "two__b__clip001"
    assert index.loc["two/b/solo.mp4", "video_id"] == "solo"
    assert sorted(p.name for p in (store / "videos").iterdir()) == ["solo.mp4", "two__a__clip001.mp4",
                                                                    "two__b__clip001.mp4"]
    # a later run that brings a third clip001 renames none of the stored videos, and a file named
    # directly keeps the id its folder run gave it
    write_video(tmp_path / "more" / "clip001.mp4", frames)
    preprocess([tmp_path / "more", tmp_path / "two" / "b" / "solo.mp4"], store, PreprocessConfig(), workers=1,
               progress=False)
    index = pd.read_csv(store / "index.csv").set_index("source_rel")
    assert index.loc["more/clip001.mp4", "video_id"] == "more__clip001"
    assert index.loc["two/a/clip001.mp4", "video_id"] == "two__a__clip001" and len(index) == 4
    assert sorted(index["video_id"]) == sorted(p.stem for p in (store / "videos").iterdir())
    # the same path under two input roots cannot get two ids: refused before any work, both named
    write_video(tmp_path / "x" / "two" / "b" / "solo.mp4", frames)
    with pytest.raises(ValueError, match=r"two/b/solo.mp4: .*two/b/solo.mp4, .*x/two/b/solo.mp4"):
        preprocess([tmp_path / "two", tmp_path / "x" / "two"], tmp_path / "store2", PreprocessConfig(), workers=1,
                   progress=False)


def test_a_different_video_under_a_known_path_is_never_taken_as_done(tmp_path):
    from fer_lightning.errors import UserInputError

    dark, light = [np.full((32, 32, 3), 20, np.uint8)] * 4, [np.full((32, 32, 3), 200, np.uint8)] * 6
    write_video(tmp_path / "A" / "videos" / "x.mp4", dark)
    write_video(tmp_path / "B" / "videos" / "x.mp4", light)  # corpus B: the same relative path, another video
    store = tmp_path / "store"
    preprocess([tmp_path / "A" / "videos"], store, PreprocessConfig(), workers=1, progress=False)
    before = {p.name: p.read_bytes() for p in (store / "videos").iterdir()}
    with pytest.raises(UserInputError, match=r"B/videos/x.mp4 is not the video stored as x \(from .*A/videos/x.mp4\)"):
        preprocess([tmp_path / "B" / "videos"], store, PreprocessConfig(), workers=1, progress=False)
    assert {p.name: p.read_bytes() for p in (store / "videos").iterdir()} == before  # A's faces kept
    assert pd.read_csv(store / "index.csv")["source"].str.contains("/A/videos/").all()
    # the same file moved (a compute node's own root) is the same video: done, nothing redone
    shutil.copytree(tmp_path / "A", tmp_path / "moved" / "A")
    report = preprocess([tmp_path / "moved" / "A" / "videos"], store, PreprocessConfig(), workers=1, progress=False)
    assert report["already_in_store"] == ["x"]
    # a source changed in place (re-encoded, extended) is redone, not taken as done
    write_video(tmp_path / "A" / "videos" / "x.mp4", light)
    report = preprocess([tmp_path / "A" / "videos"], store, PreprocessConfig(), workers=1, progress=False)
    assert report["already_in_store"] == [] and report["entries"][0]["num_frames"] == 6


def test_one_store_takes_one_writer_at_a_time(tmp_path):
    from fer_lightning.store.lock import StoreBusyError

    write_video(tmp_path / "in" / "x.mp4", [np.zeros((32, 32, 3), np.uint8)] * 3)
    store = tmp_path / "store"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from fer_lightning.store.lock import "
                               "store_writer\nwith store_writer(sys.argv[1]):\n print('held', flush=True)\n "
                               "time.sleep(600)", str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusyError, match=rf"is being written by pid {holder.pid} on .*; wait for that"):
            preprocess([tmp_path / "in"], store, PreprocessConfig(), workers=1, progress=False)
        assert not (store / "index.csv").exists()
    finally:
        holder.kill()  # killed, not released: the kernel drops the lock, nothing stale is left
        holder.wait()
    report = preprocess([tmp_path / "in"], store, PreprocessConfig(), workers=1, progress=False)
    assert report["ok"] == 1


@pytest.mark.parametrize("degrees", [90, 270])
def test_portrait_phone_video_is_read_upright_everywhere(feat_data, tiny_checkpoint, tmp_path, degrees):
    """Pixels stored turned, with a display matrix: every reader shows the frames as a player
    does, so faces are found, aligned and cropped as in the same video stored upright."""
    from videos import write_phone_video

    from fer_lightning.inference.predict import predict
    from fer_lightning.media.video import ReaderCache, display_rotation, iter_frames, open_video

    frames = []
    for frame in iter_frames(feat_data / "WolfgangLanger_Pexels.mp4"):
        frames.append(frame)
        if len(frames) == 24:
            break
    write_video(tmp_path / "upright" / "clip.mp4", frames)
    write_phone_video(tmp_path / "phone" / "clip.mp4", frames, degrees)
    phone, straight = tmp_path / "phone" / "clip.mp4", tmp_path / "upright" / "clip.mp4"
    assert display_rotation(phone) == (360 - degrees) % 360 and display_rotation(straight) == 0
    # the one-pass reader (preprocess, predict, render) and the random-access one (clips, frame sizes)
    first = next(iter_frames(phone)).astype(float)
    assert first.shape == frames[0].shape and np.corrcoef(first.ravel(), frames[0].astype(float).ravel())[0, 1] > 0.95
    assert open_video(phone)[0].shape == frames[0].shape
    batch = ReaderCache().read(phone, np.array([0, 5]))
    assert batch.shape == (2, *frames[0].shape)
    assert np.corrcoef(batch[1].astype(float).ravel(), frames[5].astype(float).ravel())[0, 1] > 0.95
    # preprocess: the same face crops as from the upright video
    for name, src in (("phone", phone.parent), ("upright", straight.parent)):
        preprocess([src], tmp_path / f"store_{name}", PreprocessConfig(), workers=1, progress=False)
    crops = {name: decord.VideoReader(str(tmp_path / f"store_{name}" / "videos" / "clip.mp4")).get_batch(
        list(range(24))).asnumpy().astype(float) for name in ("phone", "upright")}
    assert np.corrcoef(crops["phone"].ravel(), crops["upright"].ravel())[0, 1] > 0.9
    # predict: the same face boxes, in the upright frame's pixels
    boxes = {}
    for name, src in (("phone", phone), ("upright", straight)):
        predict(tiny_checkpoint, [src], tmp_path / f"pred_{name}", progress=False)
        boxes[name] = pd.read_csv(tmp_path / f"pred_{name}" / "clip.csv")[["x0", "y0", "x1", "y1"]].to_numpy()
    assert np.nanmax(np.abs(boxes["phone"] - boxes["upright"])) < 8


def test_a_turned_video_with_a_variable_frame_rate_reads_frame_i_as_the_ith_frame_shown(tmp_path):
    from videos import grey_ramp, write_phone_video

    from fer_lightning.media.video import ReaderCache, iter_frames

    pts = [0, 40, 80, 200, 240, 400, 440, 480, 520, 700]  # dropped frames, as a phone's recording has
    path = write_phone_video(tmp_path / "vfr.mp4", [f[:, :48] for f in grey_ramp(10)], 90, pts_ms=pts)
    shown = [f.mean() for f in iter_frames(path)]
    got = ReaderCache().read(path, np.array([9, 3, 4, 0]))
    assert len(shown) == 10 and got.shape == (4, 64, 48, 3)
    np.testing.assert_allclose(got.reshape(4, -1).mean(1), [shown[9], shown[3], shown[4], shown[0]], atol=2)
    np.testing.assert_allclose(shown, 2 * np.arange(10), atol=2)  # frame i is grey level 2i


def test_content_fingerprints_tell_files_and_image_folders_apart(tmp_path):
    from fer_lightning.media.fingerprint import file_fingerprint

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 300_000)
    b.write_bytes(b"x" * 150_000 + b"y" + b"x" * 149_999)  # same size, one byte in the middle differs
    assert file_fingerprint(a) != file_fingerprint(b) and file_fingerprint(a) == file_fingerprint(a)
    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(3):
        (clip / f"{i:05d}.png").write_bytes(bytes([i]) * 100)
    before = file_fingerprint(clip)
    (clip / "00002.png").write_bytes(bytes([9]) * 100)  # the last image replaced, same size
    assert file_fingerprint(clip) != before
