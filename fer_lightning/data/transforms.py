"""Clip-consistent augmentation: one random draw per clip, applied to all of its frames."""

from __future__ import annotations

import albumentations as A
import numpy as np


class ClipAugment:
    """Albumentations pipeline applied with the same parameters to every frame of a clip.

    Flips, small affine jitter and photometric changes: what a face crop from a detector
    varies by, without changing the expression a label describes.
    """

    def __init__(self, flip: float = 0.5, affine: float = 0.5, photometric: float = 0.8) -> None:
        self.pipeline = A.Compose(
            [
                A.HorizontalFlip(p=flip),
                A.Affine(scale=(0.92, 1.08), translate_percent=(-0.05, 0.05), rotate=(-8, 8), p=affine),
                A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=photometric),
                A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=15, val_shift_limit=0, p=photometric / 2),
            ]
        )

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Augment uint8 (T, H, W, 3) frames; returns the same shape and dtype."""
        return self.pipeline(images=frames)["images"]
