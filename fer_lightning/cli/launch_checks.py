"""Checks a fit, validate or test makes before it builds anything (the run folder, the W&B
run): a checkpoint that fits the model, an ``init_from`` to take, the run a resumed fit
continues. Each failure is a :class:`~fer_lightning.training.cluster.LaunchError`: one sentence
naming the option."""

from __future__ import annotations

from pathlib import Path

from fer_lightning.checkpoints import is_newest_in_its_run, latest_checkpoint, load_checkpoint_file
from fer_lightning.models.net_config import NetworkConfig
from fer_lightning.training.cluster import LaunchError


def training_on_gpu(accelerator) -> bool:
    """Whether ``trainer.accelerator`` trains on a GPU here."""
    import torch

    name = str(accelerator or "auto").lower()
    return name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available())


def _read_checkpoint(path: str, option: str) -> dict:
    """A checkpoint's contents, or a LaunchError that names the option and says what is wrong."""
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
    saved = _read_checkpoint(path, option)["hyper_parameters"]
    net = model.get("net")
    net = net.as_dict() if hasattr(net, "as_dict") else dict(net or {})  # a parsed Namespace, or a mapping
    here = {"task": model.get("task"), **net}
    there = {"task": saved.get("task"),
             **(NetworkConfig.from_hparams(saved).as_dict() if "net" in saved or "backbone" in saved else {})}
    keys = ("task", "backbone", "hidden_size", "num_layers", "bidirectional")
    differ = [f"{k} {there[k]!r} there, {here.get(k)!r} here" for k in keys
              if there.get(k) is not None and here.get(k) is not None and there[k] != here[k]]
    if differ:
        hint = (" (a pretraining checkpoint starts a fine-tuning run with --model.init_from, not --ckpt_path)"
                if there["task"] != here["task"] else "")
        raise LaunchError(f"{option} {path} is not a checkpoint of this model: " + "; ".join(differ)
                          + f"{hint}; give a checkpoint of this experiment, or the experiment file it was trained with")


def check_init_from(model: dict, dataset: str | None) -> None:
    """``model.init_from``: a readable fer-lightning checkpoint, or ``latest`` with a finished
    pretraining run to take; checked before the run folder and the W&B run are made."""
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
