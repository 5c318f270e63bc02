"""The network of a run as plain data (``model.net``): what an experiment file sets and a
checkpoint records. No torch here, so the command line and the launch checks read it cheaply."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from fer_lightning.errors import UserInputError


@dataclass(frozen=True)
class NetworkConfig:
    """The network of a run, as ``model.net`` in an experiment file: the frame encoder, the
    temporal model and the dropout before the head. What a checkpoint records of its network.

    Attributes:
        backbone: the timm frame encoder, any timm name with an optional weights tag
            (``resnet50``, ``resnet50.a1_in1k``, ``resnet18.tv_in1k``).
        pretrained: start the encoder from timm's hub weights for that name and tag (ImageNet):
            downloaded once into the Hugging Face cache (``HF_HOME``); a node without network
            needs that cache warmed first (docs/training.md, "Start from ImageNet weights").
            Checkpoints hold the trained weights, so evaluate, predict and export never ask the
            hub; a run with ``model.init_from`` takes its encoder from there and does not either.
        backbone_checkpoint: a local weights file for the encoder instead (timm or torchvision
            layout; a classifier of another size in it is dropped), no network at all.
        temporal: the temporal model by name (:mod:`fer_lightning.models.temporal`): ``lstm`` (the
            paper's), ``gru``, ``tcn`` (dilated convolutions), ``transformer``.
        hidden_size, num_layers, bidirectional: its width, depth, and whether it sees the whole
            clip (false: the causal form, streamable in ``predict``); ``num_layers: 0``: none.
        dropout: between LSTM layers and before the head.
    """

    backbone: str = "resnet50"
    pretrained: bool = False
    backbone_checkpoint: str | None = None
    temporal: str = "lstm"
    hidden_size: int = 256
    num_layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name, ok, what in (("hidden_size", self.hidden_size >= 1, ">= 1"), ("num_layers", self.num_layers >= 0, ">= 0"),
                               ("dropout", 0 <= self.dropout < 1, "in [0, 1)")):
            if not ok:
                raise UserInputError(f"model.net.{name} must be {what}, got {getattr(self, name)}")

    @classmethod
    def of(cls, value: NetworkConfig | Mapping[str, Any] | None) -> NetworkConfig:
        """A config from itself, a mapping (a checkpoint's ``net``) or None (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise UserInputError(f"model.net: unknown {', '.join(unknown)}; it takes {', '.join(sorted(known))}")
        return cls(**dict(value))

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any]) -> NetworkConfig:
        """The network a checkpoint's hyper-parameters describe: their ``net``, or the flat keys
        (``backbone``, ``hidden_size`` ...) that checkpoints written before ``model.net`` hold."""
        if isinstance(hparams.get("net"), Mapping):
            return cls.of(hparams["net"])
        return cls(**{f.name: hparams[f.name] for f in fields(cls) if f.name in hparams})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
