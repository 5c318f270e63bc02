"""A transformer encoder over time: pre-norm blocks (attention, then a GELU MLP), four heads,
sinusoidal positions counted from the start of the clip (or stream). Written out in plain
operations rather than ``nn.TransformerEncoder``, whose fused inference path has no ONNX form and
whose traced shapes do not stay dynamic: this one exports with a dynamic time axis.

Causal (``bidirectional: false``): a frame attends to itself and earlier frames; over a stream
the state holds the last ``CONTEXT`` frames' inputs and the position reached, so chunk by chunk
equals the whole while a stream is shorter than ``CONTEXT``, and memory stays bounded after.
Bidirectional: every frame of the clip attends to every other (not streamable)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from fer_lightning.models.temporal.registry import ProjectedTemporal, register_temporal

CONTEXT = 512  # frames a causal stream keeps (about 17 s at 30 fps)


def sinusoidal_positions(positions: Tensor, size: int) -> Tensor:
    """(T,) positions -> (T, size) sinusoidal encodings (Vaswani et al., 2017)."""
    half = size // 2
    rates = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / max(half, 1))
    angles = positions.float()[:, None] * rates[None]
    out = torch.zeros(positions.shape[0], size, device=positions.device)
    out[:, 0:2 * half:2], out[:, 1:2 * half:2] = torch.sin(angles), torch.cos(angles)
    return out


class Block(nn.Module):
    """One pre-norm transformer block over (B, T, size)."""

    def __init__(self, size: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(size), nn.LayerNorm(size)
        self.qkv, self.out = nn.Linear(size, 3 * size), nn.Linear(size, size)
        self.mlp = nn.Sequential(nn.Linear(size, 2 * size), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * size, size))
        self.drop = nn.Dropout(dropout)
        self.scale = (size // heads) ** -0.5

    def forward(self, x: Tensor, future: Tensor | None) -> Tensor:
        """``future``: (T, T), true where a frame must not attend (causal), or None."""
        q, k, v = (t.transpose(1, 2) for t in self.qkv(self.norm1(x)).unflatten(-1, (3, self.heads, -1)).unbind(2))
        scores = (q @ k.transpose(-1, -2)) * self.scale  # (B, heads, T, T)
        if future is not None:
            scores = scores.masked_fill(future, float("-inf"))
        attended = (self.drop(scores.softmax(-1)) @ v).transpose(1, 2).flatten(2)
        x = x + self.drop(self.out(attended))
        return x + self.drop(self.mlp(self.norm2(x)))


@register_temporal("transformer")
class TemporalTransformer(ProjectedTemporal):
    def __init__(self, input_size: int, hidden_size: int = 256, num_layers: int = 2, bidirectional: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional)
        self.hidden_size = hidden_size
        heads = next(h for h in (4, 2, 1) if hidden_size % h == 0)
        self.blocks = nn.ModuleList(Block(hidden_size, heads, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, features: Tensor, state=None) -> tuple[Tensor, object]:
        """(B, T, F) -> (B, T, hidden_size); causal: with the kept past and position as state."""
        if self.project is None:
            return features, None
        x = self.project(features)
        past, start = state if state is not None else (x[:, :0], 0)
        whole = torch.cat([past, x], dim=1) if self.causal else x
        positions = torch.arange(start, start + whole.shape[1], device=x.device)
        h = whole + sinusoidal_positions(positions, self.hidden_size).to(whole.dtype)
        # a frame attends to itself and the frames before it; built from the positions so that
        # an exported graph keeps the time axis dynamic
        future = positions[None, :] > positions[:, None] if self.causal else None
        for block in self.blocks:
            h = block(h, future)
        out = self.norm(h)[:, -x.shape[1]:]
        if not self.causal:
            return out, None
        kept = whole[:, -CONTEXT:]
        return out, (kept, start + whole.shape[1] - kept.shape[1])
