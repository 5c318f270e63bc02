"""Per-frame face feature extractor: any timm model, built without network by default."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import Tensor, nn


class FrameEncoder(nn.Module):
    """A timm backbone applied to every frame of a clip, returning pooled features.

    Input is uint8 (B, T, 3, H, W) straight from the DataLoader; conversion to float and the
    backbone's normalisation happen here, on whatever device the model lives on, so the
    host-to-device copy moves uint8 (4x fewer bytes) and the CPU workers skip the arithmetic.

    Args:
        name: timm model name (``resnet50``; tests use ``test_resnet``).
        pretrained: load timm's hub weights (needs network or a warm cache); off by default.
        checkpoint_path: local weights file for the backbone (timm or torchvision layout); a
            classifier of another size in it is dropped.
        channels_last: run convolutions in NHWC, faster with cuDNN and oneDNN.
    """

    def __init__(
        self,
        name: str = "resnet50",
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        kwargs: dict = {"num_classes": 0}
        if checkpoint_path:
            path = Path(checkpoint_path)
            if not path.is_file():
                raise FileNotFoundError(f"backbone checkpoint not found: {path}")
            kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
            pretrained = True  # timm loads "pretrained" weights from the local file, no network
        self.model = timm.create_model(name, pretrained=pretrained, **kwargs)
        self.num_features: int = self.model.num_features
        cfg = self.model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1) * 255, persistent=False)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def forward(self, frames: Tensor) -> Tensor:
        """uint8 or float (B, T, 3, H, W) in 0..255 -> features (B, T, F)."""
        b, t = frames.shape[:2]
        x = frames.reshape(b * t, *frames.shape[2:])
        x = (x.to(self.mean.dtype) - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x).reshape(b, t, -1)
