"""CCC metric cost: ours (masked, float64 sufficient statistics) vs torchmetrics' ConcordanceCorrCoef.

Prints one JSON line. Both metrics see the same 10M frames x 2 outputs (float32) in chunks of
``--chunk`` frames, the way a validation loop feeds them; the judged figure is the ratio of
our update+compute time to torchmetrics' (below 1 means ours is faster). Also reports the
largest difference after correcting torchmetrics' n-1 moments, as a correctness check.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torchmetrics.regression import ConcordanceCorrCoef

from fer_lightning.metrics import ConcordanceCC


def run(metric, preds, target, chunk: int) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    for i in range(0, preds.shape[0], chunk):
        metric.update(preds[i : i + chunk], target[i : i + chunk])
    value = metric.compute()
    return time.perf_counter() - start, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=10_000_000)
    ap.add_argument("--chunk", type=int, default=65_536)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    target = torch.rand(args.frames, 2, generator=g) * 2 - 1
    preds = 0.8 * target + 0.3 * torch.randn(args.frames, 2, generator=g)
    ours_t, theirs_t = [], []
    for _ in range(args.repeats):
        t, ours = run(ConcordanceCC(2), preds, target, args.chunk)
        ours_t.append(t)
        t, theirs = run(ConcordanceCorrCoef(num_outputs=2), preds, target, args.chunk)
        theirs_t.append(t)
    n = args.frames
    k = n / (n - 1)  # their n-1 moments -> population moments, via our own statistics
    p, q = preds.double(), target.double()
    mp, mq = p.mean(0), q.mean(0)
    cov, vp, vq = ((p - mp) * (q - mq)).mean(0), p.var(0, correction=0), q.var(0, correction=0)
    theirs_expected = 2 * cov * k / ((vp + vq) * k + (mp - mq) ** 2)
    print(json.dumps({
        "benchmark": "ccc_metric",
        "frames": n,
        "outputs": 2,
        "chunk": args.chunk,
        "ours_s": round(min(ours_t), 4),
        "torchmetrics_s": round(min(theirs_t), 4),
        "ratio_ours_over_torchmetrics": round(min(ours_t) / min(theirs_t), 3),
        "ours_ccc": [round(float(v), 6) for v in ours],
        "torchmetrics_ccc": [round(float(v), 6) for v in theirs],
        "torchmetrics_max_abs_err_vs_float64": float((theirs.double() - theirs_expected).abs().max()),
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
