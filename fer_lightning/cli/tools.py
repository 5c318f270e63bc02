"""The ``fer-lightning`` tools that are not Lightning subcommands: their options (parsed in
the one dialect of :mod:`fer_lightning.cli.parsing`) and what they print. Each imports what it
runs only once its options are parsed, so ``--help`` answers without torch or Lightning."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from fer_lightning.cli.parsing import dataclass_from, fail, tool_parser


def synth_main(argv: Sequence[str]) -> int:
    """``fer-lightning synth``: write the synthetic face-video corpus."""
    from fer_lightning.corpora.synthetic.generator import SynthConfig

    p = tool_parser("fer-lightning synth", "Write the synthetic face-video corpus: procedurally drawn faces whose "
                    "expression follows known valence/arousal signals, with annotations in real-corpus layouts.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_class_arguments(SynthConfig, None)
    p.add_argument("--workers", type=int | None, default=None, help="processes (null: all cores)")
    p.add_argument("--skip_existing", type=bool, default=False, help="do nothing if OUT/index.csv exists")
    p.add_argument("--real_faces", nargs="+", default=None,
                   help="photos and videos of real people: each face found becomes an identity animated by the same "
                        "valence/arousal law (3 videos each; splits by identity, 0.6/0.1/0.3)")
    p.add_argument("--videos_per_identity", type=int, default=3, help="with --real_faces: videos of each identity")
    a = p.parse_args(list(argv))
    if a.skip_existing and (Path(a.out) / "index.csv").exists():
        print(f"synthetic corpus already at {a.out} (index.csv present); nothing to do")
        return 0
    if a.real_faces:
        from fer_lightning.corpora.synthetic.real_faces import RealFacesConfig, generate_real_faces

        sources = [Path(s) for s in a.real_faces]
        if missing := [str(s) for s in sources if not s.is_file()]:
            fail(p, f"--real_faces: no such file: {', '.join(missing)}")
        split = a.split if a.split != (0.6, 0.2, 0.2) else (0.6, 0.1, 0.3)  # by identity: room for unseen people
        cfg = RealFacesConfig(videos_per_identity=a.videos_per_identity, seconds=a.seconds, fps=a.fps, seed=a.seed,
                              size=a.size, split=tuple(split), faceless_prob=min(a.faceless_prob, 0.3))
        index = generate_real_faces(sources, a.out, cfg)
        print(f"wrote the real-face corpus; identities and their splits: {Path(a.out) / 'corpus.json'}; index: {index}")
        return 0
    cfg = dataclass_from(SynthConfig, a)
    try:
        cfg.validate()
    except ValueError as err:
        fail(p, str(err))
    from fer_lightning.corpora.synthetic.generator import generate_corpus

    index = generate_corpus(cfg, a.out, workers=a.workers)
    print(f"wrote {cfg.videos} videos x {cfg.num_frames} frames; index: {index}")
    return 0


def preprocess_main(argv: Sequence[str]) -> int:
    """``fer-lightning preprocess``: raw videos -> face-clip store."""
    from fer_lightning.store.settings import PreprocessConfig

    p = tool_parser("fer-lightning preprocess", "Detect, track, align and crop faces from raw video into a face-clip "
                    "store (one H.264 face video and one metadata CSV per face; reruns resume).")
    p.add_argument("--input", nargs="+", required=True, help="video files, folders, or .txt/.csv manifests")
    p.add_argument("--output", required=True, help="store folder (created; reruns resume)")
    p.add_class_arguments(PreprocessConfig, None)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes over videos")
    p.add_argument("--allow_failures", type=bool, default=False, help="exit 0 even when some videos failed")
    a = p.parse_args(list(argv))
    cfg = dataclass_from(PreprocessConfig, a)
    if cfg.detect_every < 1 or cfg.size < 16 or cfg.size % 2 or cfg.smooth < 1:
        fail(p, "--detect_every and --smooth must be >= 1, --size an even number >= 16")
    from fer_lightning.store.index import format_report
    from fer_lightning.store.write import preprocess

    try:
        report = preprocess(a.input, a.output, cfg, workers=a.workers)
    except ValueError as err:
        fail(p, str(err))
    print(format_report(report))
    print(f"store: {a.output} (index.csv, report.json)")
    return 1 if report["failed_this_run"] and not a.allow_failures else 0


def data_main(argv: Sequence[str]) -> int:
    """``fer-lightning data check``: what a run will train and score on (JSON summary)."""
    if not argv or argv[0] not in ("check", "-h", "--help"):
        print("usage: fer-lightning data check (--config EXPERIMENT.yaml | --dataset NAME --root DIR) "
              "[--data.KEY=VALUE] [--dataset_args JSON] [--face_store STORE]", file=sys.stderr)
        return 2
    argv = argv[1:] if argv[0] == "check" else argv
    configs, overrides, own = split_experiment_args(list(argv))
    p = tool_parser("fer-lightning data check", "Load a corpus exactly as fit, validate and test load it "
                    "(adapter, face store, held-out split, evaluation labels; fer_lightning.corpora.load."
                    "load_corpus) and print what each split holds as JSON: videos, frames and labelled frames, "
                    "why frames lack labels, label files whose length differs from their video, annotations "
                    "outside the video, videos left out and why, videos shipped without labels, the held-out "
                    "subjects. Exit status 1 when a video was left out or none is usable.",
                    config_help="an experiment file or preset whose data: section to check, layered exactly as "
                                "`fit --config` layers them (repeatable); --data.KEY=VALUE overrides single fields")
    p.add_argument("--dataset", type=str | None, default=None,
                   help="the adapter: synthetic, recola, affwild2, affwild2_expr, sewa, afewva, emotion_manifest, manifest, or one "
                        "you registered (as data.dataset)")
    p.add_argument("--root", type=str | None, default=None, help="the corpus folder (as data.root)")
    p.add_argument("--dataset_args", type=dict | None, default=None,
                   help="adapter options, as data.dataset_args (JSON or YAML mapping)")
    p.add_argument("--face_store", type=str | None, default=None, help="check the videos against this store too "
                                                                        "(as data.face_store)")
    p.add_argument("--store_length_tolerance", type=int | None, default=None,
                   help="frames a face video may differ from the corpus's count (as data.store_length_tolerance)")
    a = p.parse_args(own)
    flags = {k: getattr(a, k) for k in ("dataset", "root", "dataset_args", "face_store", "store_length_tolerance")
             if getattr(a, k) is not None}
    if not configs and not ({"dataset", "root"} <= set(flags) or overrides):
        fail(p, "name the corpus: --config EXPERIMENT.yaml, or --dataset NAME --root DIR")
    import tempfile

    import yaml

    from fer_lightning.cli.main import experiment_data
    from fer_lightning.corpora.check import drop_unlabelled_records, summarize
    from fer_lightning.corpora.load import corpus_settings, load_corpus

    try:
        with tempfile.TemporaryDirectory() as tmp:  # the flags layer last, as --data.KEY=VALUE would
            given = Path(tmp) / "flags.yaml"
            given.write_text(yaml.safe_dump({"data": flags}))
            data = experiment_data({}, [*configs, str(given)], overrides)
        corpus = load_corpus(**corpus_settings(data))
    except (FileNotFoundError, ValueError, TypeError) as err:
        print(json.dumps({"ok": False, "error": str(err)}, indent=2))
        return 1
    records = corpus.records
    names = corpus.class_names if any(r.labels is not None for r in records) else None
    summary = summarize(records, list(corpus.skipped.items()), list(corpus.unlabelled.items()),
                        class_names=list(names) if names is not None else None, task=str(data.get("task") or ""))
    task = str(data.get("task") or "")
    _, not_read = drop_unlabelled_records(corpus.splits.get("train", []), task,
                                          data.get("target_names") or ("valence", "arousal"))
    if not_read and "train" in summary["splits"]:  # as fit will: training skips what holds nothing to learn
        summary["splits"]["train"]["not_read_in_training"] = not_read
    summary = {"corpus": {"dataset": corpus.name, "root": str(corpus.root),
                          "face_store": str(corpus.face_store) if corpus.face_store else None},
               **summary, "held_out_subjects": corpus.held_out_subjects,
               **({"excluded_subjects": corpus.excluded_subjects} if data.get("exclude_subjects") else {})}
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


def predict_main(argv: Sequence[str]) -> int:
    """``fer-lightning predict``: per-frame affect for any video or folder."""
    from fer_lightning.inference.settings import PredictConfig

    p = tool_parser("fer-lightning predict", _doc("fer_lightning.inference", "predict.py"))
    p.add_argument("--ckpt", required=True, help="a training checkpoint (fine-tuning: valence/arousal; "
                                                 "pretraining: emotion probabilities)")
    p.add_argument("--input", nargs="+", required=True, help="video files, folders, or .txt/.csv manifests")
    p.add_argument("--out", required=True, help="output folder")
    p.add_class_arguments(PredictConfig, None, skip={"render", "abaw"})
    p.add_argument("--render", type=bool, default=PredictConfig.render,
                   help="also write an annotated MP4 per video")
    p.add_argument("--abaw", type=bool, default=PredictConfig.abaw,
                   help="also write abaw/<video>.txt in ABAW's valence-arousal format (a row for every frame; "
                        "needs --faceless other than none)")
    p.add_argument("--quiet", type=bool, default=False, help="no progress bars")
    a = p.parse_args(list(argv))
    cfg = dataclass_from(PredictConfig, a)
    if cfg.detect_every < 1 or cfg.batch_size < 1 or (cfg.window is not None and cfg.window < 1):
        fail(p, "--detect_every, --batch_size and --window must be >= 1")
    if cfg.abaw and cfg.faceless == "none":
        fail(p, "--abaw writes a row for every frame, as ABAW scores every frame: set --faceless interpolate "
                "(or hold, model) to predict the frames without a face")
    import torch

    from fer_lightning.inference.predict import predict

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        report = predict(a.ckpt, a.input, a.out, cfg, progress=not a.quiet)
    except ValueError as err:
        fail(p, str(err))
    ok = [e for e in report["videos"] if e["status"] == "ok"]
    print(f"\n{len(ok)} of {len(report['videos'])} videos predicted into {a.out} (report: predict_report.json)")
    if report["failed"]:
        print(f"{len(report['failed'])} failed:")
        for e in report["videos"]:
            if e["status"] != "ok":
                print(f"  {e['video']}: {e['reason']}")
        return 1
    return 0


EXPERIMENT_SECTIONS = ("--data.", "--model.", "--trainer.", "--seed_everything", "--data=", "--model=", "--trainer=")


def evaluate_main(argv: Sequence[str]) -> int:
    """``fer-lightning evaluate``: score a fine-tuned checkpoint the way affect papers report it."""
    from fer_lightning.evaluation.postprocess import SearchSpace
    from fer_lightning.inference.settings import Precision

    argv = list(argv)
    configs, overrides, own = split_experiment_args(argv)
    p = tool_parser("fer-lightning evaluate", _doc("fer_lightning.inference", "evaluate.py"),
                    config_help="an experiment file or preset whose data: section to use, layered exactly as "
                                "`fit --config` layers them (repeatable); --data.KEY=VALUE overrides single fields")
    p.add_argument("--ckpt", required=True, help="a fine-tuning checkpoint (best-*.ckpt, last.ckpt)")
    p.add_argument("--split", type=Literal["val", "test"], default="test", help="the split scored")
    p.add_argument("--dev_split", type=Literal["val", "test"], default="val",
                   help="the split post-processing is fitted on")
    p.add_argument("--out", type=str | None, default=None, help="report folder (null: beside the checkpoint)")
    p.add_class_arguments(SearchSpace, "search")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--precision", type=Precision, default="32-true",
                   help="the model's precision (bf16-mixed: autocast, as in training)")
    p.add_argument("--num_workers", type=int | None, default=None, help="DataLoader workers (null: the checkpoint's)")
    p.add_argument("--faceless", type=Literal["interpolate", "hold", "model"] | None, default=None,
                   help="how a labelled frame without a face is predicted: interpolate (between the nearest face "
                        "frames), hold (the last face frame's) or model (its output on the black frame); "
                        "null: the checkpoint's model.faceless")
    p.add_argument("--moments", type=Literal["population", "sample"], default="population",
                   help="the CCC's moments: population (ABAW, AVEC 2016/2018 GES scorers) or sample (n - 1, "
                        "AVEC 2018's CES scorer)")
    a = p.parse_args(own)
    space = dataclass_from(SearchSpace, a, "search")
    if space.max_delay_s < space.min_delay_s:
        fail(p, "--search.max_delay_s must not be below --search.min_delay_s")
    from fer_lightning.inference.evaluate import evaluate, markdown

    def layered(ckpt_data: dict) -> dict:
        from fer_lightning.cli.main import experiment_data

        return experiment_data(ckpt_data, configs, overrides)

    try:
        result = evaluate(a.ckpt, a.split, a.dev_split, layered if configs or overrides else None, a.out, space,
                          a.device, a.num_workers, precision=a.precision, faceless=a.faceless, moments=a.moments)
    except (ValueError, FileNotFoundError) as err:
        fail(p, str(err))
    print(markdown(result))
    for kind, path in result["files"].items():
        print(f"{kind + ':':<14} {path}")
    return 0


def submit_main(argv: Sequence[str]) -> int:
    """``fer-lightning submit``: the ABAW valence-arousal test-set file from a checkpoint."""
    from fer_lightning.inference.settings import Precision

    p = tool_parser("fer-lightning submit", _doc("fer_lightning.inference", "submit.py"))
    p.add_argument("--ckpt", required=True, help="a valence-arousal fine-tuning checkpoint")
    p.add_argument("--sample", required=True, help="the organisers' test-set sample file (image_location,valence,arousal)")
    p.add_argument("--faces", required=True, help="cropped_aligned folder or face store (written there with --videos)")
    p.add_argument("--out", required=True, help="the filled file to write (its report: OUT.json)")
    p.add_argument("--videos", type=str | None, default=None,
                   help="raw videos (a folder, e.g. the ABAW folder): preprocess them into --faces first")
    p.add_argument("--postprocess", type=str | None, default=None,
                   help="an evaluation.json whose fitted post-processing to apply (null: raw outputs)")
    p.add_argument("--faceless", type=Literal["interpolate", "hold", "model"] | None, default=None,
                   help="frames without a face: interpolate, hold or model (null: the checkpoint's model.faceless)")
    p.add_argument("--fps", type=float, default=30.0,
                   help="frame rate of cropped_aligned frames (post-processing steps are in seconds)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--precision", type=Precision, default="32-true", help="the model's precision")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="preprocess processes (with --videos)")
    a = p.parse_args(list(argv))
    if a.fps <= 0:
        fail(p, "--fps must be positive")
    from fer_lightning.inference.submit import submit

    try:
        report = submit(a.ckpt, a.sample, a.faces, a.out, a.videos, a.postprocess, a.faceless, a.fps, a.device,
                        a.precision, a.workers)
    except (ValueError, FileNotFoundError) as err:  # UserInputError is a ValueError: one sentence, status 2
        fail(p, str(err))
    print(f"wrote {report['rows']} rows of {report['videos']} videos to {report['file']} (report: {report['file']}.json)")
    for key, what in (("videos_without_face", "videos without any face (the model's outputs on black frames)"),
                      ("videos_not_in_faces", "videos absent from --faces (predicted as faceless)"),
                      ("rows_past_the_last_frame", "videos with rows past their last frame (the last frame's value)")):
        if report[key]:
            print(f"{len(report[key])} {what}: {', '.join(list(report[key])[:10])}", file=sys.stderr)
    for note in report["notes"]:
        print(f"note: {note}", file=sys.stderr)
    return 0


def split_experiment_args(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(experiment files given with --config, --data./--model./--trainer. overrides, the rest)."""
    configs, overrides, own = [], [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config" and i + 1 < len(argv):
            configs.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--config="):
            configs.append(arg.split("=", 1)[1])
        elif arg.startswith(EXPERIMENT_SECTIONS):
            overrides.append(arg)
            if "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                overrides.append(argv[i + 1])
                i += 1
        else:
            own.append(arg)
        i += 1
    if "-h" in own or "--help" in own:
        own = ["--help"]
    return configs, overrides, own


def export_main(argv: Sequence[str]) -> int:
    """``fer-lightning export``: a checkpoint as ONNX or TorchScript, checked for parity."""
    p = tool_parser("fer-lightning export", _doc("fer_lightning.inference", "export.py"))
    p.add_argument("--ckpt", required=True, help="a training checkpoint (best-*.ckpt, last.ckpt)")
    p.add_argument("--format", type=Literal["onnx", "torchscript"], default="onnx", help="what to write")
    p.add_argument("--out", type=str | None, default=None,
                   help="output file (null: beside the checkpoint, .onnx / .pt)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--image_size", type=int | None, default=None,
                   help="crop size (null: the checkpoint's data.image_size)")
    p.add_argument("--check", type=bool, default=True, help="compare the export with PyTorch on random clips")
    a = p.parse_args(list(argv))
    from fer_lightning.inference.export import export

    try:
        report = export(a.ckpt, a.format, a.out, a.opset, a.image_size, check=a.check)
    except (ValueError, ImportError) as err:
        fail(p, str(err))
    print(f"wrote {report['path']} ({report['format']}): frames uint8 (batch, time, 3, {report['image_size']}, "
          f"{report['image_size']}) -> {report['task']} outputs {report['outputs']} per frame")
    if "max_abs_diff" in report:
        print(f"parity with PyTorch on random clips: max |difference| = {report['max_abs_diff']:.2e}")
    return 0


def _doc(package: str, module_file: str) -> str:
    """A module's docstring read from its file, without importing it (and torch with it)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(package)
    path = Path(next(iter(spec.submodule_search_locations))) / module_file
    return ast.get_docstring(ast.parse(path.read_text())) or ""  # tool_parser makes it plain text
