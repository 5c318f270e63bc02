"""AVEC-style post-processing against hand-made traces whose delay, noise, bias and scale are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr

from fer_lightning.evaluation.postprocess import (
    PostProcessor,
    SearchSpace,
    VideoTrace,
    ccc,
    scores,
    shift,
    smooth,
)

FPS = 25.0


def smooth_trace(rng: np.random.Generator, n: int) -> np.ndarray:
    """A slowly wandering trace in about [-1, 1] (moving average of white noise)."""
    x = np.convolve(rng.standard_normal(n + 100), np.ones(50) / 50, mode="same")[50 : 50 + n]
    return x / np.abs(x).max()


def corpus(seed: int, lag: int, noise: float = 0.0, bias: float = 0.0, gain: float = 1.0,
           videos: int = 6, n: int = 400) -> dict[str, VideoTrace]:
    """Predictions that see the face (truth at t) while labels lag ``lag`` frames behind it."""
    rng = np.random.default_rng(seed)
    out = {}
    for v in range(videos):
        face = np.stack([smooth_trace(rng, n + lag), smooth_trace(rng, n + lag)], axis=1)
        true = face[:n]  # the label at t describes the face at t - lag ...
        pred = face[lag : n + lag] * gain + bias + noise * rng.standard_normal((n, 2))  # ... the model sees t
        mask = np.ones(n, bool)
        mask[50:70] = False  # a stretch without a face
        out[f"v{v}"] = VideoTrace(pred=pred, true=np.where(mask[:, None], true, np.nan), mask=mask, fps=FPS,
                                subject=f"s{v // 2}")
    return out


def test_ccc_matches_its_definition_and_pearson_matches_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(500), rng.standard_normal(500) * 0.5 + 0.3
    y = y + 0.7 * x
    expected = 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert ccc(x, y) == pytest.approx(expected, abs=1e-12)
    assert ccc(x, x) == pytest.approx(1.0)
    seqs = {"a": VideoTrace(pred=x[:, None], true=y[:, None], mask=np.ones(500, bool), fps=FPS, subject="s")}
    s = scores(seqs, ["valence"])["valence"]
    assert s["pearson"] == pytest.approx(pearsonr(x, y)[0], abs=1e-12)
    assert s["rmse"] == pytest.approx(np.sqrt(np.mean((x - y) ** 2)))
    assert s["per_subject"]["s"]["ccc"] == pytest.approx(expected)


def test_shift_delays_and_repeats_the_edge():
    x = np.arange(6.0)
    assert shift(x, 2).tolist() == [0, 0, 0, 1, 2, 3]
    assert shift(x, -2).tolist() == [2, 3, 4, 5, 5, 5]


def test_smoothing_filters_match_scipy_references():
    from scipy.signal import savgol_filter

    x = np.array([0, 0, 9, 0, 0, 1, 1, 1, 5, 1], float)
    assert smooth(x, "median", 3).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    np.testing.assert_allclose(smooth(x, "savgol", 5), savgol_filter(x, 5, 2))


@pytest.mark.parametrize("lag_s", [0.0, 0.6, 2.0])
def test_delay_compensation_recovers_the_raters_lag(lag_s):
    lag = int(round(lag_s * FPS))
    dev, test = corpus(1, lag, noise=0.05), corpus(2, lag, noise=0.05)
    post = PostProcessor.fit(dev, ["valence", "arousal"], SearchSpace(max_delay_s=3.0))
    for steps in post.dims:
        assert steps.delay_s == pytest.approx(lag_s, abs=1.01 / FPS)
    before = scores(test, ["valence", "arousal"])
    after = scores(post.apply(test), ["valence", "arousal"])
    for name in ("valence", "arousal"):
        if lag:
            assert after[name]["ccc"] > before[name]["ccc"] + 0.05
        assert after[name]["ccc"] > 0.9


def test_smoothing_bias_and_scale_are_fitted_on_dev_and_help_on_test():
    dev, test = (corpus(s, 0, noise=0.4, bias=0.3, gain=0.5) for s in (3, 4))
    post = PostProcessor.fit(dev, ["valence", "arousal"], SearchSpace(max_delay_s=1.0))
    for steps in post.dims:
        assert steps.smoothing in ("median", "savgol") and steps.window_s >= 0.4  # white noise: smooth it
        # bias: mean(true) - mean(pred) of the smoothed dev predictions, i.e. about -0.3 here
        assert steps.bias == pytest.approx(-0.3, abs=0.05)
        assert steps.scale > 1.3  # predictions were shrunk by half
        assert list(steps.dev_ccc) == ["raw", "delay", "smoothing", "bias", "scale"]
        assert steps.dev_ccc["scale"] > steps.dev_ccc["raw"] + 0.2
    before, after = scores(test, ["valence"]), scores(post.apply(test), ["valence"])
    assert after["valence"]["ccc"] > before["valence"]["ccc"] + 0.2


def test_a_step_that_does_not_help_on_dev_is_left_out():
    dev = corpus(5, 0)  # perfect predictions: nothing can improve them
    post = PostProcessor.fit(dev, ["valence", "arousal"])
    for steps in post.dims:
        assert (steps.delay_s, steps.smoothing, steps.bias, steps.scale) == (0.0, None, 0.0, 1.0)
    np.testing.assert_allclose(post.apply(dev)["v0"].pred, dev["v0"].pred)


def test_prediction_files_in_the_challenges_formats(tmp_path):
    """ABAW: header and one clipped row per label row, no row left empty; AVEC: the gold
    standard's ARFF layout per dimension and a csv per recording, at the annotation times."""
    from fer_lightning.corpora.adapters.recola import read_gold_standard
    from fer_lightning.evaluation.formats import write_abaw_va, write_avec_arff, write_label_rate

    pred = np.array([[0.5, -0.2], [1.4, 0.1], [-0.3, -1.7]])
    (path,) = write_abaw_va(tmp_path / "abaw", {"vid_left": pred}, ["valence", "arousal"])
    lines = path.read_text().splitlines()
    assert path.name == "vid_left.txt" and lines[0] == "valence,arousal" and len(lines) == 4
    assert lines[2] == "1.000000,0.100000" and lines[3] == "-0.300000,-1.000000"
    with pytest.raises(ValueError, match="1 rows have no prediction"):
        write_abaw_va(tmp_path / "abaw", {"bad": np.array([[0.1, np.nan], [0.2, 0.3]])}, ["valence", "arousal"])
    times = np.array([0.0, 0.04, 0.08])
    written = write_label_rate(tmp_path / "rate", {"rec": (times, pred)}, ["valence", "arousal"])
    rows = written[0].read_text().splitlines()
    assert rows[0] == "instance,time_s,valence,arousal" and rows[2] == "rec,0.040,1.400000,0.100000"
    arff = write_avec_arff(tmp_path / "avec", {"dev_1": (times, pred)}, ["arousal", "valence"])
    assert [p.relative_to(tmp_path / "avec").as_posix() for p in arff] == ["arousal/dev_1.arff", "valence/dev_1.arff"]
    t, v = read_gold_standard(arff[1])  # read back as the corpus's own gold standard is read
    np.testing.assert_allclose(t, times)
    np.testing.assert_allclose(v, pred[:, 1])


def test_a_nearly_constant_prediction_is_not_scaled_up():
    # an untrained model's output barely moves: scaling its noise to the labels' spread gave a
    # factor of 1e14 and an RMSE of 3e11 on test, for a CCC gain of 1e-4 on dev
    from fer_lightning.evaluation.postprocess import PostProcessor, VideoTrace

    rng = np.random.default_rng(0)
    t = np.sin(np.arange(400) / 20)[:, None]
    dev = {"a": VideoTrace(pred=0.3 + 1e-9 * rng.normal(size=(400, 1)), true=t, mask=np.ones(400, bool), fps=25.0)}
    post = PostProcessor.fit(dev, ["valence"])
    assert post.dims[0].scale == 1.0
