"""The built-in corpus adapters (RECOLA, Aff-Wild2, SEWA, AFEW-VA, manifests, the image
emotion corpora, a bare face store, the synthetic corpus), registered by importing this package; see :mod:`fer_lightning.corpora.registry`."""

from fer_lightning.corpora.adapters import afewva as _afewva  # noqa: F401
from fer_lightning.corpora.adapters import affwild2 as _affwild2  # noqa: F401
from fer_lightning.corpora.adapters import emotion_manifest as _emotion_manifest  # noqa: F401
from fer_lightning.corpora.adapters import face_store as _face_store  # noqa: F401
from fer_lightning.corpora.adapters import images as _images  # noqa: F401
from fer_lightning.corpora.adapters import manifest as _manifest  # noqa: F401
from fer_lightning.corpora.adapters import recola as _recola  # noqa: F401
from fer_lightning.corpora.adapters import sewa as _sewa  # noqa: F401
from fer_lightning.corpora.registry import (
    Adapter,
    adapter_options,
    get_adapter,
    get_preparer,
    list_datasets,
    load_dataset,
    register_dataset,
)
from fer_lightning.corpora.synthetic import adapter as _synthetic  # noqa: F401

__all__ = ["Adapter", "adapter_options", "get_adapter", "get_preparer", "list_datasets", "load_dataset", "register_dataset"]
