"""Clip-consistent augmentation of a whole batch on its device (``data.augment_on: device``).

The DataLoader workers then only decode: on a GPU machine the CPU augmentation costs about two
thirds of a worker (benchmarks/train_throughput.py), while here the whole batch takes one
``grid_sample`` (flip, scale, rotation and translation folded into one affine map per clip) and
one 3x3 colour matrix per clip (brightness, contrast, saturation and hue as a linear map in YIQ
space, the way NVIDIA DALI's ``hsv`` operator does it) with a handful of kernels.

Every frame of a clip gets the same draw, as :class:`~fer_lightning.data.transforms.ClipAugment`
does on the CPU; the draws come from this module's own CPU generator, so they neither disturb
nor depend on the model's random streams.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# RGB -> YIQ (NTSC); Y is the luminance, I and Q the chroma plane that hue rotates and saturation scales
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          dtype=torch.float64)
YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)


def affine_theta(flip: Tensor, scale: Tensor, rotate_deg: Tensor, tx: Tensor, ty: Tensor,
                 height: int, width: int) -> Tensor:
    """(B, 2, 3) sampling matrices for :func:`torch.nn.functional.affine_grid` (``align_corners``
    false) of the forward map ``dst = s R(angle) Flip (src - c) + c + (tx W, ty H)`` in pixels, c
    the image centre; ``flip`` mirrors left-right first. The same map as OpenCV's ``warpAffine``
    with ``M = [A | c + t - A c]``."""
    b = flip.shape[0]
    rad = torch.deg2rad(rotate_deg.double())
    cos, sin = torch.cos(rad), torch.sin(rad)
    a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2) * scale.double().view(b, 1, 1)
    mirror = torch.ones(b, 2, dtype=torch.float64)
    mirror[:, 0] = torch.where(flip.bool(), -1.0, 1.0)
    a = a * mirror.view(b, 1, 2)  # A @ diag(mirror): flip first
    d = torch.tensor([2.0 / width, 2.0 / height], dtype=torch.float64)
    a_inv = torch.linalg.inv(a)
    lin = d.view(1, 2, 1) * a_inv / d.view(1, 1, 2)  # D A^-1 D^-1: normalised output -> input coordinates
    t = torch.stack([tx.double() * width, ty.double() * height], -1)
    shift = -(d.view(1, 2) * (a_inv @ t.unsqueeze(-1)).squeeze(-1))
    return torch.cat([lin, shift.unsqueeze(-1)], -1)


def color_matrix(saturation: Tensor, hue_deg: Tensor) -> Tensor:
    """(B, 3, 3) RGB maps that scale the chroma by ``saturation`` and turn its angle by ``hue_deg``
    while keeping the luminance Y: grey stays grey."""
    b = saturation.shape[0]
    rad = torch.deg2rad(hue_deg.double())
    yiq = torch.zeros(b, 3, 3, dtype=torch.float64)
    yiq[:, 0, 0] = 1.0
    yiq[:, 1, 1], yiq[:, 1, 2] = torch.cos(rad), -torch.sin(rad)
    yiq[:, 2, 1], yiq[:, 2, 2] = torch.sin(rad), torch.cos(rad)
    yiq[:, 1:, 1:] *= saturation.double().view(b, 1, 1)
    return YIQ_TO_RGB @ yiq @ RGB_TO_YIQ


class DeviceClipAugment(nn.Module):
    """Flip, affine jitter and photometric changes of uint8 (B, T, 3, H, W) clips on their device.

    The knobs and their defaults follow the CPU pipeline
    (:class:`~fer_lightning.data.transforms.ClipAugment`): ``flip``, ``affine`` and ``photometric``
    are probabilities per clip; hue and saturation change with half the photometric probability.

    Args:
        flip: probability of a left-right mirror.
        affine: probability of a scale/rotation/translation jitter.
        photometric: probability of a brightness/contrast change.
        scale: range of the zoom factor.
        translate: largest shift, as a fraction of the side.
        rotate: largest rotation, degrees.
        brightness: largest added brightness, as a fraction of 255.
        contrast: largest relative contrast change, about the clip's mean luminance.
        saturation: largest relative chroma change.
        hue: largest hue turn, degrees.
        seed: the draws' generator seed (see :meth:`seed`).

    Returns float32 frames in 0..255 (the backbone normalises them); borders that the affine map
    uncovers are black, as with the CPU pipeline's ``Affine``.
    """

    def __init__(self, flip: float = 0.5, affine: float = 0.5, photometric: float = 0.8,
                 scale: tuple[float, float] = (0.92, 1.08), translate: float = 0.05, rotate: float = 8.0,
                 brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.15, hue: float = 16.0,
                 seed: int = 0) -> None:
        super().__init__()
        for name, p in (("flip", flip), ("affine", affine), ("photometric", photometric)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"data.augment: {name} is a probability, got {p}")
        self.p_flip, self.p_affine, self.p_photometric = flip, affine, photometric
        self.scale, self.translate, self.rotate = scale, translate, rotate
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.generator = torch.Generator().manual_seed(int(seed))

    def seed(self, seed: int) -> None:
        """Restart the draws (e.g. per rank, so that ranks do not mirror the same clips)."""
        self.generator.manual_seed(int(seed) % 2**63)

    def draw(self, batch: int) -> dict[str, Tensor]:
        """One set of parameters per clip, on the CPU (float64)."""
        g = self.generator

        def uniform(lo: float, hi: float) -> Tensor:
            return lo + (hi - lo) * torch.rand(batch, generator=g, dtype=torch.float64)

        def chance(p: float) -> Tensor:
            return torch.rand(batch, generator=g, dtype=torch.float64) < p

        flip = chance(self.p_flip)
        geo, photo, chroma = chance(self.p_affine), chance(self.p_photometric), chance(self.p_photometric / 2)
        one, zero = torch.ones(batch, dtype=torch.float64), torch.zeros(batch, dtype=torch.float64)
        return {
            "flip": flip,
            "scale": torch.where(geo, uniform(*self.scale), one),
            "rotate": torch.where(geo, uniform(-self.rotate, self.rotate), zero),
            "tx": torch.where(geo, uniform(-self.translate, self.translate), zero),
            "ty": torch.where(geo, uniform(-self.translate, self.translate), zero),
            "brightness": torch.where(photo, uniform(-self.brightness, self.brightness), zero),
            "contrast": torch.where(photo, uniform(1 - self.contrast, 1 + self.contrast), one),
            "saturation": torch.where(chroma, uniform(1 - self.saturation, 1 + self.saturation), one),
            "hue": torch.where(chroma, uniform(-self.hue, self.hue), zero),
        }

    @torch.no_grad()
    def forward(self, frames: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        """uint8 or float (B, T, 3, H, W) in 0..255 -> augmented float32 (B, T, 3, H, W)."""
        b, t, c, h, w = frames.shape
        if c != 3:
            raise ValueError(f"device augmentation expects RGB clips (B, T, 3, H, W), got {tuple(frames.shape)}")
        p = self.draw(b) if params is None else params
        dev = frames.device
        theta = affine_theta(p["flip"], p["scale"], p["rotate"], p["tx"], p["ty"], h, w)
        # one grid per clip: the frames ride as channels, so every frame gets the same map
        grid = F.affine_grid(theta.to(torch.float32).to(dev, non_blocking=True), [b, t * c, h, w], align_corners=False)
        x = frames.reshape(b, t * c, h, w).to(torch.float32)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).view(b, t, c, h * w)
        contrast = p["contrast"].double().view(b, 1, 1)
        matrix = (color_matrix(p["saturation"], p["hue"]) * contrast).to(torch.float32).to(dev, non_blocking=True)
        luma = RGB_TO_YIQ[0].to(torch.float32).to(dev)
        mean = x.mean((1, 3)) @ luma  # the clip's mean luminance
        bias = (1 - p["contrast"].to(dev, torch.float32)) * mean + 255.0 * p["brightness"].to(dev, torch.float32)
        x = torch.matmul(matrix.view(b, 1, c, c), x).add_(bias.view(b, 1, 1, 1)).view(b, t, c, h, w)
        return x.clamp_(0.0, 255.0)


def build_device_augment(spec: bool | dict | str | None) -> DeviceClipAugment | None:
    """The device augmentation a config asks for: ``false``/``null`` none, ``true`` the default,
    a mapping of :class:`DeviceClipAugment` arguments. An albumentations pipeline cannot run on the
    device: that is an error, with what to do instead."""
    if spec is None or spec is False:
        return None
    if spec is True:
        return DeviceClipAugment()
    if isinstance(spec, dict) and "transform" not in spec:
        return DeviceClipAugment(**spec)
    raise ValueError("data.augment_on: device runs the built-in flip/affine/photometric augmentation only; "
                     f"an albumentations pipeline ({spec!r:.80}) needs data.augment_on: loader")
