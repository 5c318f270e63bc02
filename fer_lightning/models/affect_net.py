"""The network: per-frame backbone -> temporal model -> per-frame head. A plain nn.Module."""

from __future__ import annotations

from torch import Tensor, nn

from fer_lightning.models.backbone import FrameEncoder
from fer_lightning.models.net_config import NetworkConfig
from fer_lightning.models.temporal import create_temporal


class AffectNet(nn.Module):
    """Video clip in, one prediction per frame out, in three stages as timm shapes a model:
    :meth:`forward_features` (frames -> per-frame features, the face encoder),
    :meth:`forward_temporal` (features -> temporal features, with a state to carry between the
    chunks of a stream), :meth:`forward_head` (-> outputs). ``is_causal`` says whether a frame's
    output depends on earlier frames only, so that the net can run over a stream chunk by chunk.
    Training, predict, the feature cache and export use these and nothing else.

    Args:
        num_outputs: D regression outputs (arousal, valence, ...) or C class logits.
        backbone: timm model name. pretrained / backbone_checkpoint: see :class:`FrameEncoder`.
        temporal: the temporal model by name (:mod:`fer_lightning.models.temporal`: lstm, gru, tcn,
            transformer). hidden_size, num_layers, bidirectional: its width, depth and whether it
            sees the whole clip (false: causal, streamable); ``num_layers=0``: none.
        dropout: between LSTM layers and before the head.
    """

    def __init__(
        self,
        num_outputs: int,
        backbone: str = "resnet50",
        pretrained: bool = False,
        backbone_checkpoint: str | None = None,
        hidden_size: int = 256,
        num_layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.0,
        channels_last: bool = True,
        temporal: str = "lstm",
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.encoder = FrameEncoder(backbone, pretrained, backbone_checkpoint, channels_last)
        self.temporal = create_temporal(temporal, self.encoder.num_features, hidden_size, num_layers, bidirectional,
                                        dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.temporal.output_size, num_outputs)

    @classmethod
    def from_config(cls, config: NetworkConfig, num_outputs: int, pretrained: bool | None = None) -> AffectNet:
        """The network ``config`` describes, with ``num_outputs`` outputs (``pretrained``
        overrides the config's: a run whose encoder comes from a checkpoint never asks the hub)."""
        return cls(num_outputs, backbone=config.backbone,
                   pretrained=config.pretrained if pretrained is None else pretrained,
                   backbone_checkpoint=config.backbone_checkpoint, hidden_size=config.hidden_size,
                   num_layers=config.num_layers, bidirectional=config.bidirectional, dropout=config.dropout,
                   temporal=config.temporal)

    @property
    def num_features(self) -> int:
        """Per-frame feature size of :meth:`forward_features`."""
        return self.encoder.num_features

    @property
    def is_causal(self) -> bool:
        return self.temporal.is_causal

    def forward_features(self, frames: Tensor) -> Tensor:
        """(B, T, 3, H, W) uint8 face crops -> (B, T, F) per-frame features."""
        return self.encoder(frames)

    def forward_temporal(self, features: Tensor, state=None) -> tuple[Tensor, object]:
        """(B, T, F) features (and the state after the previous chunk of a causal stream) ->
        (B, T, H) and the state after this chunk."""
        return self.temporal(features, state)

    def forward_head(self, features: Tensor) -> Tensor:
        """(B, T, H) temporal features -> (B, T, num_outputs)."""
        return self.head(self.dropout(features))

    def forward(self, frames: Tensor) -> Tensor:
        """(B, T, 3, H, W) uint8 -> (B, T, num_outputs)."""
        return self.forward_head(self.forward_temporal(self.forward_features(frames))[0])
