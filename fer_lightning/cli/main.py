"""The ``fer-lightning`` command: Lightning's fit, validate and test on experiment files, plus
the project's tools, all in one dialect (``--config FILE``, ``--key value``, ``--section.key
value``; ``--help`` shows defaults).

    fer-lightning fit --config experiments/finetune_synthetic.yaml [--config experiments/presets/debug.yaml] [--model.lr=3e-4]
    fer-lightning validate --config experiments/finetune_synthetic.yaml --ckpt_path CKPT
    fer-lightning synth --out DIR [--videos N --seconds S --fps F --seed K]
    fer-lightning preprocess --input PATH... --output STORE [--detect_every K --faces all --workers W]
    fer-lightning data check --dataset NAME --root DIR [--dataset_args JSON --face_store STORE]
    fer-lightning predict --ckpt CKPT --input VIDEO_OR_FOLDER --out DIR [--render true]
    fer-lightning evaluate --ckpt CKPT [--config EXPERIMENT --config PRESET --data.root DIR --split test]
    fer-lightning submit --ckpt CKPT --sample ABAW_SAMPLE --faces CROPPED_ALIGNED --out FILE [--postprocess JSON_FILE]
    fer-lightning export --ckpt CKPT [--format onnx|torchscript --out PATH]
    fer-lightning sweep SWEEP_FILE [--runs N] [-- fit overrides]
    fer-lightning ablation [--config EXPERIMENT --seeds 0 1 2] [-- fit overrides]

Lightning's own ``predict`` subcommand is not offered (the datamodule has no predict split):
``fer-lightning predict`` runs a checkpoint on videos, and ``evaluate`` or ``test`` write the
per-frame predictions of a split.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

LIGHTNING = {
    "fit": "train a model on an experiment file (stage 1 pretrain or stage 2 fine-tune)",
    "validate": "score a checkpoint on the validation split through the trainer",
    "test": "score a checkpoint on the test split through the trainer (CSV + trace plot)",
}
# name -> (module, function, what it does): imported only when the tool runs, so that
# ``--help`` of the command and of every tool answers without torch or Lightning
TOOLS = {
    "synth": ("fer_lightning.cli.tools", "synth_main", "generate the synthetic face-video corpus"),
    "preprocess": ("fer_lightning.cli.tools", "preprocess_main",
                   "detect, track, align and crop faces into a face-clip store"),
    "data": ("fer_lightning.cli.tools", "data_main", "data check: what an adapter reads from a corpus (JSON)"),
    "predict": ("fer_lightning.cli.tools", "predict_main",
                "per-frame valence/arousal for any video or folder: CSV, plot, optional annotated MP4"),
    "evaluate": ("fer_lightning.cli.tools", "evaluate_main", "score a checkpoint: CCC, Pearson, RMSE per "
                 "dimension, video and subject, raw and AVEC post-processed"),
    "submit": ("fer_lightning.cli.tools", "submit_main",
               "the ABAW test-set file (image_location,valence,arousal) filled from a checkpoint"),
    "export": ("fer_lightning.cli.tools", "export_main",
               "export a checkpoint as ONNX (dynamic batch and time) or TorchScript, checked for parity"),
    "sweep": ("fer_lightning.cli.sweep", "main", "run a W&B sweep here, offline, with W&B's sweep engine"),
    "ablation": ("fer_lightning.cli.ablation", "main",
                 "pretrained vs from-scratch fine-tuning on few subjects, over seeds (table + plot)"),
}

# LightningCLI's --optimizer/--lr_scheduler would replace AffectModule.configure_optimizers, and
# with it the backbone's learning-rate group, the no-decay group and the warm-up
OPTIMIZER_OPTIONS = ("--optimizer", "--lr_scheduler")
OPTIMIZER_REASON = ("the model builds its own AdamW (the backbone's parameters at model.lr x model.backbone_lr_scale, "
                    "no weight decay on biases and norms) with linear warm-up and cosine decay; a generic optimizer "
                    "would drop those. Set model.lr, model.weight_decay, model.backbone_lr_scale, model.warmup_steps "
                    "and model.min_lr_ratio instead")

# how a collective reports that a peer process is gone (gloo on CPU; NCCL's watchdog on GPU)
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "NCCL communicator was aborted",
             "Watchdog caught collective operation timeout", "ProcessGroupNCCL is aborted")


def usage() -> str:
    """``fer-lightning --help``: every subcommand, without importing what they run."""
    width = max(map(len, [*LIGHTNING, *TOOLS])) + 2
    lines = ["usage: fer-lightning SUBCOMMAND [--config FILE ...] [--key value | --section.key value ...]", "",
             "Facial affect from video: pretrain a face feature extractor on emotion classes, fine-tune it to "
             "per-frame valence/arousal by 1 - CCC.", "",
             "Training (LightningCLI: --config experiments/<experiment>.yaml, then presets and "
             "--model./--data./--trainer. overrides):"]
    lines += [f"  {name:<{width}}{text}" for name, text in LIGHTNING.items()]
    lines += ["", "Tools:"]
    lines += [f"  {name:<{width}}{text}" for name, (_, _, text) in TOOLS.items()]
    lines += ["", "'fer-lightning SUBCOMMAND --help' lists a subcommand's options with their defaults."]
    return "\n".join(lines)


def lightning_main(argv: Sequence[str] | None, run: bool = True):
    """Run a LightningCLI subcommand (fit, validate, test); with ``run=False``, parse ``argv`` (no
    subcommand) and return the CLI with its model, datamodule and trainer built."""
    given = sys.argv[1:] if argv is None else list(argv)
    refused = [a for a in given if a.split("=")[0] in OPTIMIZER_OPTIONS or a.split(".")[0] in OPTIMIZER_OPTIONS]
    if refused:
        print(f"fer-lightning: {refused[0].split('=')[0]} is not offered: {OPTIMIZER_REASON}", file=sys.stderr)
        raise SystemExit(2)
    cli_class, AffectModule, AffectDataModule, LoggedConfig = _cli_classes()
    return cli_class(
        AffectModule,
        AffectDataModule,
        args=None if argv is None else list(argv),
        run=run,
        auto_configure_optimizers=False,  # see OPTIMIZER_REASON
        save_config_callback=LoggedConfig,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": "fer-lightning: facial affect from video (see fer-lightning --help for the "
                       "tools)"},
    )


def experiment_data(base: dict, configs: Sequence[str] = (), overrides: Sequence[str] = ()) -> dict:
    """The ``data:`` settings that ``fit --config C1 --config C2 ... OVERRIDES`` would build, on
    top of ``base`` (a checkpoint's own data settings): the same parser, links and presets, and
    nothing instantiated."""
    import json
    import tempfile
    from pathlib import Path

    import yaml

    cli_class, AffectModule, AffectDataModule, _ = _cli_classes()

    class ParseOnly(cli_class):
        def before_instantiate_classes(self) -> None:
            pass

        def instantiate_classes(self) -> None:
            pass

    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "checkpoint_data.yaml"
        first.write_text(yaml.safe_dump({"data": json.loads(json.dumps(base))}))
        args = ["--config", str(first)] + [a for c in configs for a in ("--config", c)] + list(overrides)
        argv, sys.argv = sys.argv, sys.argv[:1]  # parse args alone (LightningCLI warns when argv holds a tool's flags)
        try:
            cli = ParseOnly(AffectModule, AffectDataModule, args=args, run=False, save_config_callback=None,
                            seed_everything_default=False)
        finally:
            sys.argv = argv
        data = cli.config["data"].as_dict()
    from fer_lightning.data.datamodule import resolve_class_names

    # as fit resolves them before it builds anything (a finetune run: the default list, unused)
    data["class_names"] = list(resolve_class_names(data.get("class_names"), data.get("dataset"), data.get("task")))
    return data


def _cli_classes():
    """(FerLightningCLI, AffectModule, AffectDataModule, LoggedConfig), imported on first use."""
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
        @staticmethod
        def subcommands() -> dict[str, set[str]]:
            # no predict: the datamodule has no predict split; `fer-lightning predict` runs on videos
            return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

        def before_instantiate_classes(self) -> None:
            import os
            from pathlib import Path

            from fer_lightning.checkpoints import resumable_checkpoint, resume_facts
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
            # wandb agent sets WANDB_SWEEP_ID; the offline engine (fer-lightning sweep) FER_SWEEP_ID
            sweep = os.environ.get("WANDB_SWEEP_ID") or os.environ.get("FER_SWEEP_ID")
            sweep_run = os.environ.get("WANDB_RUN_ID")
            if not cfg.get("run_root") and sweep and sweep_run and self.subcommand == "fit":
                # a sweep agent's run: a folder of its own, so agents side by side never share one
                base = cfg["trainer"].get("default_root_dir") or "runs"
                cfg["run_root"] = str(Path(base) / f"sweep-{Path(sweep).name}" / sweep_run)
            if run_root := cfg.get("run_root"):
                # one folder for the whole run: checkpoints, HPC checkpoints, CSV logs, W&B files
                cfg["trainer"]["default_root_dir"] = run_root
                for logger in loggers:
                    if "save_dir" in getattr(logger, "init_args", {}):
                        logger.init_args.save_dir = run_root
            from fer_lightning.data.datamodule import resolve_class_names

            try:  # before the model is built: its logits follow the data's class list
                names = resolve_class_names(cfg["data"].get("class_names"), cfg["data"].get("dataset"),
                                            cfg["data"].get("task"))
            except ValueError as err:
                raise LaunchError(str(err)) from err
            cfg["data"]["class_names"] = cfg["model"]["class_names"] = list(names)
            from fer_lightning.models.backbone import check_backbone_name

            check_backbone_name(cfg["model"]["backbone"])  # before the loggers make the run folder
            root = cfg["trainer"].get("default_root_dir") or "."
            ckpt = cfg.get("ckpt_path")
            if ckpt == "last":  # fit resumes it; validate and test score it (never random weights)
                found = resumable_checkpoint(root)
                if found is None:
                    raise LaunchError(
                        f"--ckpt_path last: no last.ckpt in the run folder {root}, so there is nothing to "
                        f"{'resume' if self.subcommand == 'fit' else 'score'}. Give the run's folder (the same "
                        "--run_root or --trainer.default_root_dir it had), or --ckpt_path PATH to its checkpoint"
                        + ("; to start afresh, leave --ckpt_path out" if self.subcommand == "fit" else ""))
                print(f"--ckpt_path last: {'resuming from' if self.subcommand == 'fit' else 'scoring'} {found}",
                      flush=True)
                cfg["ckpt_path"] = ckpt = str(found)
            if ckpt and ckpt not in ("best", "hpc", "registry"):
                check_checkpoint_fits(ckpt, cfg["model"], "--ckpt_path")
            if self.subcommand != "fit":
                return
            trainer = cfg["trainer"]
            strategy = trainer.get("strategy")
            strategy = str(getattr(strategy, "class_path", strategy) or "").lower()
            model = cfg["model"]
            if model.get("freeze_backbone") and model.get("unfreeze_backbone_at_epoch") is not None \
                    and ("fsdp" in strategy or "deepspeed" in strategy):
                raise LaunchError(
                    f"model.unfreeze_backbone_at_epoch with trainer.strategy {strategy}: a backbone unfrozen during "
                    "the run needs its gradients averaged over the ranks, which only the ddp strategies do here "
                    "(FSDP and DeepSpeed shard or fuse them); use --trainer.strategy=ddp, or leave the backbone "
                    "frozen (unfreeze_backbone_at_epoch: null) or trainable from the start (freeze_backbone: false)")
            if trainer.get("sync_batchnorm") and not _training_on_gpu(trainer.get("accelerator")):
                raise LaunchError("trainer.sync_batchnorm: SyncBatchNorm trains on GPUs only (torch's kernel); "
                                  "leave it false on CPU (validate and test accept it: BatchNorm does not sync "
                                  "in eval mode)")
            # resuming (--ckpt_path, or a requeued SLURM job's HPC checkpoint): continue its run folder
            # (log version, best-k bookkeeping) and its W&B run
            if not ckpt and in_slurm_job() and (hpc := hpc_checkpoint(root)):
                check_hpc_owner(hpc)
                print(f"requeued SLURM job: resuming from {hpc}", flush=True)
                ckpt = str(hpc)
            if ckpt and Path(ckpt).is_file():
                continue_run(loggers, resume_facts(ckpt), ckpt)
            elif not ckpt:  # a resumed run keeps its weights: init_from is not read then
                check_init_from(cfg["model"], cfg["data"].get("dataset"))

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

        def _check_data(self, stage: str) -> None:
            check = getattr(self.datamodule, "check_ready", None)
            if callable(check):
                check(stage)

        def before_fit(self) -> None:
            self._check_data("fit")

        def before_validate(self) -> None:
            self._check_data("validate")

        def before_test(self) -> None:
            self._check_data("test")

        def after_fit(self) -> None:
            if self.config[self.subcommand].get("evaluate_after_fit") and not self.trainer.fast_dev_run:
                evaluate_best(self.trainer, self.model, self.datamodule)

    return FerLightningCLI, AffectModule, AffectDataModule, LoggedConfig


def _training_on_gpu(accelerator) -> bool:
    import torch

    name = str(accelerator or "auto").lower()
    return name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available())


def _read_checkpoint(path: str, option: str) -> dict:
    """A checkpoint's contents, or a LaunchError that names the option and says what is wrong."""
    from pathlib import Path

    from fer_lightning.checkpoints import load_checkpoint_file
    from fer_lightning.training.cluster import LaunchError

    if not Path(path).is_file():
        raise LaunchError(f"{option} {path}: no such file; give the path of a .ckpt written by fer-lightning fit")
    try:
        raw = load_checkpoint_file(path)
    except Exception as err:  # noqa: BLE001 - any unreadable file: the same one sentence
        raise LaunchError(f"{option} {path} is not a readable PyTorch checkpoint ({type(err).__name__}); give a .ckpt "
                          "written by fer-lightning fit") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("state_dict"), dict) \
            or not isinstance(raw.get("hyper_parameters"), dict):
        raise LaunchError(f"{option} {path} is not a fer-lightning checkpoint (no state_dict and hyper-parameters); "
                          "give a .ckpt written by fer-lightning fit")
    return raw


def check_checkpoint_fits(path: str, model: dict, option: str) -> None:
    """A checkpoint that training, validation or test would load whole must be of the same task
    and network as the configured model: a LaunchError names what differs."""
    from fer_lightning.training.cluster import LaunchError

    saved = _read_checkpoint(path, option)["hyper_parameters"]
    keys = ("task", "backbone", "hidden_size", "num_layers", "bidirectional")
    differ = [f"{k} {saved.get(k)!r} there, {model.get(k)!r} here" for k in keys
              if k in saved and model.get(k) is not None and saved.get(k) != model.get(k)]
    if differ:
        hint = (" (a pretraining checkpoint starts a fine-tuning run with --model.init_from, not --ckpt_path)"
                if saved.get("task") != model.get("task") else "")
        raise LaunchError(f"{option} {path} is not a checkpoint of this model: " + "; ".join(differ)
                          + f"{hint}; give a checkpoint of this experiment, or the experiment file it was trained with")


def check_init_from(model: dict, dataset: str | None) -> None:
    """``model.init_from``: a readable fer-lightning checkpoint, or ``latest`` with a finished
    pretraining run to take; checked before the run folder and the W&B run are made."""
    from fer_lightning.checkpoints import latest_checkpoint
    from fer_lightning.training.cluster import LaunchError

    init = model.get("init_from")
    if not init:
        return
    if init == "latest":
        try:
            latest_checkpoint(synthetic=None if dataset is None else dataset == "synthetic")
        except FileNotFoundError as err:
            raise LaunchError(f"model.init_from latest: {err}") from None
        return
    _read_checkpoint(init, "model.init_from")


def continue_run(loggers: list, facts: dict, ckpt: str) -> None:
    """Point the configured loggers of a resumed fit at the run it continues: W&B at the run id
    the checkpoint names, the CSV logger at the log version whose ``checkpoints/`` folder the
    checkpoint's ModelCheckpoint wrote to (so checkpoints, best-k scores and metrics.csv go on
    where they were, never into a fresh version that starts its bookkeeping from nothing).
    A checkpoint older than its run's newest (a best-epoch file) starts a branch: a new log
    version, so nothing the run logged after it is trimmed away."""
    from pathlib import Path

    from fer_lightning.checkpoints import is_newest_in_its_run

    dirpath = Path(facts["dirpath"]) if facts.get("dirpath") else None
    if dirpath is not None and not is_newest_in_its_run(ckpt, dirpath):
        dirpath = None
    for logger in loggers:
        path = str(getattr(logger, "class_path", ""))
        args = getattr(logger, "init_args", None)
        if args is None:
            continue
        if path.endswith("RunWandbLogger") and facts.get("wandb_run_id"):
            args.id = facts["wandb_run_id"]
        if path.endswith("CSVLogger") and dirpath is not None:
            base = Path(args.get("save_dir") or ".") / (args.get("name") or "lightning_logs")
            if dirpath.name == "checkpoints" and dirpath.parent.parent.resolve() == base.resolve():
                logger.class_path = "fer_lightning.training.loggers.RunCSVLogger"  # keeps metrics.csv
                args.version = dirpath.parent.name
                args.resumed_at = [facts["epoch"], facts["step"]]


def evaluate_best(trainer, model, datamodule) -> dict:
    """Validate and test the best checkpoint of a finished fit; print a CCC summary table."""
    from pathlib import Path

    from fer_lightning.training.callbacks import TracePlot, run_dir

    ckpt = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    val = trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
    # a corpus without a labelled test split (and data.held_out_from_train: 0) ends at validation
    has_test = getattr(datamodule, "has_clips", lambda split: True)("test")
    test = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0] if has_test else None
    if not trainer.is_global_zero:  # the table, paths and W&B run are rank zero's to report
        return {"val": val, "test": test, "ckpt": ckpt}
    names = model.output_names if model.objective.continuous else ()
    lines = [f"\nBest checkpoint: {ckpt or '(final weights)'}"]
    if model.objective.continuous:
        lines.append("Every labelled frame scored (frames without a face predicted from the face frames around "
                     f"them: {getattr(model.objective, 'faceless', 'model')}); the last two columns: the face frames "
                     "alone, and their share")
        lines.append(f"{'split':<6} " + " ".join(f"{'CCC ' + n:>14}" for n in names)
                     + f" {'CCC mean':>10} " + " ".join(f"{'seq CCC ' + n:>18}" for n in names)
                     + f" {'face-only CCC mean':>19} {'face coverage':>14}")
        for split, res in (("val", val), ("test", test)):
            if res is None:
                lines.append(f"{split:<6} (no labelled {split} split: set data.held_out_from_train to hold "
                             "training subjects out)")
                continue
            lines.append(f"{split:<6} " + " ".join(f"{res[f'{split}/ccc_{n}']:>14.3f}" for n in names)
                         + f" {res[f'{split}/ccc_mean']:>10.3f} "
                         + " ".join(f"{res[f'{split}/seq_ccc_{n}']:>18.3f}" for n in names)
                         + f" {res.get(f'{split}/face_ccc_mean', float('nan')):>19.3f}"
                         + f" {res.get(f'{split}/face_coverage', float('nan')):>14.1%}")
    else:
        for split, res in (("val", val), ("test", test)):
            if res is None:
                lines.append(f"{split:<6} (no labelled {split} split)")
                continue
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
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    try:
        return _run(args)
    except OSError as err:  # an output folder that is full, read-only or forbidden: one sentence
        from fer_lightning.io import write_error_sentence

        if (said := write_error_sentence(err)) is None:
            raise
        print(f"fer-lightning: {said}", file=sys.stderr)
        return 1


def _run(args: list[str]) -> int:
    if args[0] in TOOLS:
        import importlib

        module, function, _ = TOOLS[args[0]]
        return getattr(importlib.import_module(module), function)(args[1:])
    if not args[0].startswith("-") and args[0] not in LIGHTNING:
        print(f"fer-lightning: unknown subcommand {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    from fer_lightning.errors import UserInputError
    from fer_lightning.training.cluster import LaunchError

    try:
        lightning_main(args)
    except (LaunchError, UserInputError) as err:
        print(f"fer-lightning: {err}", file=sys.stderr)
        return 2
    except SystemExit as err:
        if type(err).__name__ != "SIGTERMException":
            raise
        # Lightning ends a fit on SIGTERM with SystemExit(None), i.e. status 0: a scheduler would
        # record a killed run as a success
        print("fer-lightning: stopped by SIGTERM before the run finished (no finished.json is written); resume it "
              "with the same command and --ckpt_path last", file=sys.stderr)
        return 128 + 15
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
