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
from fer_lightning.evaluation.final import (
    Annotations,
    FramePredictions,
    final_predictions,
    videos_without_face,
)
from fer_lightning.evaluation.plots import plot_postprocess_search, plot_subject_ccc, plot_traces
from fer_lightning.evaluation.postprocess import (
    MOMENTS,
    PostProcessor,
    SearchSpace,
    VideoTrace,
    face_coverage,
    face_frames_only,
    scores,
)
from fer_lightning.io import write_text_atomic


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
def predict_frames(model, datamodule, split: str, device: torch.device, progress: bool = True,
                   precision: str = "32-true") -> dict[str, FramePredictions]:
    """The model's outputs on the frames of every video of ``split`` (overlapping windows
    averaged per frame), as it made them; ``precision``: a trainer precision name
    (``bf16-mixed`` autocasts)."""
    from tqdm.auto import tqdm

    from fer_lightning.inference.device import inference_autocast

    loader = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()
    frames = FrameCollector()
    model.to(device).eval()
    for batch in tqdm(loader, desc=f"predict {split}", unit="batch", disable=not progress):
        inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k in ("frames", "features")}
        with inference_autocast(device, precision):
            preds = model.predict_batch(inputs)
        frames.add(batch["video_id"], batch["frame_index"].numpy(), batch["labelled"].numpy(),
                   preds.float().cpu().numpy(), batch["targets"].numpy(), batch["has_face"].numpy())
    return {vid: FramePredictions(index=index, pred=pred, has_face=face)
            for vid, (index, _, pred, _, face) in frames.stitched("model").items()}


def split_annotations(datamodule, split: str, names: list[str]) -> tuple[dict[str, Annotations], dict[str, str]]:
    """Every video of ``split``: its annotations as the challenge scores them, and its subject."""
    from fer_lightning.corpora.annotations import annotations_of

    records = datamodule.split_records(split)
    found = {r.video_id: annotations_of(r, names) for r in records}
    return {vid: a for vid, a in found.items() if a is not None}, {r.video_id: str(r.subject) for r in records}


def predict_split(model, datamodule, split: str, device: torch.device, progress: bool = True,
                  precision: str = "32-true", faceless: str = "interpolate") -> dict[str, VideoTrace]:
    """The raw final predictions of every annotation of ``split`` with their labels
    (:func:`~fer_lightning.evaluation.final.final_predictions` without post-processing)."""
    names = list(model.target_names)
    annotations, subjects = split_annotations(datamodule, split, names)
    return final_predictions(predict_frames(model, datamodule, split, device, progress, precision), annotations,
                             faceless, subjects=subjects)


def annotation_facts(frames: dict[str, FramePredictions], annotations: dict[str, Annotations],
                     final: dict[str, VideoTrace], names: list[str]) -> dict:
    """What a report says of a split's annotations: how many are scored per dimension, those that
    describe a moment outside the decoded video (predicted by the edge frame), and the videos
    without any face (predicted by the model's output on black frames)."""
    before = after = 0
    outside = {}
    for vid, a in annotations.items():
        if vid in frames:
            b, e = a.outside(int(frames[vid].index.max()) + 1 if len(frames[vid].index) else 0)
            before, after = before + b, after + e
            if b or e:
                outside[vid] = {"before_first_frame": b, "after_last_frame": e}
    scored = {n: int(sum(np.isfinite(t.true[:, d]).sum() for t in final.values())) for d, n in enumerate(names)}
    return {"annotations": int(sum(len(t.true) for t in final.values())), "scored": scored,
            "before_first_frame": before, "after_last_frame": after, "outside_video": outside,
            "videos_without_face": videos_without_face({v: f for v, f in frames.items() if v in final}),
            "videos_without_annotations": sorted(set(frames) - set(final)),
            "videos_without_predictions": sorted(set(annotations) - set(frames))}


def evaluate(ckpt: str | Path, split: str = "test", dev_split: str = "val",
             data: Callable[[dict], dict] | None = None, out: str | Path | None = None,
             space: SearchSpace | None = None, device: str = "auto", num_workers: int | None = None,
             progress: bool = True, precision: str = "32-true", faceless: str | None = None,
             moments: str = "population") -> dict:
    """Evaluate ``ckpt`` on ``split`` (see the module docs); returns what evaluation.json holds.
    ``data`` turns the checkpoint's data settings into those used (the command line layers
    experiment files and overrides on them); None: the checkpoint's own. ``faceless``: how
    frames without a face are predicted (None: as the checkpoint's model scores them).
    ``moments``: the CCC's moments, ``population`` (ABAW, AVEC GES) or ``sample`` (n - 1, AVEC
    2018's CES scorer)."""
    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.inference.device import resolve_device
    from fer_lightning.models.checkpoint import load_checkpoint_model

    if moments not in MOMENTS:
        raise ValueError(f"moments must be one of {tuple(MOMENTS)}, not {moments!r}")
    ddof = MOMENTS[moments]
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
    frames = {dev_split: predict_frames(model, dm, dev_split, run_on, progress, precision)}
    frames[split] = frames[dev_split] if split == dev_split else predict_frames(model, dm, split, run_on, progress,
                                                                                precision)
    annotations, subjects = {}, {}
    for s in {split, dev_split}:
        annotations[s], subjects[s] = split_annotations(dm, s, names)

    def final_of(s: str, post: PostProcessor | None = None, upto: str = "scale") -> dict[str, VideoTrace]:
        return final_predictions(frames[s], annotations[s], faceless, post, subjects[s], upto=upto)

    raw = {s: final_of(s) for s in (dev_split, split)}
    post = PostProcessor.fit(raw[dev_split], names, space)
    final = {s: final_of(s, post) for s in (dev_split, split)}

    def step_scores(s: str) -> dict:
        """Pooled CCC per dimension after each post-processing step in turn."""
        steps = {"raw": {n: v["ccc"] for n, v in scores(raw[s], names, ddof).items()}}
        for step in ("delay", "smoothing", "bias", "scale"):  # the last step is the final predictions themselves
            traces = final[s] if step == "scale" else final_of(s, post, step)
            steps[step] = {n: v["ccc"] for n, v in scores(traces, names, ddof).items()}
        return steps

    result = {
        "checkpoint": str(ckpt), "split": split, "dev_split": dev_split, "targets": names, "precision": precision,
        "data": {k: args.get(k) for k in ("root", "dataset", "dataset_args", "face_store", "clip_len", "image_size")},
        "videos": {split: len(final[split]), dev_split: len(final[dev_split])},
        "skipped_videos": dm.skip_reasons,
        "scoring": {"frames": "every annotation, as the challenge scores it (one per label row, or per annotation "
                              "time), with the prediction written in the files",
                    "moments": moments, "faceless": faceless,
                    "face_coverage": {dev_split: face_coverage(raw[dev_split]), split: face_coverage(raw[split])},
                    "annotations": {s: annotation_facts(frames[s], annotations[s], final[s], names)
                                    for s in (dev_split, split)}},
        "raw": {s: scores(raw[s], names, ddof) for s in (dev_split, split)},
        "postprocessed": {s: scores(final[s], names, ddof) for s in (dev_split, split)},
        "face_frames_only": {
            "raw": {s: scores(face_frames_only(raw[s]), names, ddof) for s in (dev_split, split)},
            "postprocessed": {s: scores(face_frames_only(final[s]), names, ddof) for s in (dev_split, split)}},
        "postprocess": post.as_dict(),
        "steps": {s: step_scores(s) for s in (split, dev_split)},
    }
    if split == dev_split:
        result["warning"] = (f"post-processing was fitted on {dev_split} and scored on it too: its gains are "
                             "optimistic; evaluate another split for a fair figure")
    out = Path(out) if out else Path(ckpt).parent / f"evaluate-{Path(ckpt).stem}-{split}"
    out.mkdir(parents=True, exist_ok=True)
    predictions = write_prediction_files(final[split], annotations[split], out, names)
    result["files"] = write_outputs(result, post, final[split], out, names, predictions)
    return result


def write_prediction_files(final: dict[str, VideoTrace], annotations: dict[str, Annotations], out: Path,
                           names: list[str]) -> dict:
    """The scored split's final predictions (those scored) in the challenges' formats
    (:mod:`fer_lightning.evaluation.formats`): per-frame corpora as ABAW's per-video txt files
    (a row per label row); corpora annotated in time at their annotation times, as AVEC's
    per-dimension ARFF files and as one csv per recording."""
    from fer_lightning.evaluation.formats import write_abaw_va, write_avec_arff, write_label_rate

    per_frame = {vid: t.pred for vid, t in final.items() if not annotations[vid].timed}
    timed = {vid: (annotations[vid].time, t.pred) for vid, t in final.items() if annotations[vid].timed}
    files = {}
    if per_frame:
        write_abaw_va(out / "predictions_abaw", per_frame, names)
        files["predictions_abaw"] = str(out / "predictions_abaw")
    if timed:
        write_label_rate(out / "predictions_label_rate", timed, names)
        write_avec_arff(out / "predictions_avec", timed, names,
                        {vid: annotations[vid].annotated for vid in timed})
        files["predictions_label_rate"] = str(out / "predictions_label_rate")
        files["predictions_avec"] = str(out / "predictions_avec")
    return files


def markdown(result: dict) -> str:
    """The report's tables: per dimension raw vs post-processed, the fitted steps, per subject."""
    split, dev = result["split"], result["dev_split"]
    lines = [f"# Evaluation of {result['checkpoint']} on {split} ({result['videos'][split]} videos)", ""]
    if "warning" in result:
        lines += [f"> {result['warning']}", ""]
    scoring = result["scoring"]
    lines += [f"Every annotation is scored; {scoring['face_coverage'][split]:.1%} of them show a face, the "
              f"others are predicted by `{scoring['faceless']}` from the face frames around them. The last column "
              "scores the face frames alone.", "",
              *_annotation_lines(scoring["annotations"][split], scoring.get("moments", "population")),
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


def _annotation_lines(facts: dict, moments: str) -> list[str]:
    """The report's sentence on which annotations were scored and which need a second look."""
    text = (f"{facts['annotations']} annotations, each scored where its dimension is valid "
            f"({', '.join(f'{n} {k}' for n, k in facts['scored'].items())}; CCC from {moments} moments)")
    if facts["before_first_frame"] or facts["after_last_frame"]:
        text += (f"; {facts['before_first_frame']} describe a moment before the first frame and "
                 f"{facts['after_last_frame']} one after the last decoded frame (predicted by that edge frame)")
    if facts.get("videos_without_predictions"):
        text += (f"; {len(facts['videos_without_predictions'])} annotated videos got no prediction (no evaluation "
                 f"window) and are not scored: {', '.join(facts['videos_without_predictions'][:10])}")
    if facts["videos_without_face"]:
        text += (f"; {len(facts['videos_without_face'])} videos show no face at all (predicted by the model's "
                 f"outputs on black frames): {', '.join(facts['videos_without_face'][:10])}")
    return [text + ".", ""]


def write_outputs(result: dict, post: PostProcessor, final: dict[str, VideoTrace], out: Path, names: list[str],
                  more_files: dict | None = None) -> dict:
    """The report (json, markdown) and its plots; ``final``: the scored split's final predictions."""
    split, dev = result["split"], result["dev_split"]
    files = {"json": str(out / "evaluation.json"), "markdown": str(out / "evaluation.md"),
             "search_plot": str(out / "postprocess_search.png"), "subjects_plot": str(out / "subjects.png"),
             "traces_plot": str(out / f"traces_{split}.png"), **(more_files or {})}
    plot_postprocess_search(post, names, dev, Path(files["search_plot"]))
    plot_subject_ccc(result, names, split, Path(files["subjects_plot"]))
    videos = {vid: (np.arange(len(s.mask)), s.mask, s.pred, np.nan_to_num(s.true), s.has_face)
              for vid, s in final.items()}
    fps = next(iter(final.values())).fps if final else None
    plot_traces(videos, names, Path(files["traces_plot"]), num_videos=1, fps=fps)
    write_text_atomic(files["markdown"], markdown(result))
    write_text_atomic(files["json"], json.dumps(result | {"files": files}, indent=1, default=float) + "\n")
    return files
