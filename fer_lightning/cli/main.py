"""The ``fer-lightning`` command: LightningCLI subcommands plus the project's own tools.

    fer-lightning synth --out DIR [--videos N --seconds S --fps F --seed K]
    fer-lightning preprocess --input PATH... --output STORE [--detect-every K --size S --faces all --workers W]
    fer-lightning data check --dataset NAME --root DIR [--dataset-args JSON --face-store STORE]
    fer-lightning export --ckpt CKPT [--format onnx|torchscript --out PATH]
    fer-lightning evaluate --ckpt CKPT [--config EXPERIMENT --split test]
    fer-lightning predict --ckpt CKPT --input VIDEO_OR_FOLDER --out DIR [--render]
    fer-lightning fit|validate|test --config experiments/....yaml [--model.lr=...]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

TOOLS = {
    "synth": "generate the synthetic face-video corpus",
    "preprocess": "detect, track, align and crop faces into a face-clip store",
    "data": "data check: what an adapter reads from a corpus (JSON summary)",
    "export": "export a checkpoint as ONNX (dynamic batch and time) or TorchScript, checked for parity",
    "evaluate": "score a checkpoint: CCC, Pearson, RMSE per dimension, video and subject, raw and AVEC post-processed",
    "predict": "per-frame valence/arousal for any video or folder: CSV, plot, optional annotated MP4",
}


# how a collective reports that a peer process is gone (gloo on CPU; NCCL's watchdog on GPU)
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "NCCL communicator was aborted",
             "Watchdog caught collective operation timeout", "ProcessGroupNCCL is aborted")


def synth_main(argv: Sequence[str]) -> int:
    """``fer-lightning synth``: write the synthetic corpus (see fer_lightning.corpora.synthetic.generator)."""
    from fer_lightning.corpora.synthetic.generator import SynthConfig, generate_corpus

    d = SynthConfig()
    p = argparse.ArgumentParser(prog="fer-lightning synth", description=generate_corpus.__doc__)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--videos", type=int, default=d.videos, help="videos, one subject each")
    p.add_argument("--seconds", type=float, default=d.seconds, help="length of each video")
    p.add_argument("--fps", type=float, default=d.fps, help="frame rate")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (same seed, same corpus)")
    p.add_argument("--size", type=int, default=d.size, help="frame width and height, pixels")
    p.add_argument("--split", type=float, nargs=3, default=d.split, metavar=("TRAIN", "VAL", "TEST"),
                   help="fractions of subjects per split")
    p.add_argument("--faceless-prob", type=float, default=d.faceless_prob,
                   help="chance that a video holds a stretch of frames without a face")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--skip-existing", action="store_true", help="do nothing if OUT/index.csv exists")
    args = p.parse_args(list(argv))
    from pathlib import Path

    if args.skip_existing and (Path(args.out) / "index.csv").exists():
        print(f"synthetic corpus already at {args.out} (index.csv present); nothing to do")
        return 0
    cfg = SynthConfig(args.videos, args.seconds, args.fps, args.seed, args.size, tuple(args.split), args.faceless_prob)
    try:
        cfg.validate()
    except ValueError as err:
        p.error(str(err))
    index = generate_corpus(cfg, args.out, workers=args.workers)
    print(f"wrote {cfg.videos} videos x {cfg.num_frames} frames; index: {index}")
    return 0


def data_main(argv: Sequence[str]) -> int:
    """``fer-lightning data check --dataset NAME --root DIR``: see fer_lightning.corpora.check."""
    from fer_lightning.corpora.check import check_main

    if not argv or argv[0] != "check":
        print("usage: fer-lightning data check --dataset NAME --root DIR [--dataset-args JSON] [--face-store STORE]")
        return 2
    return check_main(argv[1:])


def preprocess_main(argv: Sequence[str]) -> int:
    """``fer-lightning preprocess``: raw videos -> face-clip store (see fer_lightning.store.write)."""
    import os

    from fer_lightning.store.write import PreprocessConfig, format_report, preprocess

    d = PreprocessConfig()
    p = argparse.ArgumentParser(prog="fer-lightning preprocess", description=preprocess_main.__doc__)
    p.add_argument("--input", nargs="+", required=True, help="video files, folders, or .txt/.csv manifests")
    p.add_argument("--output", required=True, help="store folder (created; reruns resume)")
    p.add_argument("--detect-every", type=int, default=d.detect_every, help="run the detector every K frames")
    p.add_argument("--size", type=int, default=d.size, help="side of the aligned face crop, pixels")
    p.add_argument("--margin", type=float, default=d.margin, help="extra context around the aligned face")
    p.add_argument("--min-face-size", type=int, default=d.min_face_size, help="smallest face searched, pixels")
    p.add_argument("--smooth", type=int, default=d.smooth, help="box smoothing window, frames (1: off)")
    p.add_argument("--faces", choices=("main", "all"), default=d.faces,
                   help="main: the main subject only (largest, most persistent face); all: one face video per "
                        "face seen for --min-track-seconds (<video>_left/_right for two, as Aff-Wild2 names them)")
    p.add_argument("--min-track-seconds", type=float, default=d.min_track_seconds,
                   help="with --faces all: shortest face kept, seconds")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes over videos")
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even when some videos failed")
    a = p.parse_args(list(argv))
    if a.detect_every < 1 or a.size < 16 or a.size % 2 or a.smooth < 1:
        p.error("--detect-every and --smooth must be >= 1, --size an even number >= 16")
    cfg = PreprocessConfig(detect_every=a.detect_every, size=a.size, margin=a.margin, smooth=a.smooth,
                           min_face_size=a.min_face_size, faces=a.faces, min_track_seconds=a.min_track_seconds)
    try:
        report = preprocess(a.input, a.output, cfg, workers=a.workers)
    except ValueError as err:
        p.error(str(err))
    print(format_report(report))
    print(f"store: {a.output} (index.csv, report.json)")
    return 1 if report["failed_this_run"] and not a.allow_failures else 0


def lightning_main(argv: Sequence[str] | None, run: bool = True):
    """Run a LightningCLI subcommand (fit, validate, test, predict); with ``run=False``, parse
    ``argv`` (no subcommand) and return the CLI with its model, datamodule and trainer built."""
    from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.models.module import AffectModule

    class LoggedConfig(SaveConfigCallback):
        """Saves config.yaml in the run folder (LightningCLI's default) and logs the full
        resolved config to every logger (W&B shows it as the run's config)."""

        def save_config(self, trainer, pl_module, stage: str) -> None:
            config = self.parser.dump(self.config, skip_none=False, format="json")
            import json

            for logger in trainer.loggers:
                logger.log_hyperparams(json.loads(config))

    class FerLightningCLI(LightningCLI):
        def before_instantiate_classes(self) -> None:
            from fer_lightning.training.cluster import (
                LaunchError,
                check_hpc_owner,
                check_launch,
                hpc_checkpoint,
                in_slurm_job,
            )

            check_launch()
            cfg = self.config[self.subcommand] if self.subcommand else self.config
            loggers = cfg["trainer"].get("logger")
            loggers = loggers if isinstance(loggers, list) else [loggers] if loggers else []
            if run_root := cfg.get("run_root"):
                # one folder for the whole run: checkpoints, HPC checkpoints, CSV logs, W&B files
                cfg["trainer"]["default_root_dir"] = run_root
                for logger in loggers:
                    if "save_dir" in getattr(logger, "init_args", {}):
                        logger.init_args.save_dir = run_root
            if self.subcommand != "fit":
                return
            trainer = cfg["trainer"]
            if trainer.get("sync_batchnorm") and not _training_on_gpu(trainer.get("accelerator")):
                raise LaunchError("trainer.sync_batchnorm: SyncBatchNorm trains on GPUs only (torch's kernel); "
                                  "leave it false on CPU (validate and test accept it: BatchNorm does not sync "
                                  "in eval mode)")
            # resuming (--ckpt_path, or a requeued SLURM job's HPC checkpoint): continue its W&B run
            ckpt = cfg.get("ckpt_path")
            if not ckpt and in_slurm_job() and (hpc := hpc_checkpoint(cfg["trainer"].get("default_root_dir"))):
                check_hpc_owner(hpc)
                print(f"requeued SLURM job: resuming from {hpc}", flush=True)
                ckpt = str(hpc)
            run_id = resumed_wandb_id(ckpt, cfg["trainer"].get("default_root_dir"))
            for logger in loggers:
                if run_id and str(getattr(logger, "class_path", "")).endswith("RunWandbLogger"):
                    logger.init_args.id = run_id

        def instantiate_trainer(self, **kwargs):
            from lightning.pytorch.plugins.environments import ClusterEnvironment, SLURMEnvironment
            from lightning.pytorch.plugins.io import CheckpointIO

            from fer_lightning.training.checkpoint_io import AtomicCheckpointIO
            from fer_lightning.training.cluster import SlurmRequeue

            plugins = self._get(self.config_init, "trainer", default={}).get("plugins") or []
            plugins = plugins if isinstance(plugins, list) else [plugins]
            if not any(isinstance(p, CheckpointIO) for p in plugins):
                plugins = [*plugins, AtomicCheckpointIO()]
            requeue = SLURMEnvironment.detect() and not any(isinstance(p, ClusterEnvironment) for p in plugins)
            if requeue:  # our race-free preemption handling instead of Lightning's (see SlurmRequeue)
                plugins = [*plugins, SLURMEnvironment(auto_requeue=False)]
            kwargs["plugins"] = plugins
            trainer = super().instantiate_trainer(**kwargs)
            if requeue:
                trainer.callbacks.append(SlurmRequeue())
            return trainer

        def add_arguments_to_parser(self, parser) -> None:
            # one source of truth for what the data holds; the model's head follows it
            parser.link_arguments("data.task", "model.task")
            parser.link_arguments("data.target_names", "model.target_names")
            parser.link_arguments("data.class_names", "model.class_names")
            parser.add_argument(
                "--evaluate_after_fit",
                type=bool,
                default=False,
                help="after fit, validate and test the best checkpoint and print a summary table",
            )
            parser.add_argument(
                "--run_root",
                type=str | None,
                default=None,
                help="put the whole run in this folder: the trainer's default_root_dir (checkpoints, SLURM "
                     "HPC checkpoints) and every logger's save_dir (the SLURM templates pass "
                     "runs/<experiment>/slurm-<job id>, so a requeued job finds its own checkpoint)",
            )

        def after_fit(self) -> None:
            if self.config[self.subcommand].get("evaluate_after_fit") and not self.trainer.fast_dev_run:
                evaluate_best(self.trainer, self.model, self.datamodule)

    return FerLightningCLI(
        AffectModule,
        AffectDataModule,
        args=None if argv is None else list(argv),
        run=run,
        save_config_callback=LoggedConfig,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": "fer-lightning: facial affect from video. Also: "
                       + "; ".join(f"'fer-lightning {k}' to {v}" for k, v in TOOLS.items())},
    )


def _training_on_gpu(accelerator) -> bool:
    import torch

    name = str(accelerator or "auto").lower()
    return name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available())


def resumed_wandb_id(ckpt_path: str | None, root: str | None) -> str | None:
    """The W&B run id stored in the checkpoint a fit resumes from (``last`` = the newest
    last.ckpt under the run's root folder), or None."""
    from pathlib import Path

    import torch

    if not ckpt_path:
        return None
    path = Path(ckpt_path)
    if ckpt_path == "last":
        found = sorted(Path(root or ".").rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
        path = found[-1] if found else path
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True).get("wandb_run_id")


def evaluate_best(trainer, model, datamodule) -> dict:
    """Validate and test the best checkpoint of a finished fit; print a CCC summary table."""
    from pathlib import Path

    from fer_lightning.training.callbacks import TracePlot, run_dir

    ckpt = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    val = trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
    test = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
    if not trainer.is_global_zero:  # the table, paths and W&B run are rank zero's to report
        return {"val": val, "test": test, "ckpt": ckpt}
    names = model.target_names if model.task == "finetune" else ()
    lines = [f"\nBest checkpoint: {ckpt or '(final weights)'}"]
    if model.task == "finetune":
        lines.append(f"{'split':<6} " + " ".join(f"{'CCC ' + n:>14}" for n in names)
                     + f" {'CCC mean':>10} " + " ".join(f"{'seq CCC ' + n:>18}" for n in names))
        for split, res in (("val", val), ("test", test)):
            lines.append(f"{split:<6} " + " ".join(f"{res[f'{split}/ccc_{n}']:>14.3f}" for n in names)
                         + f" {res[f'{split}/ccc_mean']:>10.3f} "
                         + " ".join(f"{res[f'{split}/seq_ccc_{n}']:>18.3f}" for n in names))
    else:
        for split, res in (("val", val), ("test", test)):
            lines.append(f"{split:<6} accuracy {res[f'{split}/acc']:.3f}  macro-F1 {res[f'{split}/f1_macro']:.3f}")
    for cb in trainer.callbacks:
        if isinstance(cb, TracePlot) and cb.written:
            lines.append(f"Test predictions: {cb.written['csv']}\nTrace plot:       {cb.written['png']}")
    lines.append(f"Run folder:       {run_dir(trainer)}")
    for logger in trainer.loggers:
        if type(logger).__name__.endswith("WandbLogger"):
            exp = logger.experiment
            folder = Path(exp.dir).parent if getattr(exp, "dir", None) else None
            if folder is not None and getattr(exp, "offline", False):
                lines.append(f"W&B run:          {folder} (offline; upload with: wandb sync {folder})")
            elif getattr(exp, "url", None):
                lines.append(f"W&B run:          {exp.url}")
    print("\n".join(lines), flush=True)
    return {"val": val, "test": test, "ckpt": ckpt}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in TOOLS:
        from fer_lightning.inference.evaluate import evaluate_main
        from fer_lightning.inference.export import export_main
        from fer_lightning.inference.predict import predict_main

        tools = {"synth": synth_main, "preprocess": preprocess_main, "data": data_main, "export": export_main,
                 "evaluate": evaluate_main, "predict": predict_main}
        return tools[args[0]](args[1:])
    from fer_lightning.training.cluster import LaunchError

    try:
        lightning_main(argv)  # None: LightningCLI reads sys.argv itself
    except LaunchError as err:
        print(f"fer-lightning: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        if not any(sign in str(err) for sign in PEER_LOST):
            raise
        import os

        rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "?"))
        print(f"fer-lightning: rank {rank} stops because another rank of this distributed run ended first "
              f"(its own output above says why: out of memory, a crash, a lost node). Collective error: "
              f"{str(err).splitlines()[0][:300]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
