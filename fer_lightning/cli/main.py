"""The ``fer-lightning`` command: Lightning's fit, validate and test on experiment files, plus
the project's tools, all in one dialect (``--config FILE``, ``--key value``, ``--section.key
value``; ``--help`` shows defaults).

    fer-lightning fit --config experiments/finetune_synthetic.yaml [--config experiments/presets/debug.yaml] [--model.lr=3e-4]
    fer-lightning validate --config experiments/finetune_synthetic.yaml --ckpt_path CKPT
    fer-lightning synth --out DIR [--videos N --seconds S --fps F --seed K]
    fer-lightning preprocess --input PATH... --output STORE [--detect_every K --faces all --workers W]
    fer-lightning data check --config EXPERIMENT [--data.root DIR]
    fer-lightning data check --dataset NAME --root DIR [--dataset_args JSON --face_store STORE]
    fer-lightning predict --ckpt CKPT --input VIDEO_OR_FOLDER --out DIR [--render true]
    fer-lightning evaluate --ckpt CKPT [--config EXPERIMENT --config PRESET --data.root DIR --split test]
    fer-lightning submit --ckpt CKPT --sample ABAW_SAMPLE --faces CROPPED_ALIGNED --out FILE [--postprocess JSON_FILE]
    fer-lightning export --ckpt CKPT [--format onnx|torchscript --out PATH]
    fer-lightning sweep SWEEP_FILE [--runs N] [-- fit overrides]
    fer-lightning ablation [--config EXPERIMENT --seeds 0 1 2] [-- fit overrides]
    fer-lightning compare-pretraining [--config COMPARISON --seeds 0 1 --routes ...] [-- fit overrides]

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
    "compare-pretraining": ("fer_lightning.cli.compare", "main",
                            "every pretraining route x temporal model x seed, tested on unseen identities (table + plot)"),
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
    from fer_lightning.cli.compose import expand_args
    from fer_lightning.cli.lightning_cli import (
        AffectDataModule,
        AffectModule,
        FerLightningCLI,
        LoggedConfig,
    )

    return FerLightningCLI(
        AffectModule,
        AffectDataModule,
        args=expand_args(given),  # composed experiment files as the files they list
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

    from fer_lightning.cli.compose import expand_args
    from fer_lightning.cli.lightning_cli import AffectDataModule, AffectModule, FerLightningCLI

    class ParseOnly(FerLightningCLI):
        def before_instantiate_classes(self) -> None:
            pass

        def instantiate_classes(self) -> None:
            pass

    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "checkpoint_data.yaml"
        first.write_text(yaml.safe_dump({"data": json.loads(json.dumps(base))}))
        args = expand_args(["--config", str(first)] + [a for c in configs for a in ("--config", c)] + list(overrides))
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
