"""Concordance correlation coefficient (Lin, 1989): the metric and the training loss.

CCC = 2 cov(p, t) / (var(p) + var(t) + (mean(p) - mean(t))^2), with population (ddof=0)
moments as the AVEC and ABAW scorers use.

Why not ``torchmetrics.ConcordanceCorrCoef``: it has no mask, rejects (B, T, D) input,
accumulates in float32 and uses n-1 variances. Ours keeps float64 sufficient statistics
summed across processes, so a DDP result equals the single-process one.

Zero division: the denominator is zero only when predictions and targets are both constant
and equal (or no frame was seen). CCC is undefined there; :class:`ConcordanceCC` returns
``zero_division`` (default 0.0: no evidence of agreement) instead of NaN.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

_MOMENTS = ("n", "sum_p", "sum_t", "sum_pp", "sum_tt", "sum_pt")


def _flatten(preds: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """(N,), (N, D) or (B, T, D) with mask (N,) or (B, T) -> (M, D) and mask (M,)."""
    if preds.shape != target.shape:
        raise ValueError(f"preds and target differ in shape: {tuple(preds.shape)} vs {tuple(target.shape)}")
    if preds.ndim == 1:
        preds, target = preds[:, None], target[:, None]
    elif preds.ndim == 3:
        preds, target = preds.reshape(-1, preds.shape[-1]), target.reshape(-1, target.shape[-1])
    elif preds.ndim != 2:
        raise ValueError(f"expected (N,), (N, D) or (B, T, D) input, got shape {tuple(preds.shape)}")
    if mask is not None:
        mask = mask.reshape(-1).to(torch.bool)
        if mask.numel() != preds.shape[0]:
            raise ValueError(f"mask has {mask.numel()} entries for {preds.shape[0]} frames")
    return preds, target, mask


def ccc_from_moments(
    mean_p: Tensor, mean_t: Tensor, var_p: Tensor, var_t: Tensor, cov: Tensor, zero_division: float = 0.0
) -> Tensor:
    """CCC from means, variances and covariance; ``zero_division`` where the denominator is 0."""
    denom = var_p + var_t + (mean_p - mean_t) ** 2
    ok = denom > 0
    value = 2 * cov / torch.where(ok, denom, torch.ones_like(denom))
    return torch.where(ok, value, torch.full_like(value, zero_division))


def _ccc_from_sums(n: Tensor, sp: Tensor, st: Tensor, spp: Tensor, stt: Tensor, spt: Tensor, zero_division: float) -> Tensor:
    safe_n = torch.clamp(n, min=1)
    mp, mt = sp / safe_n, st / safe_n
    var_p = torch.clamp(spp / safe_n - mp**2, min=0)
    var_t = torch.clamp(stt / safe_n - mt**2, min=0)
    cov = spt / safe_n - mp * mt
    out = ccc_from_moments(mp, mt, var_p, var_t, cov, zero_division)
    return torch.where(n > 0, out, torch.full_like(out, zero_division))


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
        p, t, m = _flatten(preds, target, mask)
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
        return _ccc_from_sums(self.n, self.sum_p, self.sum_t, self.sum_pp, self.sum_tt, self.sum_pt, self.zero_division)


def video_key(video_id: str) -> int:
    """A stable 63-bit integer for a video id, the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(video_id.encode(), digest_size=8).digest(), "little") >> 1


def _first_of_each(rows: Tensor) -> tuple[Tensor, Tensor]:
    """For (N, K) integer rows: each row's group among the distinct rows (N,), and the position
    of each distinct row's first occurrence (G,), distinct rows in ascending order."""
    distinct, inverse = torch.unique(rows, dim=0, return_inverse=True)
    first = torch.full((distinct.shape[0],), rows.shape[0], dtype=torch.int64, device=rows.device)
    first.scatter_reduce_(0, inverse, torch.arange(rows.shape[0], device=rows.device), reduce="amin")
    return inverse, first


class SequenceConcordanceCC(Metric):
    """Mean over videos of each video's CCC, per output dimension; :meth:`compute_pooled`
    gives the CCC pooled over all frames from the same state.

    Frames are keyed by ``(video_id, frame_index)``: a frame seen in several overlapping
    evaluation windows counts once, with the mean of those windows' predictions. A window seen
    twice (the copies a DistributedSampler pads the last batch with) counts once: windows are
    keyed by their video and first frame. Keeps every frame it sees (cat states), so use it on
    validation and test splits. States and results live on the metric's device.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_outputs: int = 1, zero_division: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_outputs = num_outputs
        self.zero_division = zero_division
        for name in ("keys", "windows", "frames", "preds", "target"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        preds: Tensor,
        target: Tensor,
        video_id: Sequence[str],
        frame_index: Tensor,
        mask: Tensor | None = None,
    ) -> None:
        """``preds``/``target`` (B, T, D); ``video_id`` B strings; ``frame_index`` (B, T)."""
        if preds.ndim != 3:
            raise ValueError(f"expected (B, T, D) input, got shape {tuple(preds.shape)}")
        b, t, d = preds.shape
        keys = torch.tensor([video_key(v) for v in video_id], dtype=torch.int64, device=preds.device)
        keys = keys[:, None].expand(b, t).reshape(-1)
        frame_index = frame_index.to(torch.int64)
        windows = frame_index[:, :1].expand(b, t).reshape(-1)  # a window is known by its first frame
        frames = frame_index.reshape(-1)
        p, tg, m = _flatten(preds, target, mask)
        keep = frames >= 0 if m is None else m & (frames >= 0)
        self.keys.append(keys[keep])
        self.windows.append(windows[keep])
        self.frames.append(frames[keep])
        self.preds.append(p.detach().to(torch.float64)[keep])
        self.target.append(tg.detach().to(torch.float64)[keep])

    def _unique_frames(self) -> tuple[Tensor, Tensor, Tensor]:
        """(video key, frame) rows (F, 2), preds (F, D) and targets (F, D), each frame once."""
        if len(self.keys) == 0:  # nothing seen (an empty list, or an empty tensor once synced)
            empty = torch.empty(0, self.num_outputs, dtype=torch.float64, device=self.device)
            return torch.empty(0, 2, dtype=torch.int64, device=self.device), empty, empty
        keys, windows, frames = dim_zero_cat(self.keys), dim_zero_cat(self.windows), dim_zero_cat(self.frames)
        p, t = dim_zero_cat(self.preds), dim_zero_cat(self.target)
        # each (window, frame) once: a padded copy of a window is not one more vote for its frames
        _, first = _first_of_each(torch.stack([keys, windows, frames], 1))
        keys, frames, p, t = keys[first], frames[first], p[first], t[first]
        # a frame predicted by several overlapping windows gets their mean (stitching)
        inverse, first = _first_of_each(torch.stack([keys, frames], 1))
        count = torch.zeros(first.numel(), dtype=torch.float64, device=p.device).index_add_(
            0, inverse, torch.ones(keys.numel(), dtype=torch.float64, device=p.device))
        mean = torch.zeros(first.numel(), p.shape[1], dtype=torch.float64, device=p.device).index_add_(0, inverse, p)
        return torch.stack([keys[first], frames[first]], 1), mean / count[:, None], t[first]

    def _gathered(self):
        """Every rank's frames under DDP, as ``compute()`` sees them (a no-op in one process,
        and inside ``compute()``, which has gathered them already)."""
        fresh = not self._is_synced
        return self.sync_context(should_sync=fresh, should_unsync=fresh)

    def compute_pooled(self) -> Tensor:
        """CCC pooled over every distinct frame (D,): what :class:`ConcordanceCC` gives on the
        same data seen once, but immune to DistributedSampler padding and window overlap."""
        with self._gathered():
            _, p, t = self._unique_frames()
        n = torch.full((self.num_outputs,), float(p.shape[0]), dtype=torch.float64, device=p.device)
        return _ccc_from_sums(n, p.sum(0), t.sum(0), (p * p).sum(0), (t * t).sum(0), (p * t).sum(0),
                              zero_division=self.zero_division)

    def compute_per_sequence(self) -> tuple[Tensor, Tensor]:
        """Video keys (G,) and their CCC (G, D), after deduplication."""
        with self._gathered():
            rows, p, t = self._unique_frames()
        if rows.shape[0] == 0:
            return rows[:, 0], torch.empty(0, self.num_outputs, dtype=torch.float64, device=rows.device)
        groups, g = torch.unique(rows[:, 0], return_inverse=True)
        sums = []
        for x in (torch.ones_like(p), p, t, p * p, t * t, p * t):
            acc = torch.zeros(groups.numel(), x.shape[1], dtype=torch.float64, device=x.device)
            sums.append(acc.index_add_(0, g, x))
        return groups, _ccc_from_sums(*sums, zero_division=self.zero_division)

    def compute(self) -> Tensor:
        _, per_seq = self.compute_per_sequence()
        if per_seq.shape[0] == 0:
            return torch.full((self.num_outputs,), self.zero_division, dtype=torch.float64, device=per_seq.device)
        return per_seq.mean(0)


def ccc_loss(preds: Tensor, target: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Differentiable 1 - CCC, averaged over output dimensions, pooled over masked frames.

    Accepts the same shapes as :class:`ConcordanceCC`; computes in at least float32 so that
    bf16 activations do not ruin the moments. Returns 0 (still attached to the graph) when the
    mask leaves no frame.
    """
    p, t, m = _flatten(preds, target, mask)
    dtype = torch.promote_types(p.dtype, torch.float32)
    p, t = p.to(dtype), t.to(dtype)
    w = torch.ones(p.shape[0], 1, dtype=dtype, device=p.device) if m is None else m.to(dtype)[:, None]
    n = w.sum()
    if n == 0:
        return p.sum() * 0.0
    mp, mt = (w * p).sum(0) / n, (w * t).sum(0) / n
    dp, dt = p - mp, t - mt
    var_p, var_t = (w * dp * dp).sum(0) / n, (w * dt * dt).sum(0) / n
    cov = (w * dp * dt).sum(0) / n
    ccc = 2 * cov / (var_p + var_t + (mp - mt) ** 2 + eps)
    return 1.0 - ccc.mean()
