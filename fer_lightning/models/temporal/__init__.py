"""Temporal models over per-frame features, by name (``model.net.temporal``): ``lstm`` (the
paper's, the default), ``gru``, ``tcn``, ``transformer``; each causal with ``bidirectional:
false``. A new one is one module here with a :func:`register_temporal` class and its test."""

from fer_lightning.models.temporal import lstm as _lstm  # noqa: F401
from fer_lightning.models.temporal import tcn as _tcn  # noqa: F401
from fer_lightning.models.temporal import transformer as _transformer  # noqa: F401
from fer_lightning.models.temporal.lstm import TemporalGRU, TemporalLSTM
from fer_lightning.models.temporal.registry import create_temporal, list_temporal, register_temporal
from fer_lightning.models.temporal.tcn import TemporalConvNet
from fer_lightning.models.temporal.transformer import TemporalTransformer

__all__ = ["TemporalConvNet", "TemporalGRU", "TemporalLSTM", "TemporalTransformer", "create_temporal",
           "list_temporal", "register_temporal"]
