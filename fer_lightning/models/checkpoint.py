"""A trained model back from its checkpoint, for the tools that run one (predict, evaluate,
export)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from fer_lightning.models.module import AffectModule
from fer_lightning.models.net_config import NetworkConfig

# a checkpoint's network: ``net`` (flat keys in checkpoints written before model.net)
NETWORK_KEYS = ("net", *(f.name for f in dataclasses.fields(NetworkConfig)))


def load_checkpoint_model(ckpt: str | Path):
    """(AffectModule in eval mode on CPU, datamodule hyperparameters) from a training checkpoint,
    with a clear error for a missing file or a checkpoint that is not a fer-lightning model."""
    path = Path(ckpt)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err
    hp = raw.get("hyper_parameters") if isinstance(raw, dict) else None
    if not hp or not ("net" in hp or "backbone" in hp) or "state_dict" not in raw:
        raise ValueError(f"{path} is not a fer-lightning training checkpoint (no model hyperparameters/state_dict)")
    net = NetworkConfig.from_hparams(hp)
    hp = {k: v for k, v in hp.items() if not k.startswith("_") and k not in NETWORK_KEYS}
    # the weights below are complete: no pretraining run, no hub or local backbone weights are
    # needed, so a model trained from ImageNet weights loads on a compute node without network
    hp["init_from"] = None
    hp["net"] = dataclasses.replace(net, pretrained=False, backbone_checkpoint=None)
    model = AffectModule(**hp)
    missing, unexpected = model.load_state_dict(raw["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not match its own architecture: missing {missing[:5]}, unexpected {unexpected[:5]}")
    # LightningCLI stores how it built the datamodule (``_instantiator``): not a data setting
    data = {k: v for k, v in (raw.get("datamodule_hyper_parameters") or {}).items() if not k.startswith("_")}
    return model.eval(), data
