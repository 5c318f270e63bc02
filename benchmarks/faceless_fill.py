"""How to predict the labelled frames where no face was found: measured, not assumed.

The challenges score every labelled frame, also those in which the face detector found no face
(the face left the picture, turned away, was hidden). This benchmark makes a synthetic corpus
in which every video holds such a stretch (0.4 to 1.2 s) and, like RECOLA, labels it; trains a
small model (``--epochs`` on the CPU); predicts the validation and test splits once; and scores
every labelled frame with each rule of :mod:`fer_lightning.metrics.faceless`: ``interpolate``
(between the nearest face frames' predictions), ``hold`` (the last face frame's) and ``model``
(the model's output on the black frame). Repeated for ``--seeds`` (corpus and training seed).

Prints one JSON line: per seed and split the pooled CCC (mean of valence and arousal) of each
rule on the faceless frames alone and on every labelled frame, the face-only CCC, the face
coverage, and the judged ratio: the mean over seeds and splits of the RMSE on the faceless
frames, ``interpolate`` over ``model`` (below 1: interpolation errs less). Writes
``faceless_fill.png`` (one video's faceless stretch under each rule) beside ``--out``.

    python benchmarks/faceless_fill.py [--seeds 0 1] [--epochs 8] [--out runs/bench/faceless]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from fer_lightning.metrics.faceless import FACELESS, fill_video
from fer_lightning.metrics.functional import ccc


def train(root: Path, seed: int, epochs: int, work: Path):
    import lightning as L

    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.models import AffectModule

    L.seed_everything(seed, workers=True)
    dm = AffectDataModule(root=str(root), clip_len=16, image_size=48, batch_size=16, num_workers=1, augment=False,
                          seed=seed, generate_if_missing=False)
    model = AffectModule(lr=2e-3, warmup_steps=20, net=dict(backbone="resnet10t", hidden_size=32, num_layers=1, dropout=0.0))
    trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, default_root_dir=work)
    trainer.fit(model, datamodule=dm)
    return model, dm


def scores(traces: dict, method: str) -> dict:
    """Pooled CCC (mean over dimensions) of the faceless and of all labelled frames."""
    faceless_p, faceless_t, all_p, all_t = [], [], [], []
    for s in traces.values():
        idx = np.arange(len(s.mask))
        pred = fill_video(idx, s.pred, s.has_face, method)
        scored = s.mask
        gone = scored & ~s.has_face
        faceless_p.append(pred[gone]), faceless_t.append(s.true[gone])
        all_p.append(pred[scored]), all_t.append(s.true[scored])
    fp, ft, ap, at = (np.concatenate(x) for x in (faceless_p, faceless_t, all_p, all_t))
    return {"faceless_frames": float(np.mean([ccc(fp[:, d], ft[:, d]) for d in range(fp.shape[1])])),
            "faceless_rmse": float(np.sqrt(np.mean((fp - ft) ** 2))),
            "every_labelled_frame": float(np.mean([ccc(ap[:, d], at[:, d]) for d in range(ap.shape[1])]))}


def plot(traces: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vid, s = next((v, s) for v, s in sorted(traces.items()) if not s.has_face.all())
    gone = np.flatnonzero(~s.has_face)
    lo, hi = max(0, gone[0] - 50), min(len(s.mask), gone[-1] + 50)
    x = np.arange(lo, hi) / s.fps
    fig, axes = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    for d, name in enumerate(("valence", "arousal")):
        ax = axes[d]
        ax.axvspan(gone[0] / s.fps, gone[-1] / s.fps, color="0.88", lw=0, label="no face")
        ax.plot(x, s.true[lo:hi, d], color="black", lw=1.6, label="true")
        for method, colour in zip(FACELESS, ("tab:green", "tab:blue", "tab:red"), strict=True):
            idx = np.arange(len(s.mask))
            pred = fill_video(idx, s.pred, s.has_face, method)
            ax.plot(x, pred[lo:hi, d], color=colour, lw=1.1, label=method)
        ax.set_ylabel(name)
        ax.legend(fontsize=8, ncol=5, loc="upper right")
    axes[0].set_title(f"{vid}: predictions over a stretch without a face, per rule", fontsize=10)
    axes[1].set_xlabel("time (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--videos", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--out", default="runs/bench/faceless")
    args = ap.parse_args()

    from tqdm.auto import tqdm

    from fer_lightning.corpora.synthetic.generator import SynthConfig, generate_corpus
    from fer_lightning.inference.evaluate import predict_split

    torch.set_num_threads(max(1, torch.get_num_threads()))
    results, ratios = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in tqdm(args.seeds, desc="seeds (corpus, training, scoring)", unit="seed", file=sys.stderr):
            root = Path(tmp) / f"corpus{seed}"
            generate_corpus(SynthConfig(videos=args.videos, seconds=args.seconds, fps=25.0, seed=100 + seed, size=128,
                                        faceless_prob=1.0, label_faceless=True), root, progress=False)
            model, dm = train(root, seed, args.epochs, Path(tmp) / f"run{seed}")
            dm.setup("test")
            per_split = {}
            for split in ("val", "test"):
                traces = predict_split(model, dm, split, torch.device("cpu"), progress=False, faceless="model")
                by_rule = {m: scores(traces, m) for m in FACELESS}
                face = face_only(traces)
                covered = sum(int((s.mask & s.has_face).sum()) for s in traces.values())
                total = sum(int(s.mask.sum()) for s in traces.values())
                per_split[split] = {"videos": len(traces), "face_coverage": round(covered / total, 4),
                                    "face_only_ccc": round(face, 4),
                                    **{m: {k: round(v, 4) for k, v in r.items()} for m, r in by_rule.items()}}
                ratios.append(by_rule["interpolate"]["faceless_rmse"] / by_rule["model"]["faceless_rmse"])
                if seed == args.seeds[0] and split == "test":
                    plot(traces, Path(args.out) / "faceless_fill.png")
            results[f"seed{seed}"] = per_split
    print(json.dumps({
        "benchmark": "faceless_fill",
        "corpus": f"synthetic, {args.videos} videos x {args.seconds} s at 25 fps, one faceless stretch of 0.4-1.2 s "
                  "per video, labelled throughout",
        "model": f"resnet10t + LSTM(32), 48 px, {args.epochs} epochs on the CPU",
        "results": results,
        "mean_every_labelled_frame": {m: round(float(np.mean([r[m]["every_labelled_frame"] for seed in results.values()
                                                              for r in seed.values()])), 4) for m in FACELESS},
        "ratio_interpolate_over_model_faceless_rmse": round(float(np.mean(ratios)), 3),
        "plot": str(Path(args.out) / "faceless_fill.png"),
    }))


def face_only(traces: dict) -> float:
    p = np.concatenate([s.pred[s.mask & s.has_face] for s in traces.values()])
    t = np.concatenate([s.true[s.mask & s.has_face] for s in traces.values()])
    return float(np.mean([ccc(p[:, d], t[:, d]) for d in range(p.shape[1])]))


if __name__ == "__main__":
    main()
