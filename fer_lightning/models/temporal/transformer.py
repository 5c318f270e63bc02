"""A transformer encoder over time: pre-norm layers, four heads, sinusoidal positions counted
from the start of the clip (or stream).

Causal (``bidirectional: false``): a frame attends to itself and earlier frames; over a stream
the state holds the last ``CONTEXT`` frames' inputs and the position reached, so chunk by chunk
equals the whole while a stream is shorter than ``CONTEXT``, and memory stays bounded after.
Bidirectional: every frame of the clip attends to every other (not streamable)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from fer_lightning.models.temporal.registry import register_temporal

CONTEXT = 512  # frames a causal stream keeps (about 17 s at 30 fps)


def sinusoidal_positions(positions: Tensor, size: int) -> Tensor:
    """(T,) positions -> (T, size) sinusoidal encodings (Vaswani et al., 2017)."""
    half = size // 2
    rates = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / max(half, 1))
    angles = positions.float()[:, None] * rates[None]
    out = torch.zeros(len(positions), size, device=positions.device)
    out[:, 0:2 * half:2], out[:, 1:2 * half:2] = torch.sin(angles), torch.cos(angles)
    return out


@register_temporal("transformer")
class TemporalTransformer(nn.Module):
    def __init__(self, input_size: int, hidden_size: int = 256, num_layers: int = 2, bidirectional: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.causal = not bidirectional
        self.hidden_size = hidden_size
        self.project = nn.Linear(input_size, hidden_size) if num_layers > 0 else None
        heads = next(h for h in (4, 2, 1) if hidden_size % h == 0)
        layer = nn.TransformerEncoderLayer(hidden_size, heads, dim_feedforward=2 * hidden_size, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False) if num_layers > 0 else None
        self.output_size = hidden_size if num_layers > 0 else input_size

    @property
    def is_causal(self) -> bool:
        return self.causal or self.project is None

    def forward(self, features: Tensor, state=None) -> tuple[Tensor, object]:
        """(B, T, F) -> (B, T, hidden_size); causal: with the kept past and position as state."""
        if self.project is None:
            return features, None
        x = self.project(features)
        past, start = state if state is not None else (x[:, :0], 0)
        whole = torch.cat([past, x], dim=1) if self.causal else x
        positions = torch.arange(start, start + whole.shape[1], device=x.device)
        h = whole + sinusoidal_positions(positions, self.hidden_size).to(whole.dtype)
        mask = (nn.Transformer.generate_square_subsequent_mask(whole.shape[1], device=x.device, dtype=h.dtype)
                if self.causal else None)
        out = self.encoder(h, mask=mask, is_causal=self.causal)[:, -x.shape[1]:]
        if not self.causal:
            return out, None
        kept = whole[:, -CONTEXT:]
        return out, (kept, start + whole.shape[1] - kept.shape[1])
