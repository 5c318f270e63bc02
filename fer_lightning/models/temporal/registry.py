"""Temporal models by name: each turns (B, T, F) per-frame features into (B, T, H) features,
carrying a state from one chunk of a stream to the next when it is causal.

A temporal model is one module with one decorated class: it takes ``(input_size, hidden_size,
num_layers, bidirectional, dropout)``, has ``output_size`` and ``is_causal``, and
``forward(features, state=None) -> (outputs, state)`` such that running a causal model over a
stream chunk by chunk, passing the state on, gives what running it over the whole stream gives.
``bidirectional: false`` asks for the causal form; ``num_layers: 0`` for none (features pass).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_TEMPORAL: dict[str, type[nn.Module]] = {}


def register_temporal(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a temporal model available as ``model.net.temporal: <name>``."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        _TEMPORAL[name] = cls
        return cls

    return wrap


def list_temporal() -> list[str]:
    return sorted(_TEMPORAL)


def create_temporal(name: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
                    dropout: float) -> nn.Module:
    """The temporal model registered as ``name``."""
    if name not in _TEMPORAL:
        from fer_lightning.errors import UserInputError

        raise UserInputError(f"model.net.temporal: unknown {name!r}; known: {', '.join(list_temporal())}")
    return _TEMPORAL[name](input_size, hidden_size, num_layers, bidirectional, dropout)


class ProjectedTemporal(nn.Module):
    """What the convolutional and attention models share: features projected to
    ``hidden_size`` first (nothing at all with ``num_layers=0``: features pass), and the causal
    form with ``bidirectional: false``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool) -> None:
        super().__init__()
        self.causal = not bidirectional
        self.project = nn.Linear(input_size, hidden_size) if num_layers > 0 else None
        self.output_size = hidden_size if num_layers > 0 else input_size

    @property
    def is_causal(self) -> bool:
        """Whether each output depends on the current and earlier frames only (streamable)."""
        return self.causal or self.project is None
