"""Recurrent temporal models: the paper's (Bi)LSTM, and a GRU."""

from __future__ import annotations

from torch import Tensor, nn

from fer_lightning.models.temporal.registry import register_temporal


class _Recurrent(nn.Module):
    """A (bi)directional recurrent net over (B, T, F) features; ``num_layers=0`` passes
    features through. Bidirectional looks at the whole clip (offline scoring, the paper's
    setting); a unidirectional one is causal: its hidden state carries a stream on."""

    cell: type[nn.RNNBase] = nn.LSTM
    attribute = "rnn"  # the submodule's name, and so its weights' names in checkpoints

    def __init__(self, input_size: int, hidden_size: int = 256, num_layers: int = 2, bidirectional: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        rnn = (self.cell(input_size, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=bidirectional,
                         dropout=dropout if num_layers > 1 else 0.0) if num_layers > 0 else None)
        setattr(self, self.attribute, rnn)
        self.output_size = hidden_size * (2 if bidirectional else 1) if num_layers > 0 else input_size

    @property
    def recurrent(self) -> nn.RNNBase | None:
        return getattr(self, self.attribute)

    @property
    def is_causal(self) -> bool:
        """Whether each output depends on the current and earlier frames only (streamable)."""
        return self.recurrent is None or not self.recurrent.bidirectional

    def forward(self, features: Tensor, state=None) -> tuple[Tensor, object]:
        """(B, T, F) features and the state after an earlier chunk (None: a clip's start) ->
        (B, T, output_size) and the state after this chunk (None without a recurrent net)."""
        if self.recurrent is None:
            return features, None
        return self.recurrent(features, state)


@register_temporal("lstm")
class TemporalLSTM(_Recurrent):
    """The paper's temporal model: an LSTM, bidirectional by default (``temporal.lstm.*``)."""

    cell = nn.LSTM
    attribute = "lstm"


@register_temporal("gru")
class TemporalGRU(_Recurrent):
    """A GRU: three gates' weights where the LSTM has four, the same streaming state."""

    cell = nn.GRU
    attribute = "gru"
