"""Every result plot of the project, written as PNG beside the numbers it shows.

Traces of predictions against labels (training's TracePlot, ``evaluate``), one video's outputs
(``predict``), what ``evaluate``'s post-processing search saw and its per-subject scores, a
sweep's runs and the pretraining ablation. matplotlib runs headless (Agg) and every file is
written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fer_lightning.io import atomic_path
from fer_lightning.metrics.faceless import face_runs
from fer_lightning.metrics.functional import concordance_cc


def pyplot():
    """matplotlib's pyplot on the headless Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path, dpi: int = 90) -> Path:
    """Write ``fig`` to ``path`` as PNG (atomically) and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
    return Path(path)


def plot_traces(videos: dict, names: list[str], path: Path, num_videos: int = 1, fps: float | None = None) -> Path:
    """Plot predicted vs true traces; ``videos`` maps a video to ``(frame_index, labelled,
    pred, true[, has_face])``: the true trace shows where labelled, frames without a face are
    greyed out."""
    plt = pyplot()
    chosen = list(videos.items())[:num_videos]
    fig, axes = plt.subplots(len(chosen) * len(names), 1, figsize=(11, 2.6 * len(chosen) * len(names)), squeeze=False)
    row = 0
    for vid, (idx, mask, pred, true, *face) in chosen:
        face = face[0] if face else mask
        x = idx / fps if fps else idx
        for d, name in enumerate(names):
            ax = axes[row, 0]
            row += 1
            ccc = float(concordance_cc(pred[:, d], true[:, d], mask)[0])  # the one CCC, on this rank's copy
            ax.plot(x, np.where(mask, true[:, d], np.nan), color="black", lw=1.5, label="true")
            ax.plot(x, pred[:, d], color="tab:red", lw=1.2, label="predicted")
            for start, stop in face_runs(~face):
                ax.axvspan(x[start], x[min(stop, len(x) - 1)], color="0.85", lw=0)
            ax.set_ylim(-1.1, 1.1)
            ax.set_ylabel(name)
            ax.set_title(f"{vid}: {name}, CCC {ccc:.3f} over its labelled frames (grey: no face, predicted "
                         "from the face frames around it)", fontsize=10)
            ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)" if fps else "frame")
    fig.tight_layout()
    return save_png(fig, path)


def plot_prediction(path: str | Path, times: np.ndarray, has: np.ndarray, values: np.ndarray, names: list[str],
                    title: str) -> Path:
    """One video's per-frame outputs against time (``fer-lightning predict``); frames without a
    face greyed out."""
    plt = pyplot()
    probabilities = all(n.startswith("p_") for n in names)
    fig, ax = plt.subplots(1, 1, figsize=(11, 3.2))
    for d, name in enumerate(names):
        ax.plot(times, values[:, d], lw=1.2, label=name)
    for a, b in face_runs(~has):
        ax.axvspan(times[a], times[min(b, len(times) - 1)], color="0.85", lw=0)
    ax.set_ylim((-0.05, 1.05) if probabilities else (-1.1, 1.1))
    ax.set_xlabel("time (s)")
    ax.set_title(f"{title}; grey: no face", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, ncol=min(len(names), 4))
    fig.tight_layout()
    return save_png(fig, path)


def plot_postprocess_search(post, names: list[str], dev: str, path: Path) -> Path:
    """What ``evaluate``'s post-processing search saw on the development split ``dev``: CCC
    against the prediction delay and against the smoothing window, the chosen values marked."""
    plt = pyplot()
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 3.0 * len(names)), squeeze=False)
    for d, name in enumerate(names):
        c = post.curves[name]
        ax = axes[d, 0]
        ax.plot(c["delay_s"], c["delay_ccc"], color="tab:blue")
        ax.axvline(post.dims[d].delay_s, color="tab:red", ls="--", label=f"chosen {post.dims[d].delay_s:.2f} s")
        ax.set_xlabel("prediction delay (s)")
        ax.set_ylabel(f"{dev} CCC {name}")
        ax.legend(fontsize=8)
        ax = axes[d, 1]
        for method, curve in c["smoothing"].items():
            ax.plot(curve["window_s"], curve["ccc"], marker="o", ms=3, label=method)
        ax.axhline(post.dims[d].dev_ccc["delay"], color="0.5", ls=":", label="no smoothing")
        ax.set_xlabel("smoothing window (s), after the delay")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def plot_subject_ccc(result: dict, names: list[str], split: str, path: Path) -> Path:
    """``evaluate``'s CCC per subject of ``split``, raw and post-processed."""
    plt = pyplot()
    subjects = sorted({s for n in names for s in result["raw"][split][n]["per_subject"]})
    fig, axes = plt.subplots(1, len(names), figsize=(max(6, 0.5 * len(subjects) * len(names) + 3), 3.2), squeeze=False)
    x = np.arange(len(subjects))
    for d, name in enumerate(names):
        ax = axes[0, d]
        for k, (kind, colour) in enumerate((("raw", "tab:gray"), ("postprocessed", "tab:green"))):
            per = result[kind][split][name]["per_subject"]
            ax.bar(x + (k - 0.5) * 0.4, [per.get(s, {}).get("ccc", np.nan) for s in subjects], 0.4, color=colour, label=kind)
        ax.set_xticks(x, subjects, rotation=90, fontsize=7)
        ax.set_title(f"{split}: CCC {name} per subject", fontsize=10)
        ax.set_ylim(-0.2, 1.0)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def plot_sweep_results(results: list[dict], keys: list[str], metric: str, goal: str, path: Path, title: str) -> Path:
    """A sweep's runs: each run's ``metric`` as a bar labelled with its parameters, the best one
    (``goal``: maximize or minimize) in orange."""
    plt = pyplot()
    scores = [r[metric] if r[metric] is not None else float("nan") for r in results]
    finished = [i for i, score in enumerate(scores) if score == score]  # NaN: the run logged no score
    best = (max if goal == "maximize" else min)(finished, key=scores.__getitem__) if finished else -1
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(results) + 2), 3.5))
    ax.bar(range(len(scores)), scores, color=["tab:orange" if i == best else "tab:blue" for i in range(len(scores))])
    params = [k for k in keys if k not in ("run_id", "exit_code", metric, "run_file")]
    ax.set_xticks(range(len(scores)), ["\n".join(f"{k.split('.')[-1]}={_short(r[k])}" for k in params) for r in results],
                  fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title(f"{title}: {len(results)} runs" + (f", best {results[best]['run_id']}" if best >= 0 else ""), fontsize=9)
    fig.tight_layout()
    return save_png(fig, path, dpi=120)


def plot_ablation(rows: list[dict], path: Path) -> Path:
    """``fer-lightning ablation``: test CCC of pretrained against from-scratch fine-tuning, mean and
    spread over seeds, each seed a dot."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.5), sharey=True)
    for ax, m in zip(axes, ("ccc_valence", "ccc_arousal", "ccc_mean"), strict=True):
        for x, cond in enumerate(("scratch", "pretrained")):
            v = np.array([r[m] for r in rows if r["condition"] == cond])
            if not len(v):
                continue
            ax.bar(x, v.mean(), yerr=v.std(ddof=1) if len(v) > 1 else 0, color=("#999", "#c33")[x], alpha=0.6,
                   capsize=4)
            ax.scatter(np.full(len(v), x), v, color="k", s=12, zorder=3)
        ax.set_xticks([0, 1], ["from scratch", "pretrained"])
        ax.set_title(m.replace("ccc_", "test CCC "))
        ax.axhline(0, color="k", lw=0.5)
    fig.suptitle("Fine-tuning on few subjects: pretrained face extractor vs from scratch (mean ± sd, dots: seeds)")
    fig.tight_layout()
    return save_png(fig, path, dpi=110)


def plot_route_comparison(rows: list[dict], path: Path) -> Path:
    """``fer-lightning compare-pretraining``: test CCC per pretraining route (x) and temporal
    model (bars side by side), mean and sd over seeds, each seed a dot."""
    plt = pyplot()
    routes = list(dict.fromkeys(r["route"] for r in rows))
    temporals = list(dict.fromkeys(r["temporal"] for r in rows))
    width = 0.8 / len(temporals)
    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, 3, figsize=(4 + 1.6 * len(routes) * 3 / 2, 3.8), sharey=True)
    for ax, m in zip(axes, ("ccc_valence", "ccc_arousal", "ccc_mean"), strict=True):
        for j, temporal in enumerate(temporals):
            for x, route in enumerate(routes):
                v = np.array([r[m] for r in rows if r["route"] == route and r["temporal"] == temporal])
                if not len(v):
                    continue
                pos = x - 0.4 + width * (j + 0.5)
                ax.bar(pos, v.mean(), width, yerr=v.std(ddof=1) if len(v) > 1 else 0, color=colours[j % 10],
                       alpha=0.6, capsize=3, label=temporal if x == 0 else None)
                ax.scatter(np.full(len(v), pos), v, color="k", s=8, zorder=3)
        ax.set_xticks(range(len(routes)), routes, rotation=30, ha="right")
        ax.set_title(m.replace("ccc_", "test CCC "))
        ax.axhline(0, color="k", lw=0.5)
    axes[0].legend(title="temporal", fontsize=8)
    fig.suptitle("Pretraining routes on identities never seen in fine-tuning (mean ± sd over seeds, dots: seeds)")
    fig.tight_layout()
    return save_png(fig, path, dpi=110)


def _short(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, float) else str(value)
