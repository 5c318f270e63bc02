"""LightningCLI as ``fer-lightning fit|validate|test`` runs it. Imported only when one of those
runs (``--help`` of the command and of the tools answers without Lightning).

Before any class is built, :meth:`FerLightningCLI.before_instantiate_classes` places the run
(one folder, a sweep agent's own), resolves the emotion classes for data and model alike,
resolves ``--ckpt_path last`` and checks the checkpoint, checks fit-only settings, and points a
resumed fit at the run it continues; each step is a method of its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from fer_lightning.checkpoints import resumable_checkpoint, resume_facts
from fer_lightning.cli.launch_checks import (
    check_checkpoint_fits,
    check_init_from,
    continue_run,
    training_on_gpu,
)
from fer_lightning.data.datamodule import AffectDataModule, resolve_class_names
from fer_lightning.models.backbone import check_backbone_name
from fer_lightning.models.module import AffectModule
from fer_lightning.models.temporal import list_temporal
from fer_lightning.training.callbacks import TracePlot, run_dir
from fer_lightning.training.cluster import (
    LaunchError,
    check_hpc_owner,
    check_launch,
    hpc_checkpoint,
    in_slurm_job,
)

__all__ = ["AffectDataModule", "AffectModule", "FerLightningCLI", "LoggedConfig", "evaluate_best"]

class LoggedConfig(SaveConfigCallback):
    """Saves config.yaml in the run folder (LightningCLI's default) and logs the full
    resolved config to every logger (W&B shows it as the run's config)."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        config = self.parser.dump(self.config, skip_none=False, format="json")
        for logger in trainer.loggers:
            logger.log_hyperparams(json.loads(config))

class FerLightningCLI(LightningCLI):
    """LightningCLI with the project's launch checks, run placement, trainer plugins (atomic
    checkpoints, SLURM requeue) and the final table after ``fit --evaluate_after_fit``."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # no predict: the datamodule has no predict split; `fer-lightning predict` runs on videos
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def before_instantiate_classes(self) -> None:
        check_launch()
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        loggers = cfg["trainer"].get("logger")
        loggers = loggers if isinstance(loggers, list) else [loggers] if loggers else []
        self._place_run(cfg, loggers)
        self._resolve_class_names(cfg)
        check_backbone_name(cfg["model"]["net"]["backbone"])  # before the loggers make the run folder
        if (temporal := cfg["model"]["net"]["temporal"]) not in list_temporal():
            raise LaunchError(f"model.net.temporal: unknown {temporal!r}; known: {', '.join(list_temporal())}")
        ckpt = self._resolve_ckpt_path(cfg)
        if self.subcommand != "fit":
            return
        self._check_fit_settings(cfg)
        self._continue_or_initialise(cfg, loggers, ckpt)

    def _place_run(self, cfg, loggers: list) -> None:
        """One folder for the whole run: checkpoints, HPC checkpoints, CSV logs, W&B files.

        It is ``--run_root``, else ``trainer.default_root_dir``, else derived once from the data
        (``runs/<task>_<dataset>``: ``runs/finetune_recola``), so an experiment file never writes
        its path; every logger's ``save_dir`` follows it and the W&B run is named after it. A
        sweep agent's run gets a folder of its own below it, so agents side by side never share
        one."""
        data = cfg["data"]
        given = cfg.get("run_root")
        experiment = given or cfg["trainer"].get("default_root_dir") or \
            str(Path("runs") / f"{data.get('task')}_{data.get('dataset')}")
        root = experiment
        # wandb agent sets WANDB_SWEEP_ID; the offline engine (fer-lightning sweep) FER_SWEEP_ID
        sweep = os.environ.get("WANDB_SWEEP_ID") or os.environ.get("FER_SWEEP_ID")
        sweep_run = os.environ.get("WANDB_RUN_ID")
        if not given and sweep and sweep_run and self.subcommand == "fit":
            root = str(Path(experiment) / f"sweep-{Path(sweep).name}" / sweep_run)
        cfg["trainer"]["default_root_dir"] = root
        for logger in loggers:
            args = getattr(logger, "init_args", None)
            if args is None:
                continue
            if "save_dir" in args:
                args.save_dir = root
            if str(getattr(logger, "class_path", "")).endswith("WandbLogger") and "name" in args and not args.name:
                args.name = Path(experiment).name

    @staticmethod
    def _resolve_class_names(cfg) -> None:
        """The emotion classes, for data and model alike, before the model is built (its logits
        follow the data's class list)."""
        try:
            names = resolve_class_names(cfg["data"].get("class_names"), cfg["data"].get("dataset"),
                                        cfg["data"].get("task"))
        except ValueError as err:
            raise LaunchError(str(err)) from err
        cfg["data"]["class_names"] = cfg["model"]["class_names"] = list(names)

    def _resolve_ckpt_path(self, cfg) -> str | None:
        """``--ckpt_path last`` as the run folder's newest resumable checkpoint (fit resumes it;
        validate and test score it, never random weights); a checkpoint file must fit the model."""
        root = cfg["trainer"].get("default_root_dir") or "."
        ckpt = cfg.get("ckpt_path")
        if ckpt == "last":
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
        return ckpt

    @staticmethod
    def _check_fit_settings(cfg) -> None:
        """Settings a fit cannot honour on this strategy or device: one sentence before any work."""
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
        if trainer.get("sync_batchnorm") and not training_on_gpu(trainer.get("accelerator")):
            raise LaunchError("trainer.sync_batchnorm: SyncBatchNorm trains on GPUs only (torch's kernel); "
                              "leave it false on CPU (validate and test accept it: BatchNorm does not sync "
                              "in eval mode)")

    @staticmethod
    def _continue_or_initialise(cfg, loggers: list, ckpt: str | None) -> None:
        """A resumed fit (``--ckpt_path``, or a requeued SLURM job's HPC checkpoint) continues its
        run folder (log version, best-k bookkeeping) and its W&B run; a new one checks
        ``model.init_from`` (a resumed run keeps its weights and does not read it)."""
        root = cfg["trainer"].get("default_root_dir") or "."
        if not ckpt and in_slurm_job() and (hpc := hpc_checkpoint(root)):
            check_hpc_owner(hpc)
            print(f"requeued SLURM job: resuming from {hpc}", flush=True)
            ckpt = str(hpc)
        if ckpt and Path(ckpt).is_file():
            continue_run(loggers, resume_facts(ckpt), ckpt)
        elif not ckpt:
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


def evaluate_best(trainer, model, datamodule) -> dict:
    """Validate and test the best checkpoint of a finished fit; print a CCC summary table."""
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
