"""The concordance correlation coefficient (Lin, 1989) as functions: the one CCC of the project.

CCC = 2 cov(p, t) / (var(p) + var(t) + (mean(p) - mean(t))^2), with population (ddof=0)
moments as the AVEC and ABAW scorers use. The metrics (:mod:`fer_lightning.metrics.ccc`),
evaluation and post-processing all compute it here, with one rule for the edge cases:

- fewer than 2 frames: undefined, ``nan`` (a per-video mean leaves such a video out);
- a zero denominator (predictions and targets both constant and equal): ``zero_division``
  (default 0.0: no evidence of agreement).

Moments are taken in float64 about the mean (two passes) when the frames are at hand, and from
running sums when only those are kept (:func:`ccc_from_sums`, the streaming metric's state).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def flatten_frames(preds: Tensor, target: Tensor, mask: Tensor | None = None
                   ) -> tuple[Tensor, Tensor, Tensor | None]:
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


def ccc_from_moments(n: Tensor, mean_p: Tensor, mean_t: Tensor, var_p: Tensor, var_t: Tensor, cov: Tensor,
                     zero_division: float = 0.0) -> Tensor:
    """CCC from frame counts and population moments (broadcast together), under the module's
    rule: ``nan`` below 2 frames, ``zero_division`` where the denominator is 0."""
    denom = var_p + var_t + (mean_p - mean_t) ** 2
    ok = denom > 0
    value = 2 * cov / torch.where(ok, denom, torch.ones_like(denom))
    value = torch.where(ok, value, torch.full_like(value, zero_division))
    return torch.where(n >= 2, value, torch.full_like(value, float("nan")))


def ccc_from_sums(n: Tensor, sum_p: Tensor, sum_t: Tensor, sum_pp: Tensor, sum_tt: Tensor, sum_pt: Tensor,
                  zero_division: float = 0.0) -> Tensor:
    """CCC from running sums of p, t, p², t² and p·t over ``n`` frames (float64 advised)."""
    safe_n = torch.clamp(n, min=1)
    mp, mt = sum_p / safe_n, sum_t / safe_n
    var_p = torch.clamp(sum_pp / safe_n - mp**2, min=0)
    var_t = torch.clamp(sum_tt / safe_n - mt**2, min=0)
    return ccc_from_moments(n, mp, mt, var_p, var_t, sum_pt / safe_n - mp * mt, zero_division)


def concordance_cc(preds: Tensor | np.ndarray, target: Tensor | np.ndarray, mask: Tensor | np.ndarray | None = None,
                   groups: Tensor | np.ndarray | None = None, num_groups: int | None = None,
                   zero_division: float = 0.0) -> Tensor:
    """CCC per output dimension, in float64 on the input's device.

    ``preds``/``target``: (N,), (N, D) or (B, T, D) (numpy arrays are taken as they are);
    ``mask`` (N,) or (B, T) keeps frames. Returns (D,), or with ``groups`` (N,) integer ids in
    ``[0, num_groups)`` the CCC of each group, (G, D). A group or split with fewer than 2 frames
    is ``nan``; see the module docs for the rule.
    """
    preds, target = torch.as_tensor(preds), torch.as_tensor(target)
    p, t, m = flatten_frames(preds, target, None if mask is None else torch.as_tensor(mask))
    p, t = p.to(torch.float64), t.to(torch.float64)
    if groups is None:
        g = torch.zeros(p.shape[0], dtype=torch.int64, device=p.device)
        num_groups = 1
    else:
        g = torch.as_tensor(groups, device=p.device).reshape(-1).to(torch.int64)
        num_groups = int(g.max().item()) + 1 if num_groups is None and g.numel() else (num_groups or 0)
    if m is not None:
        p, t, g = p[m], t[m], g[m]

    def per_group(x: Tensor) -> Tensor:
        return torch.zeros(num_groups, x.shape[1], dtype=torch.float64, device=x.device).index_add_(0, g, x)

    n = per_group(torch.ones_like(p))
    safe_n = torch.clamp(n, min=1)
    mean_p, mean_t = per_group(p) / safe_n, per_group(t) / safe_n
    dp, dt = p - mean_p[g], t - mean_t[g]
    out = ccc_from_moments(n, mean_p, mean_t, per_group(dp * dp) / safe_n, per_group(dt * dt) / safe_n,
                           per_group(dp * dt) / safe_n, zero_division)
    return out[0] if groups is None else out


def ccc(pred: np.ndarray, true: np.ndarray) -> float:
    """The CCC of two 1-D arrays as a float (``nan`` below 2 frames): for numpy callers."""
    return float(concordance_cc(np.asarray(pred, np.float64), np.asarray(true, np.float64))[0])


def ccc_loss(preds: Tensor, target: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Differentiable 1 - CCC, averaged over output dimensions, pooled over masked frames.

    Accepts the shapes of :func:`concordance_cc`; computes in at least float32 so that bf16
    activations do not ruin the moments; ``eps`` in the denominator keeps the gradient finite
    where the rule above says ``zero_division``. Returns 0 (still attached to the graph) when
    the mask leaves no frame.
    """
    p, t, m = flatten_frames(preds, target, mask)
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
    return 1.0 - (2 * cov / (var_p + var_t + (mp - mt) ** 2 + eps)).mean()
