"""Where and at which precision inference runs (``--device``, ``--precision``)."""

from __future__ import annotations

import torch

from fer_lightning.inference.settings import PRECISIONS


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA where there is one, else the CPU) or a torch device name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


AUTOCAST_DTYPES = dict(zip(PRECISIONS, (None, torch.bfloat16, torch.float16), strict=True))


def inference_autocast(device: torch.device, precision: str):
    """The autocast context for inference at a trainer precision name (``32-true``: none)."""
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of {', '.join(AUTOCAST_DTYPES)}, got {precision!r}")
    dtype = AUTOCAST_DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
