"""The synthetic corpus: real decodable H.264, labels in corpus layouts, expression follows law."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import av
import decord
import numpy as np
import pandas as pd
import pytest

from fer_lightning.corpora.synthetic.generator import (
    EMOTIONS,
    INVALID_VA,
    Identity,
    SynthConfig,
    draw_face,
    emotion_from_va,
    generate_corpus,
)


def test_layout_and_decodable_video(tiny_corpus):
    index = pd.read_csv(tiny_corpus / "index.csv")
    assert len(index) == 6 and set(index["split"]) == {"train", "val", "test"}
    assert index["subject"].is_unique  # one subject per video: a split by video is by subject
    for row in index.itertuples():
        vr = decord.VideoReader(str(tiny_corpus / row.path))
        assert len(vr) == row.num_frames == 75
        assert vr.get_avg_fps() == pytest.approx(25.0)
        assert vr[0].shape == (128, 128, 3)
        with av.open(str(tiny_corpus / row.path)) as c:  # independent decoder agrees on codec
            assert c.streams.video[0].codec_context.name == "h264"


def test_annotation_files_follow_corpus_conventions(tiny_corpus):
    va = pd.read_csv(tiny_corpus / "annotations/VA/synth_000.txt")
    assert list(va.columns) == ["valence", "arousal"] and len(va) == 75
    expr = pd.read_csv(tiny_corpus / "annotations/EXPR/synth_000.csv")
    faces = pd.read_csv(tiny_corpus / "faces/synth_000.csv")
    no_face = faces["has_face"] == 0
    assert no_face.any(), "faceless_prob=1 must give every video a faceless gap"
    # invalid frames: Aff-Wild2's -5 in VA, -1 in EXPR, empty box
    assert (va[no_face] == INVALID_VA).all().all()
    assert (expr.loc[no_face, "label"] == -1).all()
    assert faces.loc[no_face, ["x0", "y0", "x1", "y1"]].isna().all().all()
    ok = ~no_face
    assert va[ok].abs().le(1).all().all()
    assert (expr.loc[ok, "emotion"] == [EMOTIONS[i] for i in expr.loc[ok, "label"]]).all()
    boxes = faces.loc[ok, ["x0", "y0", "x1", "y1"]].to_numpy()
    assert (boxes[:, 2] > boxes[:, 0] + 20).all() and (boxes >= 0).all() and (boxes <= 128).all()


def test_box_covers_the_drawn_face(tiny_corpus):
    """Where a face is, the pixels inside its box differ from the same spot without a face."""
    faces = pd.read_csv(tiny_corpus / "faces/synth_001.csv")
    vr = decord.VideoReader(str(tiny_corpus / "videos/synth_001.mp4"))
    empty = int(faces.index[faces["has_face"] == 0][0])
    full = faces[faces["has_face"] == 1].iloc[(faces["has_face"] == 1).sum() // 2]
    x0, y0, x1, y1 = (int(round(v)) for v in full[["x0", "y0", "x1", "y1"]])
    a, b = vr[empty].asnumpy().astype(int), vr[int(full["frame_index"])].asnumpy().astype(int)
    inside = np.abs(a - b)[y0:y1, x0:x1].mean()
    assert inside > 25, inside


def test_deterministic_by_seed(tmp_path):
    cfg = SynthConfig(videos=2, seconds=1.0, fps=10.0, seed=3, size=128)
    generate_corpus(cfg, tmp_path / "a", workers=1, progress=False)
    generate_corpus(cfg, tmp_path / "b", workers=2, progress=False)
    generate_corpus(SynthConfig(videos=2, seconds=1.0, fps=10.0, seed=4, size=128), tmp_path / "c", workers=1, progress=False)
    for name in ("annotations/VA/synth_001.txt", "faces/synth_001.csv", "index.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    assert (tmp_path / "a/videos/synth_001.mp4").read_bytes() == (tmp_path / "b/videos/synth_001.mp4").read_bytes()
    assert (tmp_path / "a/annotations/VA/synth_001.txt").read_text() != (tmp_path / "c/annotations/VA/synth_001.txt").read_text()


@pytest.mark.parametrize(
    "v,a,expected",
    [(0.0, 0.0, "neutral"), (0.9, 0.1, "happy"), (0.1, 0.9, "surprised"), (-0.7, 0.6, "angry"),
     (-0.6, -0.6, "sad"), (0.6, -0.7, "calm"), (0.2, -0.2, "neutral")],
)
def test_emotion_from_va_hand_cases(v, a, expected):
    assert EMOTIONS[int(emotion_from_va(np.array([v]), np.array([a]))[0])] == expected


def test_expression_follows_the_signals():
    """Arousal opens the eyes (more sclera pixels); valence bends the mouth (centre below corners)."""
    # light skin and dark hair keep the mouth's colour unique on the canvas
    ident = dataclasses.replace(Identity.sample(np.random.default_rng(0)), skin=(255, 224, 196), hair=(20, 20, 20))

    def sclera(img):
        return int((img.min(axis=2) >= 245).sum())

    opened = [sclera(draw_face(ident, 0.0, a)[0]) for a in (-1.0, 0.0, 1.0)]
    assert opened[0] < opened[1] < opened[2]

    def mouth_centre_row(v):
        img = draw_face(ident, v, -1.0)[0]
        px = img.astype(int)
        mouth = (np.abs(px - (90, 20, 30)).sum(axis=2) < 40) | (np.abs(px - (150, 40, 50)).sum(axis=2) < 40)
        cols = np.flatnonzero(mouth.any(axis=0))
        mid = mouth[:, cols[len(cols) // 2]]
        edge = mouth[:, cols[2]]
        return np.flatnonzero(mid).mean() - np.flatnonzero(edge).mean()

    assert mouth_centre_row(1.0) > 3 > -3 > mouth_centre_row(-1.0)


@pytest.mark.cli
@pytest.mark.parametrize(
    "args,message",
    [(["--videos", "0"], "--videos must be at least 1"), (["--fps", "-5"], "--fps must be a positive"),
     (["--seconds", "0.01", "--fps", "10"], "gives no frame"), (["--size", "100"], "--size must be a multiple of 16")],
)
def test_synth_rejects_impossible_arguments(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "fer_lightning.cli", "synth", "--out", str(tmp_path), *args],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "index.csv").exists()
