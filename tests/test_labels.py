"""Label alignment against hand-computed cases: 40 ms and 100 ms annotations on 25, 30 and 29.97 fps."""

from __future__ import annotations

import numpy as np
import pytest

from fer_lightning.corpora.labels import (
    LabelCounts,
    LabelLengthError,
    align_to_frames,
    match_length,
    read_arff,
    scale_to_unit,
)


def ramp(step: float, seconds: float = 10.0):
    """Annotations every ``step`` s whose value is the annotation's own index k."""
    k = np.arange(int(round(seconds / step)) + 1)
    return k * step, k.astype(float)


@pytest.mark.parametrize(
    "step,fps,frame,nearest,linear",
    [
        (0.04, 25.0, 7, 7, 7.0),  # same clock: frame i is annotation i
        (0.04, 30.0, 4, 3, 4 / 30 / 0.04),  # t = 0.1333 s: 0.12 is nearest, 3.333 between
        (0.04, 30000 / 1001, 100, 83, 100 * 1001 / 30000 / 0.04),  # t = 3.33667 s -> k = 83.42
        (0.1, 25.0, 7, 3, 2.8),  # t = 0.28 s: 0.3 is nearest
        (0.1, 30.0, 10, 3, 10 / 30 / 0.1),  # t = 0.3333 s
        (0.1, 30000 / 1001, 100, 33, 100 * 1001 / 30000 / 0.1),  # t = 3.33667 s -> k = 33.37
    ],
)
def test_resampling_puts_hand_computed_values_on_frames(step, fps, frame, nearest, linear):
    times, values = ramp(step)
    frame_times = np.arange(200) / fps
    got_n = align_to_frames(times, values, frame_times, "nearest").values[:, 0]
    got_l = align_to_frames(times, values, frame_times, "linear").values[:, 0]
    assert got_n[frame] == nearest
    assert got_l[frame] == pytest.approx(linear, abs=1e-4)


def test_delay_shifts_labels_earlier_and_masks_the_uncovered_end():
    times, values = ramp(0.04, seconds=10.0)
    frame_times = np.arange(250) / 25.0  # 10 s of video
    out = align_to_frames(times, values, frame_times, "nearest", delay=2.0)
    assert out.values[0, 0] == 50  # the rating given at 2.0 s describes frame 0
    assert out.values[200, 0] == 250 and np.isnan(out.values[201:, 0]).all()  # last rating: 10.0 s
    assert out.counts.not_annotated == 49 and out.counts.labelled == 201


def test_invalid_values_gaps_and_ends_get_no_label():
    times, values = ramp(0.04, seconds=4.0)
    values[10] = np.nan
    keep = (values <= 25) | (values >= 51)  # a second of missing rows
    frame_times = np.arange(110) / 25.0  # runs past the last annotation (4.0 s)
    for method in ("nearest", "linear"):
        v = align_to_frames(times[keep], values[keep], frame_times, method).values[:, 0]
        assert np.isnan(v[10])
        assert np.isnan(v[26:50]).all() and v[25] == 25 and v[51] == 51
        assert np.isnan(v[101:]).all() and v[100] == 100
    lin = align_to_frames(times, values, np.array([0.38, 0.42]), "linear").values[:, 0]
    assert np.isnan(lin).all()  # either neighbour invalid -> invalid


def test_scale_maps_ranges_and_masks_markers_and_outliers():
    counts = LabelCounts()
    v = scale_to_unit(np.array([-10, 0, 10, 5, -5, 11]), -10, 10, invalid=-5, counts=counts)
    np.testing.assert_allclose(v[:4], [-1, 0, 1, 0.5])
    assert np.isnan(v[4:]).all() and counts.invalid_marker == 1 and counts.out_of_range == 1


def test_length_policy_pads_or_truncates_within_tolerance_and_names_the_video():
    counts = LabelCounts()
    padded = match_length(np.ones((98, 2)), 100, "vid", tolerance=3, counts=counts)
    assert padded.shape == (100, 2) and np.isnan(padded[98:]).all() and counts.length_mismatch == 2
    assert match_length(np.ones((101, 2)), 100, "vid", tolerance=3).shape == (100, 2)
    with pytest.raises(LabelLengthError, match=r"vid: the label file has 90 rows but the video has 100 frames"):
        match_length(np.ones((90, 2)), 100, "vid", tolerance=3)


def test_arff_reader_handles_headers_of_any_length(tmp_path):
    path = tmp_path / "train_1.arff"
    path.write_text(
        "% AVEC 2016 gold standard\n@RELATION GoldStandard\n\n@ATTRIBUTE Instance_name string\n"
        "@attribute frameTime numeric\n@attribute 'GoldStandard' numeric\n\n@data\n"
        "'train_1',0.000000,0.1250\ntrain_1,0.040000,-0.5\n"
    )
    names, rows = read_arff(path)
    assert names == ["Instance_name", "frameTime", "GoldStandard"]
    assert rows == [["train_1", "0.000000", "0.1250"], ["train_1", "0.040000", "-0.5"]]
    (tmp_path / "bad.arff").write_text("@attribute a numeric\n0.1\n")
    with pytest.raises(ValueError, match="no @data"):
        read_arff(tmp_path / "bad.arff")
