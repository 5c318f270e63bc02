"""Networks and the LightningModule."""

from fer_lightning.models.affect_net import AffectNet
from fer_lightning.models.module import AffectModule

__all__ = ["AffectModule", "AffectNet"]
