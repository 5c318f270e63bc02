"""The CCC metrics, thin torchmetrics ``Metric`` wrappers of :mod:`fer_lightning.metrics.functional`
(the formula and its edge-case rule) and :mod:`fer_lightning.metrics.stitch` (frames from
overlapping windows).

Why not ``torchmetrics.ConcordanceCorrCoef``: it has no mask, rejects (B, T, D) input,
accumulates in float32 and uses n-1 variances. Ours keeps float64 states summed or gathered
across processes, so a DDP result equals the single-process one. Where the rule gives ``nan``
(fewer than 2 frames: nothing seen), the metrics report ``zero_division`` instead (default
0.0), so that a logged and monitored value stays a number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from fer_lightning.metrics.faceless import FACELESS, fill_faceless
from fer_lightning.metrics.functional import ccc_from_sums, concordance_cc, flatten_frames
from fer_lightning.metrics.stitch import stitch_frames

__all__ = ["ConcordanceCC", "SequenceConcordanceCC", "video_key"]

_MOMENTS = ("n", "sum_p", "sum_t", "sum_pp", "sum_tt", "sum_pt")


def _defined(value: Tensor, zero_division: float) -> Tensor:
    return torch.where(torch.isnan(value), torch.full_like(value, zero_division), value)


class ConcordanceCC(Metric):
    """Pooled, masked CCC per output dimension (all frames of the split together).

    ``update(preds, target, mask=None)`` takes (N,), (N, D) or (B, T, D) tensors and an optional
    boolean mask (N,) or (B, T); frames where the mask is false are ignored. ``compute()``
    returns a float64 tensor of shape (D,); for D = 1 torchmetrics squeezes it to 0-d.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_outputs: int = 1, zero_division: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_outputs = num_outputs
        self.zero_division = zero_division
        for name in _MOMENTS:
            self.add_state(name, default=torch.zeros(num_outputs, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        p, t, m = flatten_frames(preds, target, mask)
        if p.shape[1] != self.num_outputs:
            raise ValueError(f"expected {self.num_outputs} outputs, got {p.shape[1]}")
        p, t = p.detach().to(torch.float64), t.detach().to(torch.float64)
        if m is not None:
            p, t = p[m], t[m]
        self.n += p.shape[0]
        self.sum_p += p.sum(0)
        self.sum_t += t.sum(0)
        self.sum_pp += (p * p).sum(0)
        self.sum_tt += (t * t).sum(0)
        self.sum_pt += (p * t).sum(0)

    def compute(self) -> Tensor:
        value = ccc_from_sums(self.n, self.sum_p, self.sum_t, self.sum_pp, self.sum_tt, self.sum_pt, self.zero_division)
        return _defined(value, self.zero_division)


def video_key(video_id: str) -> int:
    """A stable 63-bit integer for a video id, the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(video_id.encode(), digest_size=8).digest(), "little") >> 1


class SequenceConcordanceCC(Metric):
    """Mean over videos of each video's CCC, per output dimension; :meth:`compute_pooled`
    gives the CCC pooled over all frames from the same state.

    Frames are keyed by ``(video_id, frame_index)``: a frame seen in several overlapping
    evaluation windows counts once, with the mean of those windows' predictions. A window seen
    twice (the copies a DistributedSampler pads the last batch with) counts once: windows are
    keyed by their video and first frame. Keeps every frame it sees (cat states), so use it on
    validation and test splits. States and results live on the metric's device.

    ``mask`` says which frames are scored (a valid label) and ``has_face`` which show a face.
    Given ``has_face``, the figures count every scored frame, the challenges' rule: a frame
    without a face is predicted by ``faceless`` (:mod:`fer_lightning.metrics.faceless`) from
    the face frames around it, after stitching. ``face_only=True`` gives the figures of the
    scored frames that show a face, and :meth:`face_coverage` their share. Without
    ``has_face`` every frame counts as a face frame.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_outputs: int = 1, zero_division: float = 0.0, faceless: str = "interpolate",
                 label_range: tuple[float, float] = (-1.0, 1.0), **kwargs) -> None:
        super().__init__(**kwargs)
        if faceless not in FACELESS:
            raise ValueError(f"faceless must be one of {FACELESS}, got {faceless!r}")
        self.label_range = label_range
        self.num_outputs = num_outputs
        self.zero_division = zero_division
        self.faceless = faceless
        for name in ("keys", "windows", "frames", "preds", "target", "flags"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._annotations: dict[int, tuple[int, Tensor, Tensor]] = {}

    def set_annotations(self, table: dict[str, tuple[int, object, object]] | None) -> None:
        """Score annotations rather than frames, as the challenges do: ``video_id -> (frames in
        the video, position (M,), values (M, D))``, the fields of
        :class:`fer_lightning.evaluation.final.Annotations` (the fractional frame each annotation
        describes, after the label delay; its labels, NaN where a dimension is not annotated). A
        video whose every frame was seen is then scored on its annotations: each predicted at its
        position, interpolated between the frames around it, held at the first or last frame
        beyond them, clipped to ``label_range`` (as ``evaluate``'s files are), each dimension
        where it is valid. A video seen in part (a sanity check, a
        ``limit_val_batches``) keeps its frames. Not a state: every rank sets the same table."""
        self._annotations = {
            video_key(vid): (int(n), torch.as_tensor(pos, dtype=torch.float64).reshape(-1),
                             torch.as_tensor(values, dtype=torch.float64).reshape(len(pos), -1))
            for vid, (n, pos, values) in (table or {}).items()}

    def update(
        self,
        preds: Tensor,
        target: Tensor,
        video_id: Sequence[str],
        frame_index: Tensor,
        mask: Tensor | None = None,
        has_face: Tensor | None = None,
    ) -> None:
        """``preds``/``target`` (B, T, D); ``video_id`` B strings; ``frame_index``, ``mask``
        (scored frames) and ``has_face`` (B, T)."""
        if preds.ndim != 3:
            raise ValueError(f"expected (B, T, D) input, got shape {tuple(preds.shape)}")
        b, t, d = preds.shape
        keys = torch.tensor([video_key(v) for v in video_id], dtype=torch.int64, device=preds.device)
        keys = keys[:, None].expand(b, t).reshape(-1)
        frame_index = frame_index.to(torch.int64)
        windows = frame_index[:, :1].expand(b, t).reshape(-1)  # a window is known by its first frame
        frames = frame_index.reshape(-1)
        p, tg, m = flatten_frames(preds, target, mask)
        scored = torch.ones_like(frames, dtype=torch.bool) if m is None else m
        face = torch.ones_like(scored) if has_face is None else has_face.reshape(-1).to(torch.bool)
        # face frames without a label stay too: the faceless frames between them are filled from them
        keep = (frames >= 0) & (scored | face)
        self.keys.append(keys[keep])
        self.windows.append(windows[keep])
        self.frames.append(frames[keep])
        self.preds.append(p.detach().to(torch.float64)[keep])
        self.target.append(tg.detach().to(torch.float64)[keep])
        self.flags.append((scored.to(torch.uint8) | (face.to(torch.uint8) << 1))[keep])

    def _scored_frames(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(video key, frame) rows (F, 2), preds (F, D), targets (F, D) and face flags (F,) of the
        scored frames, each frame once, faceless frames filled."""
        if len(self.keys) == 0:  # nothing seen (an empty list, or an empty tensor once synced)
            empty = torch.empty(0, self.num_outputs, dtype=torch.float64, device=self.device)
            return (torch.empty(0, 2, dtype=torch.int64, device=self.device), empty, empty,
                    torch.empty(0, dtype=torch.bool, device=self.device))
        rows, p, t, flags = stitch_frames(dim_zero_cat(self.keys), dim_zero_cat(self.windows),
                                          dim_zero_cat(self.frames), dim_zero_cat(self.preds),
                                          dim_zero_cat(self.target), dim_zero_cat(self.flags))
        scored, face = (flags & 1) > 0, (flags & 2) > 0
        p = fill_faceless(rows[:, 0], rows[:, 1], p, face, self.faceless)
        if self._annotations:
            return self._at_annotations(rows, p, t, face, scored)
        return rows[scored], p[scored], t[scored], face[scored]

    def _at_annotations(self, rows: Tensor, p: Tensor, t: Tensor, face: Tensor, scored: Tensor
                        ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The stitched frames turned into annotation rows, video by video (see
        :meth:`set_annotations`); rows are (video key, annotation number)."""
        out: list[tuple[Tensor, ...]] = []
        keys, counts = torch.unique_consecutive(rows[:, 0], return_counts=True)  # rows are sorted by video
        start = 0
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            part = slice(start, start + count)
            start += count
            ann = self._annotations.get(key)
            frames = rows[part, 1]
            if ann is None or ann[0] != count or int(frames[0]) != 0 or int(frames[-1]) != count - 1:
                keep = scored[part]
                out.append((rows[part][keep], p[part][keep], t[part][keep], face[part][keep]))
                continue
            _, pos, values = ann
            pos = pos.to(p.device).clamp(0, count - 1)
            lo = pos.floor().to(torch.int64)
            hi = (lo + 1).clamp(max=count - 1)
            w = (pos - lo)[:, None]
            pred = ((1 - w) * p[part][lo] + w * p[part][hi]).clamp(*self.label_range)
            values = values.to(p.device)
            valid = torch.isfinite(values).any(dim=1)
            number = torch.arange(len(pos), device=p.device)
            out.append((torch.stack([torch.full_like(number, key), number], 1)[valid], pred[valid], values[valid],
                        face[part][torch.ceil(pos - 0.5).to(torch.int64)][valid]))  # a tie: the earlier frame
        if not out:
            return rows[:0], p[:0], t[:0], face[:0]
        return tuple(torch.cat(parts) for parts in zip(*out, strict=True))  # type: ignore[return-value]

    def _unique_frames(self, face_only: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Rows, preds and targets of the scored frames (only those with a face: ``face_only``)."""
        rows, p, t, face = self._scored_frames()
        return (rows[face], p[face], t[face]) if face_only else (rows, p, t)

    def _ccc(self, p: Tensor, t: Tensor, groups: Tensor | None = None, num_groups: int | None = None) -> Tensor:
        """:func:`concordance_cc`, each dimension over the rows where its label is valid (an
        annotation may carry one dimension only: NaN in the other)."""
        if bool(torch.isfinite(t).all()):
            return concordance_cc(p, t, groups=groups, num_groups=num_groups, zero_division=self.zero_division)
        cols = []
        for d in range(t.shape[1]):
            m = torch.isfinite(t[:, d])
            cols.append(concordance_cc(p[m, d:d + 1], t[m, d:d + 1], groups=None if groups is None else groups[m],
                                       num_groups=num_groups, zero_division=self.zero_division))
        return torch.cat(cols, dim=-1)

    def _per_video(self, rows: Tensor, p: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        if rows.shape[0] == 0:
            return rows[:, 0], torch.empty(0, self.num_outputs, dtype=torch.float64, device=rows.device)
        groups, g = torch.unique(rows[:, 0], return_inverse=True)
        return groups, self._ccc(p, t, g, groups.numel())

    def _mean_of_videos(self, per_seq: Tensor) -> Tensor:
        return _defined(per_seq.nanmean(0) if per_seq.shape[0] else per_seq.sum(0) * float("nan"), self.zero_division)

    def summary(self) -> dict[str, Tensor]:
        """Every figure an epoch logs from one gather and one stitch: ``pooled`` and ``per_video``
        (D,) over every scored frame, ``face_pooled`` (D,) over those with a face, and
        ``face_coverage`` (0-d)."""
        with self._gathered():
            rows, p, t, face = self._scored_frames()
        coverage = face.to(torch.float64).mean() if face.numel() else torch.tensor(float("nan"), device=self.device)
        return {"pooled": _defined(self._ccc(p, t), self.zero_division),
                "per_video": self._mean_of_videos(self._per_video(rows, p, t)[1]),
                "face_pooled": _defined(self._ccc(p[face], t[face]), self.zero_division),
                "face_coverage": _defined(coverage, self.zero_division)}

    def _gathered(self):
        """Every rank's frames under DDP, as ``compute()`` sees them (a no-op in one process,
        and inside ``compute()``, which has gathered them already)."""
        fresh = not self._is_synced
        return self.sync_context(should_sync=fresh, should_unsync=fresh)

    def compute_pooled(self, face_only: bool = False) -> Tensor:
        """CCC pooled over every distinct scored frame (D,): what :class:`ConcordanceCC` gives
        on the same data seen once, but immune to DistributedSampler padding and window overlap."""
        with self._gathered():
            _, p, t = self._unique_frames(face_only)
        return _defined(self._ccc(p, t), self.zero_division)

    def compute_per_sequence(self, face_only: bool = False) -> tuple[Tensor, Tensor]:
        """Video keys (G,) and their CCC (G, D), after deduplication (``nan`` for a video with
        fewer than 2 scored frames)."""
        with self._gathered():
            rows, p, t = self._unique_frames(face_only)
        return self._per_video(rows, p, t)

    def face_coverage(self) -> Tensor:
        """Share of the scored frames that show a face (0-d; ``zero_division`` if none is scored)."""
        return self.summary()["face_coverage"]

    def compute(self, face_only: bool = False) -> Tensor:
        """Mean of the videos' CCC (videos with fewer than 2 scored frames left out)."""
        return self._mean_of_videos(self.compute_per_sequence(face_only)[1])
