"""Clip-consistent augmentation: one random draw per clip, applied to all of its frames."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np


class ClipAugment:
    """Albumentations pipeline applied with the same parameters to every frame of a clip.

    The default pipeline: flips, small affine jitter and photometric changes, what a face crop
    from a detector varies by, without changing the expression a label describes. Pass
    ``pipeline`` to use any albumentations ``Compose`` instead (see :func:`build_augment`).
    """

    def __init__(self, flip: float = 0.5, affine: float = 0.5, photometric: float = 0.8,
                 pipeline: A.BaseCompose | None = None) -> None:
        self.pipeline = pipeline or A.Compose(
            [
                A.HorizontalFlip(p=flip),
                A.Affine(scale=(0.92, 1.08), translate_percent=(-0.05, 0.05), rotate=(-8, 8), p=affine),
                A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=photometric),
                A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=15, val_shift_limit=0, p=photometric / 2),
            ]
        )

    def seed(self, seed: int) -> None:
        """Restart the pipeline's own random stream (albumentations keeps one apart from numpy's
        and torch's; unseeded it differs on every run)."""
        self.pipeline.set_random_seed(int(seed) % 2**32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Augment uint8 (T, H, W, 3) frames; returns the same shape and dtype."""
        out = self.pipeline(images=frames)["images"]
        return np.asarray(out)


def build_augment(spec: bool | dict | str | None) -> ClipAugment | None:
    """The training augmentation a config asks for (``data.augment``):

    - ``false``/``null``: none; ``true``: the default :class:`ClipAugment`;
    - a mapping of :class:`ClipAugment` probabilities, e.g. ``{flip: 0.5, affine: 0.0}``;
    - a mapping with a ``transform`` key: an albumentations pipeline as ``A.to_dict`` writes it;
    - a path to such a pipeline saved by ``A.save`` (``.yaml``/``.yml`` or ``.json``).
    """
    if spec is None or spec is False:
        return None
    if spec is True:
        return ClipAugment()
    if isinstance(spec, str | Path):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"data.augment: no albumentations pipeline file at {path}")
        fmt = "yaml" if path.suffix.lower() in (".yaml", ".yml") else "json"
        return ClipAugment(pipeline=A.load(str(path), data_format=fmt))
    if isinstance(spec, dict):
        if "transform" in spec:
            return ClipAugment(pipeline=A.from_dict(spec))
        unknown = set(spec) - {"flip", "affine", "photometric"}
        if unknown:
            raise ValueError(f"data.augment: unknown keys {sorted(unknown)}; use flip, affine, photometric, "
                             "or an albumentations pipeline under 'transform'")
        return ClipAugment(**spec)
    raise ValueError(f"data.augment must be true/false, a mapping or a file path, got {spec!r}")
