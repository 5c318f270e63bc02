"""The real-face corpus: real people's photos animated by the synthetic corpus's valence/arousal
law, identities split cleanly, read by the synthetic adapter like the drawn corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest

PHOTOS = ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "single_face.jpg"]


@pytest.fixture(scope="module")
def real_corpus(feat_data, tmp_path_factory):
    from fer_lightning.corpora.synthetic.real_faces import RealFacesConfig, generate_real_faces

    out = tmp_path_factory.mktemp("real_faces")
    generate_real_faces([feat_data / p for p in PHOTOS], out,
                        RealFacesConfig(videos_per_identity=2, seconds=1.2, split=(0.6, 0.2, 0.2)), progress=False)
    return out


def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_identities_split_cleanly_and_the_synthetic_adapter_reads_them(real_corpus):
    from fer_lightning.corpora.load import load_corpus
    from fer_lightning.corpora.synthetic.generator import emotion_from_va

    meta = json.loads((real_corpus / "corpus.json").read_text())
    assert meta["faces"] == "real" and len(meta["identities"]) == len(PHOTOS)
    corpus = load_corpus("synthetic", real_corpus)
    people = {s: {r.subject for r in corpus.splits[s]} for s in ("train", "val", "test")}
    assert [len(people[s]) for s in ("train", "val", "test")] == [3, 1, 1]
    assert not (people["train"] & people["test"]) and not (people["val"] & people["test"])
    assert all(len([r for r in corpus.records if r.subject == p]) == 2 for p in meta["identities"])
    rec = corpus.splits["train"][0]
    va = rec.values[rec.has_face]
    # the emotion class of each frame is the circumplex's class of its valence/arousal
    assert np.array_equal(rec.labels[rec.has_face], emotion_from_va(va[:, 0], va[:, 1]))


def test_each_frame_shows_a_real_face_where_the_truth_says(real_corpus):
    """The real detector finds the animated face inside the ground-truth box."""
    from fer_lightning.corpora.load import load_corpus
    from fer_lightning.faces.detect import create_detector
    from fer_lightning.media.video import ReaderCache

    detector = create_detector("mtcnn")
    readers = ReaderCache()
    found = []
    for rec in load_corpus("synthetic", real_corpus).records[::2]:
        f = int(np.flatnonzero(rec.has_face)[len(np.flatnonzero(rec.has_face)) // 2])
        frame = readers.read(rec.path, np.array([f]))[0]
        faces = detector.detect(frame)
        found.append(max((iou(d.box, rec.boxes[f]) for d in faces), default=0.0))
    assert min(found) > 0.4, found


def test_valence_moves_the_mouth_and_arousal_the_eyes(feat_data):
    """The expression law acts where a face shows it: changing valence changes the mouth region
    several times more than the eyes; arousal changes the eyes and brows."""
    from fer_lightning.corpora.synthetic.real_faces import ExpressionWarp, find_portraits

    portrait = find_portraits([feat_data / "0-f15-hao-ph.jpg"])[0]
    warp = ExpressionWarp(portrait)

    def change(region_centre, dv, da) -> float:
        a, b = warp(portrait.image, -dv, -da), warp(portrait.image, dv, da)
        x, y = (int(v) for v in region_centre)
        r = 12
        return float(np.abs(a[y - r:y + r, x - r:x + r] - b[y - r:y + r, x - r:x + r]).mean())

    lm = portrait.landmarks
    mouth, eyes = (lm[3] + lm[4]) / 2, lm[0]
    assert change(lm[3], 1, 0) > 3 * change(eyes, 1, 0)
    assert change(eyes, 0, 1) > 2.0 and change(mouth, 0, 1) > 2.0
    assert change(np.array([20, 20]), 1, 1) < 0.5  # far from the face: nothing moves
