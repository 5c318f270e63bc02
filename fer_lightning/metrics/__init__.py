"""Metrics and losses: the functional CCC and its stitching rule, and the torchmetrics wrappers."""

from fer_lightning.metrics.ccc import ConcordanceCC, SequenceConcordanceCC
from fer_lightning.metrics.faceless import FACELESS, fill_faceless
from fer_lightning.metrics.functional import (
           ccc_from_moments,
           ccc_from_sums,
           ccc_loss,
           concordance_cc,
)
from fer_lightning.metrics.stitch import stitch_frames, stitch_windows

__all__ = ["FACELESS", "ConcordanceCC", "SequenceConcordanceCC", "fill_faceless", "ccc_from_moments", "ccc_from_sums", "ccc_loss",
           "concordance_cc", "stitch_frames", "stitch_windows"]
