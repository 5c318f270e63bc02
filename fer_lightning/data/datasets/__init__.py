"""Dataset adapters: each turns one corpus's native layout into :class:`VideoRecord` objects.

Adapters register themselves by name, so configs say ``data.dataset: synthetic`` and a new
corpus is one module with one decorated function.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fer_lightning.data.records import VideoRecord

Adapter = Callable[..., list[VideoRecord]]
_ADAPTERS: dict[str, Adapter] = {}


def register_dataset(name: str) -> Callable[[Adapter], Adapter]:
    """Decorator: make an adapter available under ``name``."""

    def wrap(fn: Adapter) -> Adapter:
        _ADAPTERS[name] = fn
        return fn

    return wrap


def list_datasets() -> list[str]:
    return sorted(_ADAPTERS)


def get_adapter(name: str) -> Adapter:
    """The adapter registered as ``name``."""
    if name not in _ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    return _ADAPTERS[name]


def load_dataset(name: str, root: str | Path, skipped: list | None = None, **kwargs) -> list[VideoRecord]:
    """Load every video record of corpus ``name`` stored under ``root``.

    ``kwargs`` are the adapter's own options (``data.dataset_args`` in a config); videos the
    adapter leaves out are appended to ``skipped`` as ``(video_id, reason)``.
    """
    return get_adapter(name)(Path(root), skipped=skipped, **kwargs)


# adapters register themselves on import
from fer_lightning.data.datasets import afewva as _afewva  # noqa: E402,F401
from fer_lightning.data.datasets import affwild2 as _affwild2  # noqa: E402,F401
from fer_lightning.data.datasets import emotion_manifest as _emotion_manifest  # noqa: E402,F401
from fer_lightning.data.datasets import manifest as _manifest  # noqa: E402,F401
from fer_lightning.data.datasets import recola as _recola  # noqa: E402,F401
from fer_lightning.data.datasets import sewa as _sewa  # noqa: E402,F401
from fer_lightning.data.datasets import synthetic as _synthetic  # noqa: E402,F401
