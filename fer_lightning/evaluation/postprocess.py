"""AVEC-style post-processing of per-frame affect predictions, fitted on the development split.

The steps of the AVEC challenges' baselines (Ringeval et al., AVEC 2016-2019), each fitted per
dimension on the development split and kept only when it raises the development CCC:

1. **delay compensation**: raters react a few seconds after the face does, so predictions are
   delayed by ``d`` seconds (``out[t] = pred[t - d]``, the first ``d`` seconds repeat the first
   value); ``d`` is searched over a grid in seconds (one frame apart by default);
2. **temporal smoothing**: a median or Savitzky-Golay filter over each video, window searched
   in seconds;
3. **bias correction**: add the development split's ``mean(true) - mean(pred)``;
4. **scale correction**: scale predictions about their mean by ``std(true) / std(pred)`` (not
   tried beyond 100x: the spread of a nearly constant prediction is noise).

The fitted :class:`PostProcessor` then applies the same steps to any split (the test split).
Videos are dicts ``video_id -> VideoTrace`` holding a prediction for every frame (frames without
a face filled from the face frames around them, see :mod:`fer_lightning.metrics.faceless`); only
frames whose ``mask`` is true (a valid label) are scored, but every frame is filtered, so a
shift or a filter never mixes videos and never spreads the model's output on a black frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np

SMOOTHERS = ("median", "savgol")
MAX_SCALE = 100.0  # largest scale correction tried (std(true) / std(pred))


@dataclass
class VideoTrace:
    """One video's per-frame predictions ``pred`` (N, D), targets ``true`` (N, D), ``mask`` (N,)
    (the frames scored: a valid label) and ``has_face`` (N,; None: every frame)."""

    pred: np.ndarray
    true: np.ndarray
    mask: np.ndarray
    fps: float
    subject: str = ""
    has_face: np.ndarray | None = None


def face_frames_only(seqs: Mapping[str, VideoTrace]) -> dict[str, VideoTrace]:
    """The traces scored on their labelled frames that show a face only (the second column of
    the reports: the figure a face-only protocol would give)."""
    return {vid: s if s.has_face is None else replace(s, mask=s.mask & s.has_face) for vid, s in seqs.items()}


def face_coverage(seqs: Mapping[str, VideoTrace]) -> float:
    """Share of the scored frames that show a face (nan when none is scored)."""
    scored = sum(int(s.mask.sum()) for s in seqs.values())
    faces = sum(int((s.mask & (True if s.has_face is None else s.has_face)).sum()) for s in seqs.values())
    return faces / scored if scored else float("nan")


MOMENTS = {"population": 0, "sample": 1}  # ddof: ABAW and AVEC GES scorers / AVEC 2018's CES scorer


def ccc(pred: np.ndarray, true: np.ndarray, ddof: int = 0) -> float:
    """The project's CCC (:func:`fer_lightning.metrics.functional.ccc`; imported on first use,
    so that the search space and the tools' ``--help`` need no torch), from population moments;
    ``ddof=1``: variances and covariance divided by n - 1, as AVEC 2018's CES scorer does."""
    if ddof == 0:
        from fer_lightning.metrics.functional import ccc as shared

        return shared(pred, true)
    p, t = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if len(p) < 2:
        return float("nan")
    cov = ((p - p.mean()) * (t - t.mean())).sum() / (len(p) - ddof)
    denom = p.var(ddof=ddof) + t.var(ddof=ddof) + (p.mean() - t.mean()) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def pearson(pred: np.ndarray, true: np.ndarray) -> float:
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if len(pred) < 2 or pred.std() == 0 or true.std() == 0:
        return 0.0 if len(pred) >= 2 else float("nan")
    return float(np.corrcoef(pred, true)[0, 1])


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    d = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    return float(np.sqrt((d**2).mean())) if len(d) else float("nan")


def shift(pred: np.ndarray, frames: int) -> np.ndarray:
    """Delay ``pred`` (N, ...) by ``frames`` (negative: advance), repeating the edge value."""
    n = len(pred)
    if frames == 0 or n == 0:
        return pred.copy()
    src = np.clip(np.arange(n) - frames, 0, n - 1)
    return pred[src]


def odd_window(seconds: float, fps: float) -> int:
    """A filter window of about ``seconds``, in frames, odd and at least 1."""
    return max(1, 2 * int(round(seconds * fps / 2)) + 1)


def smooth(pred: np.ndarray, method: str, window: int) -> np.ndarray:
    """Median or Savitzky-Golay (order 2) filtering of a 1-D trace with a ``window``-frame window."""
    from scipy.ndimage import median_filter
    from scipy.signal import savgol_filter

    if method not in SMOOTHERS:
        raise ValueError(f"smoothing must be one of {SMOOTHERS}, not {method!r}")
    if window <= 1 or len(pred) < 2:
        return pred.copy()
    if method == "median":
        return median_filter(pred, size=window, mode="nearest")
    window = min(window, len(pred) if len(pred) % 2 else len(pred) - 1)
    if window <= 2:
        return pred.copy()
    return savgol_filter(pred, window, polyorder=2, mode="interp" if window <= len(pred) else "nearest")


@dataclass
class DimensionSteps:
    """The fitted post-processing of one output dimension (None / 1 / 0: step not used)."""

    delay_s: float = 0.0
    smoothing: str | None = None
    window_s: float = 0.0
    bias: float = 0.0
    scale: float = 1.0
    scale_centre: float = 0.0
    dev_ccc: dict[str, float] = field(default_factory=dict)  # dev CCC after each step


@dataclass
class SearchSpace:
    """What the fit tries: delays and smoothing windows in seconds.

    Args:
        max_delay_s: longest delay searched, seconds
        min_delay_s: shortest delay searched, seconds (negative: predictions may also move earlier)
        delay_step_s: step of the delay grid, seconds (null: one frame of the slowest video)
        windows_s: smoothing windows tried, seconds
        smoothers: smoothing filters tried (median, savgol)
        bias: try bias correction
        scale: try scale correction
    """

    max_delay_s: float = 4.0
    min_delay_s: float = 0.0
    delay_step_s: float | None = None  # None: one frame of the slowest video
    windows_s: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 4.0)
    smoothers: tuple[str, ...] = SMOOTHERS
    bias: bool = True
    scale: bool = True


def _apply_dim(seqs: Mapping[str, VideoTrace], d: int, steps: DimensionSteps, upto: str = "scale") -> dict[str, np.ndarray]:
    """Dimension ``d`` of every sequence after the fitted steps up to and including ``upto``."""
    order = ("delay", "smoothing", "bias", "scale")
    out = {}
    for vid, s in seqs.items():
        y = shift(s.pred[:, d].astype(np.float64), int(round(steps.delay_s * s.fps)))
        if order.index(upto) >= 1 and steps.smoothing:
            y = smooth(y, steps.smoothing, odd_window(steps.window_s, s.fps))
        if order.index(upto) >= 2:
            y = y + steps.bias
        if order.index(upto) >= 3 and steps.scale != 1.0:
            y = (y - steps.scale_centre) * steps.scale + steps.scale_centre
        out[vid] = y
    return out


def _pooled(seqs: Mapping[str, VideoTrace], d: int, preds: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    p, t = [], []
    for vid, s in seqs.items():
        keep = s.mask & np.isfinite(s.true[:, d])
        p.append(preds[vid][keep])
        t.append(s.true[keep, d])
    return (np.concatenate(p), np.concatenate(t)) if p else (np.zeros(0), np.zeros(0))


def _delay_grid(seqs: Mapping[str, VideoTrace], space: SearchSpace) -> np.ndarray:
    step = space.delay_step_s or 1.0 / min(s.fps for s in seqs.values())
    return np.round(np.arange(space.min_delay_s, space.max_delay_s + step / 2, step), 6)


@dataclass
class PostProcessor:
    """Per-dimension steps fitted on a development split (see the module docs)."""

    names: list[str]
    dims: list[DimensionSteps]
    curves: dict = field(default_factory=dict)  # dev CCC over the searched delays / windows, for plots

    @classmethod
    def fit(cls, dev: Mapping[str, VideoTrace], names: Iterable[str], space: SearchSpace | None = None) -> PostProcessor:
        """Search each step on ``dev`` in turn; keep a step only when it raises the pooled CCC."""
        space = space or SearchSpace()
        names = list(names)
        if not dev:
            raise ValueError("post-processing needs a development split with at least one video")
        dims, curves = [], {}
        delays = _delay_grid(dev, space)
        for d, name in enumerate(names):
            steps = DimensionSteps()

            def score(s: DimensionSteps, upto: str, d=d) -> float:
                return ccc(*_pooled(dev, d, _apply_dim(dev, d, s, upto)))

            steps.dev_ccc["raw"] = score(steps, "delay")
            by_delay = [score(replace(steps, delay_s=float(x)), "delay") for x in delays]
            best = int(np.nanargmax(by_delay))
            if by_delay[best] > steps.dev_ccc["raw"]:
                steps.delay_s = float(delays[best])
            steps.dev_ccc["delay"] = score(steps, "delay")
            curves[name] = {"delay_s": delays.tolist(), "delay_ccc": by_delay, "smoothing": {}}
            best_smooth = (steps.dev_ccc["delay"], None, 0.0)
            for method in space.smoothers:
                by_window = [score(replace(steps, smoothing=method, window_s=w), "smoothing") for w in space.windows_s]
                curves[name]["smoothing"][method] = {"window_s": list(space.windows_s), "ccc": by_window}
                k = int(np.nanargmax(by_window))
                if by_window[k] > best_smooth[0]:
                    best_smooth = (by_window[k], method, float(space.windows_s[k]))
            _, steps.smoothing, steps.window_s = best_smooth
            steps.dev_ccc["smoothing"] = score(steps, "smoothing")
            p, t = _pooled(dev, d, _apply_dim(dev, d, steps, "smoothing"))
            if space.bias and len(p):
                trial = replace(steps, bias=float(t.mean() - p.mean()))
                if score(trial, "bias") > steps.dev_ccc["smoothing"]:
                    steps = trial
            steps.dev_ccc["bias"] = score(steps, "bias")
            p, t = _pooled(dev, d, _apply_dim(dev, d, steps, "bias"))
            # a (nearly) constant prediction is not scaled up: its spread is noise, and a factor
            # beyond MAX_SCALE turns a tiny CCC gain on dev into huge errors elsewhere
            if space.scale and len(p) > 1 and p.std() > 0 and t.std() / p.std() <= MAX_SCALE:
                trial = replace(steps, scale=float(t.std() / p.std()), scale_centre=float(p.mean()))
                if score(trial, "scale") > steps.dev_ccc["bias"]:
                    steps = trial
            steps.dev_ccc["scale"] = score(steps, "scale")
            steps.dev_ccc = dict(steps.dev_ccc)
            dims.append(steps)
        return cls(names, dims, curves)

    def apply(self, seqs: Mapping[str, VideoTrace], upto: str = "scale") -> dict[str, VideoTrace]:
        """The sequences with post-processed predictions (steps up to ``upto``)."""
        out = {vid: replace(s, pred=np.empty_like(s.pred, dtype=np.float64)) for vid, s in seqs.items()}
        for d, steps in enumerate(self.dims):
            for vid, y in _apply_dim(seqs, d, steps, upto).items():
                out[vid].pred[:, d] = y
        return out

    def as_dict(self) -> dict:
        return {name: asdict(steps) for name, steps in zip(self.names, self.dims, strict=True)}

    @classmethod
    def from_dict(cls, fitted: Mapping[str, Mapping], names: Iterable[str]) -> PostProcessor:
        """The post-processing :meth:`as_dict` wrote (``evaluation.json``'s ``postprocess``), for
        the dimensions ``names``; an error names a dimension it lacks."""
        names = list(names)
        missing = [n for n in names if n not in fitted]
        if missing:
            raise ValueError(f"the post-processing holds no steps for {missing} (it has {sorted(fitted)})")
        known = set(DimensionSteps.__dataclass_fields__)
        return cls(names, [DimensionSteps(**{k: v for k, v in fitted[n].items() if k in known}) for n in names])


def scores(seqs: Mapping[str, VideoTrace], names: Iterable[str], ddof: int = 0) -> dict:
    """Per dimension: pooled CCC, Pearson and RMSE over all scored frames; the mean and each
    video's CCC; and the same three figures per subject (its videos pooled). ``ddof``: the
    CCC's moments (0: population, 1: n - 1; see :data:`MOMENTS`)."""
    names = list(names)
    out: dict = {}
    subjects = sorted({s.subject for s in seqs.values()})
    for d, name in enumerate(names):
        preds = {vid: s.pred[:, d] for vid, s in seqs.items()}
        p, t = _pooled(seqs, d, preds)
        per_seq = {}
        for vid, s in seqs.items():
            keep = s.mask & np.isfinite(s.true[:, d])
            if np.isfinite(value := ccc(s.pred[keep, d], s.true[keep, d], ddof)):  # nan: under 2 frames
                per_seq[vid] = value
        per_subject = {}
        for subj in subjects:
            mine = {vid: s for vid, s in seqs.items() if s.subject == subj}
            sp, st = _pooled(mine, d, preds)
            if len(sp) >= 2:
                per_subject[subj] = {"ccc": ccc(sp, st, ddof), "pearson": pearson(sp, st), "rmse": rmse(sp, st), "frames": len(sp)}
        out[name] = {"ccc": ccc(p, t, ddof), "pearson": pearson(p, t), "rmse": rmse(p, t), "frames": int(len(p)),
                     "seq_ccc_mean": float(np.mean(list(per_seq.values()))) if per_seq else float("nan"),
                     "per_sequence": per_seq, "per_subject": per_subject}
    return out
