"""Temporal model over per-frame features."""

from __future__ import annotations

from torch import Tensor, nn


class TemporalLSTM(nn.Module):
    """A (bi)directional LSTM over (B, T, F) features; ``num_layers=0`` passes features through.

    Bidirectional looks at the whole clip (offline scoring, the paper's setting); a
    unidirectional one is causal and suits online use.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 256,
        num_layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.lstm = (
            nn.LSTM(
                input_size,
                hidden_size,
                num_layers=num_layers,
                batch_first=True,
                bidirectional=bidirectional,
                dropout=dropout if num_layers > 1 else 0.0,
            )
            if num_layers > 0
            else None
        )
        self.output_size = hidden_size * (2 if bidirectional else 1) if num_layers > 0 else input_size

    @property
    def is_causal(self) -> bool:
        """Whether each output depends on the current and earlier frames only (streamable)."""
        return self.lstm is None or not self.lstm.bidirectional

    def forward(self, features: Tensor, state=None) -> tuple[Tensor, object]:
        """(B, T, F) features and the state after an earlier chunk (None: a clip's start) ->
        (B, T, output_size) and the state after this chunk (None without an LSTM)."""
        if self.lstm is None:
            return features, None
        return self.lstm(features, state)
