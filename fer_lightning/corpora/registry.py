"""The registry of corpus adapters: each turns one corpus's native layout into
:class:`VideoRecord` objects.

Adapters register themselves by name, so configs say ``data.dataset: synthetic`` and a new
corpus is one module with one decorated function. Look adapters up through
:mod:`fer_lightning.corpora.adapters`, which imports (and so registers) the built-in ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fer_lightning.corpora.records import VideoRecord

Adapter = Callable[..., list[VideoRecord]]
Preparer = Callable[..., None]
_ADAPTERS: dict[str, Adapter] = {}
_PREPARERS: dict[str, Preparer] = {}


def register_dataset(name: str, prepare: Preparer | None = None) -> Callable[[Adapter], Adapter]:
    """Decorator: make an adapter available under ``name``. ``prepare(root, **args)``, if given,
    makes the corpus when ``root`` has none (only a corpus the project makes itself has one)."""

    def wrap(fn: Adapter) -> Adapter:
        _ADAPTERS[name] = fn
        if prepare is not None:
            _PREPARERS[name] = prepare
        return fn

    return wrap


def get_preparer(name: str) -> Preparer | None:
    """The function that makes corpus ``name`` where it is missing, or None (a corpus to obtain)."""
    get_adapter(name)
    return _PREPARERS.get(name)


def list_datasets() -> list[str]:
    return sorted(_ADAPTERS)


def get_adapter(name: str) -> Adapter:
    """The adapter registered as ``name``."""
    if name not in _ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    return _ADAPTERS[name]


def load_dataset(name: str, root: str | Path, skipped: list | None = None, unlabelled: list | None = None,
                 **kwargs) -> list[VideoRecord]:
    """Load every video record of corpus ``name`` stored under ``root``.

    ``kwargs`` are the adapter's own options (``data.dataset_args`` in a config); videos the
    adapter leaves out are appended to ``skipped`` as ``(video_id, reason)``, and the videos of a
    partition the corpus publishes without labels (RECOLA's test recordings) to ``unlabelled``:
    those are how the corpus ships, not a problem with it.
    """
    import inspect

    adapter = get_adapter(name)
    if unlabelled is not None and "unlabelled" in inspect.signature(adapter).parameters:
        kwargs["unlabelled"] = unlabelled
    return adapter(Path(root), skipped=skipped, **kwargs)
