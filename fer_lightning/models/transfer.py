"""Transfer from pretraining: load the face feature extractor (and optionally the LSTM) of a
pretraining checkpoint into a fine-tuning network."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fer_lightning.models.net_config import NetworkConfig

PARTS = ("encoder", "temporal")


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
    hp = ckpt.get("hyper_parameters") or {}
    source_backbone = NetworkConfig.from_hparams(hp).backbone if ("net" in hp or "backbone" in hp) else "?"
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


def load_encoder(checkpoint: str | Path):
    """A network holding the frozen face feature extractor of a pretraining checkpoint (its
    ``forward_features``; no temporal model), in eval mode, and its backbone name (read from
    the checkpoint's hyper-parameters)."""
    from fer_lightning.models.affect_net import AffectNet  # imports timm

    hp = torch.load(checkpoint, map_location="cpu", weights_only=True).get("hyper_parameters", {})
    if "net" not in hp and "backbone" not in hp:
        raise ValueError(f"{checkpoint} names no backbone in its hyper-parameters; is it an AffectModule checkpoint?")
    backbone = NetworkConfig.from_hparams(hp).backbone
    net = AffectNet(1, backbone=backbone, hidden_size=8, num_layers=0)
    load_parts(net, checkpoint, ("encoder",))
    return net.eval(), backbone
