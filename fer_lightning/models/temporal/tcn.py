"""A temporal convolution network (Bai, Kolter and Koltun, 2018): residual blocks of dilated
1-D convolutions over time, dilation doubling per block (1, 2, 4 ...), kernel 3.

Causal (``bidirectional: false``): each block pads on the left only, so a frame sees the
``2 * (2**num_layers - 1)`` frames before it; over a stream the state is each block's last
inputs, so chunk by chunk equals the whole. Bidirectional: centred padding, the same reach on
both sides (not streamable)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fer_lightning.models.temporal.registry import ProjectedTemporal, register_temporal

KERNEL = 3


@register_temporal("tcn")
class TemporalConvNet(ProjectedTemporal):
    def __init__(self, input_size: int, hidden_size: int = 256, num_layers: int = 2, bidirectional: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional)
        self.dilations = [2 ** i for i in range(num_layers)]
        self.convs = nn.ModuleList(nn.Conv1d(hidden_size, hidden_size, KERNEL, dilation=d) for d in self.dilations)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: Tensor, state=None) -> tuple[Tensor, object]:
        """(B, T, F) -> (B, T, hidden_size); causal: with each block's last inputs as state."""
        if self.project is None:
            return features, None
        x = self.project(features).transpose(1, 2)  # (B, H, T)
        carried = []
        for i, (conv, d) in enumerate(zip(self.convs, self.dilations, strict=True)):
            reach = (KERNEL - 1) * d
            if self.causal:
                past = state[i] if state is not None else x.new_zeros(x.shape[0], x.shape[1], reach)
                padded = torch.cat([past, x], dim=2)
                carried.append(padded[:, :, -reach:] if reach else padded[:, :, :0])
            else:
                padded = F.pad(x, (reach // 2, reach - reach // 2))
            x = x + self.dropout(F.gelu(conv(padded)))
        return x.transpose(1, 2), (carried if self.causal else None)
