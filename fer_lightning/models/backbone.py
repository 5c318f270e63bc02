"""Per-frame face feature extractor: any timm model, built without network by default."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from fer_lightning.errors import UserInputError


def check_backbone_name(name: str) -> None:
    """Raise :class:`~fer_lightning.errors.UserInputError` for a name timm does not know,
    naming the closest ones it does."""
    base = name.split(".")[0]  # a pretrained tag (resnet50.a1_in1k) is timm's to check
    if ":" in name or timm.is_model(base):  # hf-hub:org/model, local-dir:PATH: timm resolves those
        return
    import difflib

    close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; the closest timm names: {', '.join(close)}" if close else "; timm.list_models('*resnet*') lists them"
    raise UserInputError(f"model.net.backbone {name!r} is not a timm model{hint}")


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
        check_backbone_name(name)
        try:
            try:  # a ViT takes frames of any size (its position embeddings resampled), as faces come
                self.model = timm.create_model(name, pretrained=pretrained, dynamic_img_size=True, **kwargs)
            except TypeError:  # not a ViT: convolutions need no telling
                self.model = timm.create_model(name, pretrained=pretrained, **kwargs)
        except (OSError, RuntimeError) as err:
            if not pretrained or checkpoint_path:
                raise
            # no network and a cold cache: the hub's retries end in a long traceback that never
            # says what to do
            raise UserInputError(
                f"model.net.pretrained=true: timm could not load the ImageNet weights of {name} ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200]}). Where there is no network, fill the cache on a machine that has "
                f"it (python -c \"import timm; timm.create_model('{name}', pretrained=True)\") and run with "
                "HF_HUB_OFFLINE=1, or give the weights file as --model.net.backbone_checkpoint=PATH") from err
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
