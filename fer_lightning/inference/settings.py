"""Settings of ``fer-lightning predict``, in a module of their own so that the command line
reads them (``--help``, defaults) without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Precision = Literal["32-true", "bf16-mixed", "16-mixed"]
"""Precisions a trained model runs at (trainer names; the mixed ones autocast)."""
PRECISIONS = get_args(Precision)


@dataclass
class PredictConfig:
    """How faces are found and cropped and how the model runs over a video.

    Args:
        detect_every: run the face detector every K frames
        smooth: box smoothing window, frames (1: off)
        min_face_size: smallest face searched, pixels
        crop: face crops aligned on landmarks (aligned) or the box's square (box); null: as the
            checkpoint's training data
        margin: context around the face, as a fraction of its size; null: as the checkpoint's data
        window: frames per window (bidirectional models); null: the training clip length
        overlap: fraction of a window that consecutive windows share
        batch_size: windows per forward pass (bidirectional models)
        chunk: frames per forward pass (causal models)
        render: also write an annotated MP4 per video
        device: auto, cpu, cuda, cuda:1 ...
        precision: 32-true, or bf16-mixed / 16-mixed (autocast on the device, as in training)
        faceless: frames without a face: none (no value, the CSV leaves them empty), interpolate
            (between the nearest face frames' predictions, as evaluation scores them), hold (the
            last face frame's) or model (the model's output on the black frame); has_face says
            which frames they are either way
        abaw: also write abaw/<video>.txt, ABAW's valence-arousal format (a row for every frame;
            needs faceless other than none)
    """

    detect_every: int = 5
    smooth: int = 5
    min_face_size: int = 40
    crop: Literal["aligned", "box"] | None = None
    margin: float | None = None
    window: int | None = None
    overlap: float = 0.5
    batch_size: int = 8
    chunk: int = 32
    render: bool = False
    device: str = "auto"
    precision: Precision = "32-true"
    faceless: Literal["none", "interpolate", "hold", "model"] = "none"
    abaw: bool = False
