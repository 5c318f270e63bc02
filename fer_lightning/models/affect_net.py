"""The network: per-frame backbone -> temporal model -> per-frame head. A plain nn.Module."""

from __future__ import annotations

from torch import Tensor, nn

from fer_lightning.models.backbone import FrameEncoder
from fer_lightning.models.temporal import TemporalLSTM


class AffectNet(nn.Module):
    """Video clip in, one prediction per frame out.

    Args:
        num_outputs: D regression outputs (arousal, valence, ...) or C class logits.
        backbone: timm model name. pretrained / backbone_checkpoint: see :class:`FrameEncoder`.
        hidden_size, num_layers, bidirectional: the LSTM (``num_layers=0``: no temporal model).
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
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.encoder = FrameEncoder(backbone, pretrained, backbone_checkpoint, channels_last)
        self.temporal = TemporalLSTM(self.encoder.num_features, hidden_size, num_layers, bidirectional, dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.temporal.output_size, num_outputs)

    def forward(self, frames: Tensor) -> Tensor:
        """(B, T, 3, H, W) uint8 -> (B, T, num_outputs)."""
        return self.head(self.dropout(self.temporal(self.encoder(frames))))
