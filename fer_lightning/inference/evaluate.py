"""``fer-lightning evaluate``: score a fine-tuned checkpoint the way affect papers report it.

    fer-lightning evaluate --ckpt runs/.../best.ckpt [--config experiments/finetune_recola.yaml]
                           [--split test] [--dev_split val] [--out DIR]

Runs the model over every evaluation window of the development and the evaluated split
(overlapping windows averaged per frame, as in validation). Every labelled frame is scored, as
the challenges score: a frame without a face is predicted from the face frames around it
(``--faceless``, the checkpoint's rule by default; see :mod:`fer_lightning.metrics.faceless`),
and corpora annotated in time are scored at their annotation times. The report gives per
dimension the pooled CCC, Pearson's r and RMSE, the mean and each video's CCC, and the
figures per subject; the share of scored frames that show a face, and the CCC of those frames
alone as a second column; raw, and after AVEC-style post-processing fitted on the development split (delay
compensation, median or Savitzky-Golay smoothing, bias and scale correction; see
:mod:`fer_lightning.evaluation.postprocess`). Writes ``evaluation.json``, ``evaluation.md`` (printed too),
``postprocess_search.png`` (development CCC against delay and smoothing window),
``subjects.png`` and ``traces_<split>.png`` into ``--out`` (default: beside the checkpoint),
and the scored split's final predictions in the challenges' formats: ``predictions_abaw/``
(one txt per video, every frame) and, for a corpus annotated in time, ``predictions_label_rate/``
(one csv per recording at its annotation times).

The data are the checkpoint's own (its datamodule's settings); ``--config`` files (experiment
files and presets) and ``--data.KEY=VALUE`` overrides are layered on top of them exactly as
``fit`` layers them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fer_lightning.evaluation.collect import FrameCollector
from fer_lightning.evaluation.postprocess import (
    PostProcessor,
    SearchSpace,
    VideoTrace,
    face_coverage,
    face_frames_only,
    scores,
)
from fer_lightning.io import atomic_path, write_text_atomic


def data_settings(data: dict) -> dict:
    """The datamodule's arguments for scoring: ``data`` (a checkpoint's data settings, or those
    layered on it) with augmentation off and no corpus made up."""
    args = dict(data)
    if not args.get("root"):
        raise ValueError("the checkpoint names no data; pass --config (an experiment file) or --data.root")
    args["generate_if_missing"] = False  # evaluation never makes up a corpus
    args["augment"] = False
    return args


@torch.no_grad()
def predict_split(model, datamodule, split: str, device: torch.device, progress: bool = True,
                  precision: str = "32-true", faceless: str = "interpolate") -> dict[str, VideoTrace]:
    """Per-frame predictions (every frame; those without a face filled by ``faceless``),
    targets, scored frames and face frames of every video of ``split``; the model runs at
    ``precision`` (a trainer precision name: ``bf16-mixed`` autocasts)."""
    from tqdm.auto import tqdm

    from fer_lightning.inference.predict import inference_autocast

    loader = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()
    records = {r.video_id: r for r in datamodule.split_records(split)}
    frames = FrameCollector()
    model.to(device).eval()
    for batch in tqdm(loader, desc=f"predict {split}", unit="batch", disable=not progress):
        inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k in ("frames", "features")}
        with inference_autocast(device, precision):
            preds = model.predict_batch(inputs)
        frames.add(batch["video_id"], batch["frame_index"].numpy(), batch["labelled"].numpy(),
                   preds.float().cpu().numpy(), batch["targets"].numpy(), batch["has_face"].numpy())
    out = {}
    for vid, (_, mask, pred, true, face) in frames.stitched(faceless).items():
        true = true.astype(np.float64)
        true[~mask] = np.nan
        rec = records[vid]
        out[vid] = VideoTrace(pred=pred, true=true, mask=mask, fps=float(rec.fps), subject=str(rec.subject),
                              has_face=face)
    return out


def evaluate(ckpt: str | Path, split: str = "test", dev_split: str = "val",
             data: Callable[[dict], dict] | None = None, out: str | Path | None = None,
             space: SearchSpace | None = None, device: str = "auto", num_workers: int | None = None,
             progress: bool = True, precision: str = "32-true", faceless: str | None = None) -> dict:
    """Evaluate ``ckpt`` on ``split`` (see the module docs); returns what evaluation.json holds.
    ``data`` turns the checkpoint's data settings into those used (the command line layers
    experiment files and overrides on them); None: the checkpoint's own. ``faceless``: how
    frames without a face are predicted (None: as the checkpoint's model scores them)."""
    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.inference.predict import resolve_device
    from fer_lightning.models.checkpoint import load_checkpoint_model

    model, ckpt_data = load_checkpoint_model(ckpt)
    if not model.objective.continuous:
        raise ValueError(f"{ckpt} is a {model.task} checkpoint (emotion classes); evaluate scores continuous "
                         "affect (a finetune checkpoint); use `fer-lightning test --config ... --ckpt_path ...`")
    args = data_settings(data(ckpt_data) if data is not None else ckpt_data)
    if num_workers is not None:
        args["num_workers"] = num_workers
    args["task"], args["target_names"] = "finetune", list(model.target_names)
    dm = AffectDataModule(**args)
    dm.encoder_loader = model.load_frozen_encoder  # data.feature_cache: features of the model's own encoder
    dm.setup("test")
    run_on = resolve_device(device)
    names = list(model.target_names)
    faceless = faceless or model.objective.faceless
    dev = predict_split(model, dm, dev_split, run_on, progress, precision, faceless)
    test = dev if split == dev_split else predict_split(model, dm, split, run_on, progress, precision, faceless)
    post = PostProcessor.fit(dev, names, space)
    final = {dev_split: post.apply(dev), split: post.apply(test)}
    result = {
        "checkpoint": str(ckpt), "split": split, "dev_split": dev_split, "targets": names, "precision": precision,
        "data": {k: args.get(k) for k in ("root", "dataset", "dataset_args", "face_store", "clip_len", "image_size")},
        "videos": {split: len(test), dev_split: len(dev)},
        "skipped_videos": dm.skip_reasons,
        "scoring": {"frames": "every labelled frame (corpora annotated in time: at their annotation times)",
                    "faceless": faceless,
                    "face_coverage": {dev_split: face_coverage(dev), split: face_coverage(test)}},
        "raw": {dev_split: scores(dev, names), split: scores(test, names)},
        "postprocessed": {dev_split: scores(final[dev_split], names), split: scores(final[split], names)},
        "face_frames_only": {
            "raw": {dev_split: scores(face_frames_only(dev), names), split: scores(face_frames_only(test), names)},
            "postprocessed": {k: scores(face_frames_only(v), names) for k, v in final.items()}},
        "postprocess": post.as_dict(),
        "steps": {split: _step_scores(post, test, names), dev_split: _step_scores(post, dev, names)},
    }
    if split == dev_split:
        result["warning"] = (f"post-processing was fitted on {dev_split} and scored on it too: its gains are "
                             "optimistic; evaluate another split for a fair figure")
    out = Path(out) if out else Path(ckpt).parent / f"evaluate-{Path(ckpt).stem}-{split}"
    out.mkdir(parents=True, exist_ok=True)
    predictions = write_prediction_files(post.apply(test), dm.split_records(split), out, names)
    result["files"] = write_outputs(result, post, test, out, names, predictions)
    return result


def write_prediction_files(final: dict[str, VideoTrace], records, out: Path, names: list[str]) -> dict:
    """The scored split's final (post-processed) per-frame predictions in the challenges'
    formats (:mod:`fer_lightning.evaluation.formats`): ABAW's per-frame txt files always, and
    per-recording files at the annotation times for a corpus annotated in time."""
    from fer_lightning.evaluation.formats import write_abaw_va, write_label_rate

    by_id = {r.video_id: r for r in records}
    files = {"predictions_abaw": str(out / "predictions_abaw")}
    write_abaw_va(out / "predictions_abaw", {vid: s.pred for vid, s in final.items()}, names)
    timed = {vid: r.extra["timed_labels"].columns[0][0] for vid, r in by_id.items() if "timed_labels" in r.extra}
    if timed:
        frame_times = {vid: np.asarray(by_id[vid].extra.get("frame_times", np.arange(len(s.pred)) / s.fps))
                       for vid, s in final.items()}
        write_label_rate(out / "predictions_label_rate", {vid: (frame_times[vid], s.pred) for vid, s in final.items()},
                         timed, names)
        files["predictions_label_rate"] = str(out / "predictions_label_rate")
    return files


def _step_scores(post: PostProcessor, seqs: dict[str, VideoTrace], names: list[str]) -> dict:
    """Pooled CCC per dimension after each post-processing step in turn."""
    out = {"raw": {n: v["ccc"] for n, v in scores(seqs, names).items()}}
    for step in ("delay", "smoothing", "bias", "scale"):
        out[step] = {n: v["ccc"] for n, v in scores(post.apply(seqs, upto=step), names).items()}
    return out


def markdown(result: dict) -> str:
    """The report's tables: per dimension raw vs post-processed, the fitted steps, per subject."""
    split, dev = result["split"], result["dev_split"]
    lines = [f"# Evaluation of {result['checkpoint']} on {split} ({result['videos'][split]} videos)", ""]
    if "warning" in result:
        lines += [f"> {result['warning']}", ""]
    scoring = result["scoring"]
    lines += [f"Every labelled frame is scored; {scoring['face_coverage'][split]:.1%} of them show a face, the "
              f"others are predicted by `{scoring['faceless']}` from the face frames around them. The last column "
              "scores the face frames alone.", "",
              "| dimension | scoring | CCC | CCC per video (mean) | Pearson r | RMSE | frames | CCC (face frames only) |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name in result["targets"]:
        for kind in ("raw", "postprocessed"):
            s = result[kind][split][name]
            face = result["face_frames_only"][kind][split][name]["ccc"]
            lines.append(f"| {name} | {kind} | {s['ccc']:.3f} | {s['seq_ccc_mean']:.3f} | {s['pearson']:.3f} | "
                         f"{s['rmse']:.3f} | {s['frames']} | {face:.3f} |")
    lines += ["", f"Post-processing fitted on {dev} (each step kept only if it raised {dev} CCC):", "",
              "| dimension | delay (s) | smoothing | window (s) | bias | scale | CCC raw -> delay -> smoothing -> bias -> scale |",
              "|---|---:|---|---:|---:|---:|---|"]
    for name, p in result["postprocess"].items():
        chain = " -> ".join(f"{result['steps'][split][k][name]:.3f}" for k in ("raw", "delay", "smoothing", "bias", "scale"))
        lines.append(f"| {name} | {p['delay_s']:.2f} | {p['smoothing'] or 'none'} | {p['window_s']:.2f} | "
                     f"{p['bias']:+.3f} | {p['scale']:.3f} | {split}: {chain} |")
    lines += ["", f"Per subject ({split}, post-processed; raw CCC in brackets):", "",
              "| subject | " + " | ".join(f"CCC {n} | r {n} | RMSE {n}" for n in result["targets"]) + " |",
              "|---|" + "---:|---:|---:|" * len(result["targets"])]
    subjects = sorted({s for n in result["targets"] for s in result["postprocessed"][split][n]["per_subject"]})
    for subj in subjects:
        cells = []
        for n in result["targets"]:
            post = result["postprocessed"][split][n]["per_subject"].get(subj)
            raw = result["raw"][split][n]["per_subject"].get(subj)
            cells.append(f"{post['ccc']:.3f} ({raw['ccc']:.3f}) | {post['pearson']:.3f} | {post['rmse']:.3f}"
                         if post and raw else "- | - | -")
        lines.append(f"| {subj} | " + " | ".join(cells) + " |")
    if result["skipped_videos"]:
        lines += ["", f"Skipped videos: {len(result['skipped_videos'])} ("
                  + "; ".join(f"{k}: {v}" for k, v in list(result["skipped_videos"].items())[:10]) + ")"]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, post: PostProcessor, test: dict[str, VideoTrace], out: Path, names: list[str],
                  more_files: dict | None = None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fer_lightning.training.callbacks import plot_traces

    split, dev = result["split"], result["dev_split"]
    files = {"json": str(out / "evaluation.json"), "markdown": str(out / "evaluation.md"),
             "search_plot": str(out / "postprocess_search.png"), "subjects_plot": str(out / "subjects.png"),
             "traces_plot": str(out / f"traces_{split}.png"), **(more_files or {})}
    # what the search saw on the development split: CCC against delay, against smoothing window
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
    with atomic_path(files["search_plot"]) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    # per-subject CCC, raw and post-processed
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
    with atomic_path(files["subjects_plot"]) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    final = post.apply(test)
    videos = {vid: (np.arange(len(s.mask)), s.mask, final[vid].pred, np.nan_to_num(s.true), s.has_face)
              for vid, s in test.items()}
    fps = next(iter(test.values())).fps if test else None
    plot_traces(videos, names, Path(files["traces_plot"]), num_videos=1, fps=fps)
    write_text_atomic(files["markdown"], markdown(result))
    write_text_atomic(files["json"], json.dumps(result | {"files": files}, indent=1, default=float) + "\n")
    return files
