"""Transfer from pretraining: load the face feature extractor (and optionally the LSTM) of a
pretraining checkpoint into a fine-tuning network."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

PARTS = ("encoder", "temporal")


def latest_checkpoint(runs: str | Path = "runs", prefix: str = "pretrain") -> Path:
    """The newest checkpoint of the newest run under ``runs/<prefix>*``: its ``best-*.ckpt``
    (by modification time) if it has one, else its ``last.ckpt``."""
    roots = sorted(Path(runs).glob(f"{prefix}*"))
    found = [p for r in roots for p in r.rglob("*.ckpt")]
    if not found:
        raise FileNotFoundError(
            f"no pretraining checkpoint under {Path(runs) / (prefix + '*')}; run `make pretrain` first "
            "or give model.init_from=PATH"
        )
    newest_dir = max(found, key=lambda p: p.stat().st_mtime).parent
    best = sorted(newest_dir.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    return best[-1] if best else max(newest_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)


def load_parts(net: nn.Module, checkpoint: str | Path, parts: tuple[str, ...] = ("encoder",)) -> dict[str, int]:
    """Copy ``parts`` of ``net`` (an :class:`~fer_lightning.models.affect_net.AffectNet`) from a
    Lightning checkpoint of an :class:`~fer_lightning.models.module.AffectModule`.

    Loads with ``weights_only=True`` (no code runs from the file). Every tensor of each part
    must be in the checkpoint with the same shape; otherwise a ValueError lists the missing,
    unexpected and mismatched keys and both backbones. Returns the number of tensors loaded
    per part.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"pretraining checkpoint not found: {path}")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"model.init_parts: unknown {unknown}; choose from {PARTS}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt)
    source_backbone = ckpt.get("hyper_parameters", {}).get("backbone", "?")
    loaded = {}
    for part in parts:
        module = getattr(net, part)
        prefix = f"net.{part}."
        given = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        wanted = module.state_dict()
        missing = sorted(set(wanted) - set(given))
        unexpected = sorted(set(given) - set(wanted))
        shapes = sorted(k for k in set(wanted) & set(given) if wanted[k].shape != given[k].shape)
        if missing or unexpected or shapes:
            def show(keys: list[str]) -> str:
                return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")

            lines = [f"{path} does not fit this model's {part} (checkpoint backbone {source_backbone!r}, "
                     f"this model's {getattr(net, 'backbone_name', '?')!r}):"]
            if missing:
                lines.append(f"  missing from the checkpoint: {show(missing)}")
            if unexpected:
                lines.append(f"  not in this model: {show(unexpected)}")
            if shapes:
                lines.append("  different shapes: " + show([f"{k} {tuple(given[k].shape)} vs {tuple(wanted[k].shape)}"
                                                            for k in shapes]))
            raise ValueError("\n".join(lines))
        module.load_state_dict(given, strict=True)
        loaded[part] = len(given)
    return loaded


def load_checkpoint_model(ckpt: str | Path):
    """(AffectModule in eval mode on CPU, datamodule hyperparameters) from a training checkpoint,
    with a clear error for a missing file or a checkpoint that is not a fer-lightning model."""
    from fer_lightning.models.module import AffectModule  # imports this module

    path = Path(ckpt)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err
    hp = raw.get("hyper_parameters") if isinstance(raw, dict) else None
    if not hp or "backbone" not in hp or "state_dict" not in raw:
        raise ValueError(f"{path} is not a fer-lightning training checkpoint (no model hyperparameters/state_dict)")
    hp = {k: v for k, v in hp.items() if not k.startswith("_")}
    hp["init_from"] = None  # the weights below are complete; no pretraining run is needed
    model = AffectModule(**hp)
    missing, unexpected = model.load_state_dict(raw["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not match its own architecture: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), dict(raw.get("datamodule_hyper_parameters") or {})
