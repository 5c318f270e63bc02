"""predict: real face video in, one CSV row per decoded frame out, no-face frames marked and
left empty; windows and causal streaming checked against whole-sequence references."""

from __future__ import annotations

import json

import av
import numpy as np
import pandas as pd
import pytest
import torch

from fer_lightning.cli.main import main
from fer_lightning.inference.settings import PredictConfig
from fer_lightning.inference.stream import CausalRunner, ModelStream, Timings, WindowedRunner
from fer_lightning.models.checkpoint import load_checkpoint_model
from fer_lightning.store.write import PreprocessConfig, preprocess


def decoded_frames(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_windows_give_each_frame_the_mean_of_the_windows_covering_it():
    # a window function whose output depends on the window's content: cumulative sum in time
    def run(clips):
        return np.cumsum(clips[..., :1, 0, 0].astype(np.float64), axis=1)

    n, length, stride = 21, 8, 4
    x = np.arange(n, dtype=np.float64)
    runner = WindowedRunner(run, length, stride, batch=2)
    got = {}
    for i in range(n):
        got.update(runner.push(i, np.full((1, 1, 1), x[i])))
    got.update(runner.finish())
    # hand-made reference: windows at 0, 4, 8, 12 and the last 8 frames (13..20)
    sums, counts = np.zeros(n), np.zeros(n)
    for s in (0, 4, 8, 12, 13):
        sums[s : s + length] += np.cumsum(x[s : s + length])
        counts[s : s + length] += 1
    assert sorted(got) == list(range(n))
    np.testing.assert_allclose([got[i][0] for i in range(n)], sums / counts)


def test_the_model_stream_equals_the_network_on_each_window(tiny_checkpoint):
    # the encoder runs once per frame and the LSTM over windows of its features: the result
    # must be what the whole network gives on each window, averaged
    model, _ = load_checkpoint_model(tiny_checkpoint)
    n, length = 21, 8
    crops = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8)
    stream = ModelStream(model, torch.device("cpu"), 1, PredictConfig(window=length, batch_size=3), 4, Timings(),
                         encode_batch=5)
    got = {}
    for i in range(n):
        got.update(stream.push(i, crops[i].numpy()))
    got.update(stream.finish())
    sums, counts = np.zeros((n, 2)), np.zeros((n, 1))
    with torch.no_grad():
        for s in (0, 4, 8, 12, 13):
            sums[s : s + length] += model.net(crops[s : s + length].permute(0, 3, 1, 2)[None])[0].numpy()
            counts[s : s + length] += 1
    np.testing.assert_allclose(np.stack([got[i] for i in range(n)]), sums / counts, atol=1e-5)


def test_windows_hold_a_bounded_number_of_frames_however_long_the_stream():
    length, stride, batch = 16, 8, 4
    runner = WindowedRunner(lambda c: c[..., :1, 0, 0].astype(np.float64), length, stride, batch)
    held, done = 0, 0
    for i in range(5000):
        done += len(runner.push(i, np.zeros((1, 1, 1))))
        held = max(held, runner.held + sum(len(w) for w in runner.queued) + len(runner.recent))
    done += len(runner.finish())
    assert done == 5000
    assert held <= 3 * length + 2 * batch * stride  # not growing with the stream


def test_a_video_shorter_than_a_window_is_one_window():
    runner = WindowedRunner(lambda c: np.cumsum(c[..., :1, 0, 0], axis=1), 16, 8, batch=4)
    got = {}
    for i in range(5):
        got.update(runner.push(i, np.full((1, 1, 1), 1.0)))
    got.update(runner.finish())
    assert [got[i][0] for i in range(5)] == [1, 2, 3, 4, 5]


def test_causal_streaming_equals_the_whole_sequence_and_never_looks_ahead(tiny_causal_checkpoint):
    model, _ = load_checkpoint_model(tiny_causal_checkpoint)
    net = model.net
    frames = torch.randint(0, 256, (1, 23, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        whole = net(frames)[0].numpy()

    def run(clips, state):
        with torch.no_grad():
            feats, state = net.forward_temporal(net.forward_features(torch.from_numpy(clips)), state)
            return net.forward_head(feats).numpy(), state

    def stream(x):
        runner, out = CausalRunner(run, chunk=5), {}
        for i in range(x.shape[1]):
            out.update(runner.push(i, x[0, i].numpy()))
        out.update(runner.finish())
        return np.stack([out[i] for i in range(x.shape[1])])

    np.testing.assert_allclose(stream(frames), whole, atol=1e-5)
    changed = frames.clone()
    changed[:, 15:] = 0  # another future: outputs before frame 15 must not move
    np.testing.assert_allclose(stream(changed)[:15], whole[:15], atol=1e-5)


def test_predict_marks_frames_without_a_face_and_matches_preprocessing(feat_data, tiny_checkpoint, tmp_path, capsys):
    video = feat_data / "face_noface.mov"
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(tiny_checkpoint), "--input", str(video), "--out", str(out),
                 "--render", "true", "--quiet", "true"]) == 0
    rows = pd.read_csv(out / "face_noface.csv")
    assert list(rows.columns) == ["frame_index", "time_s", "has_face", "track_id", "x0", "y0", "x1", "y1",
                                  "valence", "arousal"]
    n = decoded_frames(video)
    assert len(rows) == n and rows["frame_index"].tolist() == list(range(n))
    face, none = rows[rows.has_face == 1], rows[rows.has_face == 0]
    assert len(face) > 20 and len(none) > 20  # the clip holds both
    assert face[["valence", "arousal", "x0"]].notna().all().all()
    assert none[["valence", "arousal", "x0", "track_id"]].isna().all().all()  # marked, never guessed
    assert face[["valence", "arousal"]].abs().le(1.5).all().all()
    # the same faces as preprocessing finds (the same detector, tracker and smoothing)
    store = tmp_path / "store"
    preprocess([video], store, PreprocessConfig(), workers=1, progress=False)
    meta = pd.read_csv(store / "meta" / "face_noface.csv")
    np.testing.assert_array_equal(rows["has_face"].to_numpy(), meta["has_face"].to_numpy())
    np.testing.assert_allclose(face[["x0", "y0", "x1", "y1"]].to_numpy(),
                               meta.loc[meta.has_face == 1, ["x0", "y0", "x1", "y1"]].to_numpy(), atol=0.06)
    # the annotated video: every frame, the source's size
    with av.open(str(out / "face_noface.mp4")) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (960, 540)
    assert decoded_frames(out / "face_noface.mp4") == n
    assert (out / "face_noface.png").stat().st_size > 5000
    report = json.loads((out / "predict_report.json").read_text())
    entry = report["videos"][0]
    assert entry["status"] == "ok" and entry["frames"] == n and entry["causal"] is False
    assert set(entry["seconds"]) == {"decode", "face", "model", "other", "total"}


def test_predict_can_fill_the_faceless_frames_and_write_abaw_files(feat_data, tiny_checkpoint, tmp_path, capsys):
    # an ABAW submission needs a row for every frame: the frames after the face left are
    # predicted from the face frames (held at the video's end: the last face frame's values)
    video = feat_data / "face_noface.mov"
    out = tmp_path / "pred"
    with pytest.raises(SystemExit) as err:
        main(["predict", "--ckpt", str(tiny_checkpoint), "--input", str(video), "--out", str(out), "--abaw", "true"])
    assert err.value.code == 2 and "set --faceless interpolate" in capsys.readouterr().err
    assert main(["predict", "--ckpt", str(tiny_checkpoint), "--input", str(video), "--out", str(out),
                 "--faceless", "interpolate", "--abaw", "true", "--quiet", "true"]) == 0
    rows = pd.read_csv(out / "face_noface.csv")
    face = rows.has_face.to_numpy(bool)
    assert face.any() and not face.all() and rows[["valence", "arousal"]].notna().all().all()
    last = np.flatnonzero(face)[-1]
    after = rows.index > last
    assert after.any()
    np.testing.assert_allclose(rows.loc[after, ["valence", "arousal"]].to_numpy(),
                               np.tile(rows.loc[last, ["valence", "arousal"]].to_numpy(float), (after.sum(), 1)))
    abaw = (out / "abaw" / "face_noface.txt").read_text().splitlines()
    assert abaw[0] == "valence,arousal" and len(abaw) == len(rows) + 1
    np.testing.assert_allclose(np.loadtxt(abaw[1:], delimiter=","), np.clip(rows[["valence", "arousal"]], -1, 1),
                               atol=1e-5)
    # a video without any face: every row still valued (the model's outputs on its black
    # frames, as evaluate and submit predict it), never silent zeros, and the report says so
    assert main(["predict", "--ckpt", str(tiny_checkpoint), "--input", str(feat_data / "no_face.mp4"), "--out",
                 str(out), "--faceless", "interpolate", "--abaw", "true", "--quiet", "true"]) == 0
    values = np.loadtxt((out / "abaw" / "no_face.txt").read_text().splitlines()[1:], delimiter=",")
    assert np.isfinite(values).all() and (values != 0).all()
    (entry,) = [e for e in json.loads((out / "predict_report.json").read_text())["videos"] if e["video_id"] == "no_face"]
    assert "the ABAW file holds the model's outputs on black frames" in entry["notes"][0]


def test_a_folder_goes_on_past_bad_videos_and_lists_them(feat_data, tiny_causal_checkpoint, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a_no_face.mp4").write_bytes((feat_data / "no_face.mp4").read_bytes())
    (folder / "b_corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (folder / "c_empty.mp4").write_bytes(b"")
    (folder / "sub").mkdir()  # the same file name in a subfolder: its own output, not an overwrite
    (folder / "sub" / "a_no_face.mp4").write_bytes((feat_data / "no_face.mp4").read_bytes())
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(tiny_causal_checkpoint), "--input", str(folder), "--out", str(out),
                 "--quiet", "true"]) == 1
    printed = capsys.readouterr().out
    assert "2 of 4 videos predicted" in printed and "2 failed" in printed
    assert "b_corrupt.mp4" in printed and "c_empty.mp4: video file is empty" in printed
    assert sorted(p.name for p in out.glob("*.csv")) == ["videos__a_no_face.csv", "videos__sub__a_no_face.csv"]
    rows = pd.read_csv(out / "videos__a_no_face.csv")
    assert len(rows) == decoded_frames(feat_data / "no_face.mp4")
    assert (rows.has_face == 0).all() and rows[["valence", "arousal"]].isna().all().all()
    report = json.loads((out / "predict_report.json").read_text())
    ok = report["videos"][0]
    assert ok["causal"] is True and "no face found" in ok["notes"][0]
    assert sorted(report["failed"]) == [str(folder / "b_corrupt.mp4"), str(folder / "c_empty.mp4")]


@pytest.mark.parametrize("bad", ["missing", "not_a_checkpoint"])
def test_a_bad_checkpoint_is_refused_with_a_clear_message(bad, feat_data, tmp_path, capsys):
    ckpt = tmp_path / "model.ckpt"
    if bad == "not_a_checkpoint":
        ckpt.write_text("hello")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--ckpt", str(ckpt), "--input", str(feat_data / "no_face.mp4"), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert ("checkpoint not found" if bad == "missing" else "not a readable PyTorch checkpoint") in err


def test_a_face_video_gets_values_on_every_frame_and_a_pretraining_model_gives_probabilities(
        feat_data, tiny_corpus, tmp_path):
    from conftest import train_tiny_checkpoint

    ckpt = train_tiny_checkpoint(tiny_corpus, tmp_path / "pretrain.ckpt", task="pretrain")
    video = feat_data / "single_face.mp4"
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(ckpt), "--input", str(video), "--out", str(out), "--quiet", "true"]) == 0
    rows = pd.read_csv(out / "single_face.csv")
    model, _ = load_checkpoint_model(ckpt)
    probs = [f"p_{c}" for c in model.class_names]
    assert list(rows.columns[8:]) == probs
    assert len(rows) == decoded_frames(video) and (rows.has_face == 1).all()  # one face, always in view
    np.testing.assert_allclose(rows[probs].sum(axis=1), 1.0, atol=1e-4)
    assert rows[probs].ge(0).all().all()


def test_predict_never_replaces_a_file_it_did_not_write_and_keeps_clashing_inputs_apart(
        feat_data, tiny_causal_checkpoint, tmp_path, capsys):
    for sub in ("a", "b"):  # two different videos, both named x.mp4, given as files
        (tmp_path / sub).mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes((feat_data / "no_face.mp4").read_bytes())
    (tmp_path / "b" / "x.mp4").write_bytes((feat_data / "noface_face.mov").read_bytes())
    out = tmp_path / "pred"
    args = ["predict", "--ckpt", str(tiny_causal_checkpoint), "--input", str(tmp_path / "a" / "x.mp4"),
            str(tmp_path / "b" / "x.mp4"), "--out", str(out), "--quiet", "true"]
    assert main(args) == 0
    csvs = sorted(out.glob("*.csv"))
    assert len(csvs) == 2 and "2 of 2 videos predicted" in capsys.readouterr().out
    assert {len(pd.read_csv(c)) for c in csvs} == {decoded_frames(feat_data / "no_face.mp4"),
                                                    decoded_frames(feat_data / "noface_face.mov")}
    assert main(args) == 0  # a rerun replaces what predict itself wrote
    # a file of the user's own under a name predict would write: refused before any work, kept
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "x.csv").write_text("my own numbers\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--ckpt", str(tiny_causal_checkpoint), "--input", str(tmp_path / "a" / "x.mp4"),
              "--out", str(mine), "--quiet", "true"])
    assert exit_info.value.code == 2
    assert "already holds 1 files that predict would replace and did not write" in capsys.readouterr().err
    assert (mine / "x.csv").read_text() == "my own numbers\n" and not (mine / "x.png").exists()
