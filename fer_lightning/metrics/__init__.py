"""Metrics and losses."""

from fer_lightning.metrics.ccc import (
    ConcordanceCC,
    SequenceConcordanceCC,
    ccc_from_moments,
    ccc_loss,
)

__all__ = ["ConcordanceCC", "SequenceConcordanceCC", "ccc_from_moments", "ccc_loss"]
