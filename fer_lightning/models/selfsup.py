"""Self-supervised pretraining of the face feature extractor (``task: selfsup``): frames without
labels, from any face store or from a corpus's own training videos, teach the encoder what a
face looks like before any emotion or affect label does.

Positives come free from video: a clip of two frames ``data.frame_step`` apart shows one face
(one track of the face store) a moment apart, and each frame gets its own strong augmentation on
the device (:class:`~fer_lightning.data.device_augment.DeviceClipAugment`, one draw per frame).
The losses, projection heads and the masked-autoencoder parts are lightly's
(https://github.com/lightly-ai/lightly), chosen by ``model.selfsup.method``:

- ``simclr``: NT-Xent over the pairs of the global batch (every rank's embeddings gathered under
  DDP, so each rank contrasts with all negatives), lightly's SimCLR projection head.
- ``vicreg``: variance-invariance-covariance regularisation (statistics over the global batch),
  lightly's VICReg projection head; needs no negatives.
- ``mae`` (ViT backbones): 75 % of each frame's patches hidden, the encoder sees the rest, a
  small decoder restores the hidden patches' pixels (normalised per patch); lightly's masked ViT
  and decoder. Each frame is a sample of its own.

Only the encoder (``net.encoder``) is kept for what follows: ``model.init_from`` loads it into
an emotion pretraining or a fine-tuning run, as any pretraining checkpoint's. A new method is one
class here with :func:`register_method`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fer_lightning.errors import UserInputError

STRONG_VIEWS = dict(flip=0.5, affine=1.0, photometric=0.8, scale=(0.7, 1.3), translate=0.12, rotate=15.0,
                    brightness=0.3, contrast=0.4, saturation=0.6, hue=20.0)
"""Per-frame augmentation of the contrastive views (DeviceClipAugment's knobs): stronger than
fine-tuning's, as contrastive methods need, short of hiding the face."""


@dataclass(frozen=True)
class SelfSupConfig:
    """``model.selfsup``: the method and its few settings.

    Attributes:
        method: ``simclr``, ``vicreg`` or ``mae`` (ViT backbones).
        projection_dim: output of the projection head (simclr, vicreg).
        hidden_dim: hidden layer of the projection head.
        temperature: NT-Xent's temperature (simclr).
        mask_ratio: share of patches hidden (mae).
        decoder_dim, decoder_depth, decoder_heads: the MAE decoder's width, blocks and heads.
        image_size: the frames' side (mae: the decoder's patch grid; must be ``data.image_size``).
        views: DeviceClipAugment arguments for each frame's augmentation (None: the strong
            defaults, :data:`STRONG_VIEWS`; ``{}``: none).
    """

    method: str = "simclr"
    projection_dim: int = 128
    hidden_dim: int = 512
    temperature: float = 0.1
    mask_ratio: float = 0.75
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    image_size: int = 112
    views: dict | None = field(default=None)

    @classmethod
    def of(cls, value: SelfSupConfig | dict | None) -> SelfSupConfig:
        """The config from a mapping (unknown keys named in the error), or as it is."""
        if isinstance(value, cls):
            return value
        value = dict(value or {})
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(value) - known):
            raise UserInputError(f"model.selfsup: unknown {unknown}; known: {sorted(known)}")
        config = cls(**value)
        if config.method not in _METHODS:
            raise UserInputError(f"model.selfsup.method: unknown {config.method!r}; known: {', '.join(sorted(_METHODS))}")
        if not 0.0 < config.mask_ratio < 1.0:
            raise UserInputError(f"model.selfsup.mask_ratio must lie in (0, 1), got {config.mask_ratio}")
        return config

    def as_dict(self) -> dict:
        return asdict(self)


_METHODS: dict[str, type[nn.Module]] = {}


def register_method(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a method available as ``model.selfsup.method: <name>``. The class
    takes ``(encoder, config)`` and its ``forward(encoder, frames)`` returns the loss of float
    (B, 2, 3, H, W) frames in 0..255 (two augmented views of one face a moment apart)."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        _METHODS[name] = cls
        return cls

    return wrap


def create_method(config: SelfSupConfig, encoder: nn.Module) -> nn.Module:
    """The heads and loss of ``config.method`` for ``encoder`` (a FrameEncoder)."""
    return _METHODS[config.method](encoder, config)


class _Contrastive(nn.Module):
    """Two views -> encoder -> projection head -> a loss of the two embeddings."""

    def forward(self, encoder: nn.Module, frames: Tensor) -> Tensor:
        b = frames.shape[0]
        features = encoder(frames)  # (B, 2, F)
        z = self.head(features.reshape(2 * b, -1).float())  # both views through one head: one set of BN statistics
        z = z.view(b, 2, -1)
        return self.criterion(z[:, 0], z[:, 1])


@register_method("simclr")
class SimCLR(_Contrastive):
    def __init__(self, encoder: nn.Module, config: SelfSupConfig) -> None:
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.head = SimCLRProjectionHead(encoder.num_features, config.hidden_dim, config.projection_dim)
        self.criterion = NTXentLoss(temperature=config.temperature, gather_distributed=True)


@register_method("vicreg")
class VICReg(_Contrastive):
    def __init__(self, encoder: nn.Module, config: SelfSupConfig) -> None:
        super().__init__()
        from lightly.loss import VICRegLoss
        from lightly.models.modules.heads import VICRegProjectionHead

        self.head = VICRegProjectionHead(encoder.num_features, config.hidden_dim, config.projection_dim, num_layers=2)
        self.criterion = VICRegLoss(gather_distributed=True)


@register_method("mae")
class MaskedAutoencoder(nn.Module):
    """He et al. 2022 on the encoder's timm ViT: the hidden patches' pixels, normalised per
    patch, restored from the visible ones (mean squared error over the hidden patches)."""

    def __init__(self, encoder: nn.Module, config: SelfSupConfig) -> None:
        super().__init__()
        from lightly.models.modules import (
            MaskedVisionTransformerDecoderTIMM,
            MaskedVisionTransformerTIMM,
        )
        from timm.models.vision_transformer import VisionTransformer

        vit = getattr(encoder, "model", None)
        if not isinstance(vit, VisionTransformer):
            raise UserInputError(f"model.selfsup.method: mae needs a ViT backbone (e.g. vit_small_patch16_224); "
                                 f"{type(vit).__name__} has no patches to hide: use simclr or vicreg")
        self.patch_size = int(vit.patch_embed.patch_size[0])
        if config.image_size % self.patch_size:
            raise UserInputError(f"model.selfsup.image_size {config.image_size} is not a multiple of the ViT's "
                                 f"{self.patch_size} px patches")
        if vit.num_prefix_tokens > 1:
            raise UserInputError(f"model.selfsup.method: mae takes a ViT with at most a class token; this one has "
                                 f"{vit.num_prefix_tokens} prefix tokens (registers)")
        self.image_size = config.image_size
        self.mask_ratio = config.mask_ratio
        # lightly's masked view of the encoder's own ViT, kept out of this module's parameters (the
        # ViT's are the encoder's) and told to leave the weights as timm made or loaded them
        self.__dict__["masked_vit"] = MaskedVisionTransformerTIMM(vit=vit, weight_initialization="skip",
                                                                   pos_embed_initialization="skip")
        grid = (config.image_size // self.patch_size) ** 2
        self.embed = nn.Linear(vit.embed_dim, config.decoder_dim)
        self.decoder = MaskedVisionTransformerDecoderTIMM(num_patches=grid, embed_dim=config.decoder_dim,
                                                         depth=config.decoder_depth, num_heads=config.decoder_heads,
                                                         num_prefix_tokens=vit.num_prefix_tokens)
        self.predict = nn.Linear(config.decoder_dim, self.patch_size ** 2 * 3)
        self.prefix = vit.num_prefix_tokens

    def forward(self, encoder: nn.Module, frames: Tensor) -> Tensor:
        from lightly.models import utils

        images = frames.flatten(0, 1)  # every frame a sample
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            raise ValueError(f"model.selfsup.image_size is {self.image_size} but frames are "
                             f"{tuple(images.shape[-2:])}: set it to data.image_size")
        x = (images.to(encoder.mean.dtype) - encoder.mean) / encoder.std
        n = x.shape[0]
        tokens = self.decoder.sequence_length
        idx_keep, idx_mask = utils.random_token_mask(size=(n, tokens), mask_ratio=self.mask_ratio,
                                                     mask_class_token=self.prefix == 0, device=x.device)
        encoded = self.masked_vit.encode(x, idx_keep=idx_keep)
        full = utils.repeat_token(self.decoder.mask_token, (n, tokens))
        full = utils.set_at_index(full, idx_keep, self.embed(encoded).type_as(full))
        decoded = self.decoder.decode(self.decoder.add_pos_embed(full))
        pred = self.predict(utils.get_at_index(decoded, idx_mask))
        patches = utils.patchify(x.float(), self.patch_size)
        target = utils.get_at_index(patches, idx_mask - self.prefix)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        return F.mse_loss(pred.float(), target)


def view_augment(config: SelfSupConfig):
    """The per-frame augmentation of ``config`` (None: none)."""
    from fer_lightning.data.device_augment import DeviceClipAugment

    spec = STRONG_VIEWS if config.views is None else config.views
    return DeviceClipAugment(**spec) if spec else None


def make_views(augment, frames: Tensor, seed: int) -> Tensor:
    """Float (B, T, 3, H, W) frames, each augmented with its own draw from ``seed`` (a step's
    seed: a resumed run draws what the uninterrupted one did)."""
    if augment is None:
        return frames.float()
    b, t = frames.shape[:2]
    augment.seed(seed)
    return augment(frames.reshape(b * t, 1, *frames.shape[2:])).view(*frames.shape)


def pair_faces(frames: Tensor, has_face: Tensor) -> Tensor:
    """Pairs in which one frame has no face take the other frame twice (two augmentations of one
    image, SimCLR's own positive); pairs without a face take a pair of the batch that has one, so
    the batch keeps its size on every rank (the losses gather equal shares under DDP)."""
    frames = frames.clone()
    first, second = has_face[:, 0], has_face[:, 1]
    frames[~first & second, 0] = frames[~first & second, 1]
    frames[first & ~second, 1] = frames[first & ~second, 0]
    some = first | second
    if some.any() and not some.all():
        donors = torch.nonzero(some).flatten()
        empty = torch.nonzero(~some).flatten()
        frames[empty] = frames[donors[torch.arange(len(empty), device=frames.device) % len(donors)]]
    return frames
