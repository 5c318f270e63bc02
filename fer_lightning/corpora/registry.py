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
from fer_lightning.errors import UserInputError

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
    records = adapter(Path(root), skipped=skipped, **kwargs)
    check_unique(records, name, root)
    return records


def check_unique(records: list[VideoRecord], name: str = "the corpus", root: str | Path = "") -> None:
    """Raise :class:`~fer_lightning.errors.UserInputError` when two records are one video (the
    same id): listed twice, its frames would count twice; in two splits, a model would train on
    a video it is scored on. The message names each such video and its splits."""
    seen: dict[str, list[str]] = {}
    for r in records:
        seen.setdefault(r.video_id, []).append(r.split)
    twice = {vid: splits for vid, splits in seen.items() if len(splits) > 1}
    if not twice:
        return
    leaks = {vid: s for vid, s in twice.items() if len(set(s)) > 1}
    shown = "; ".join(f"{vid} ({', '.join(s)})" for vid, s in list((leaks or twice).items())[:5])
    more = f" and {len(leaks or twice) - 5} more" if len(leaks or twice) > 5 else ""
    if leaks:
        raise UserInputError(f"{name} at {root}: {len(leaks)} videos are in more than one split, so a model would be "
                             f"scored on videos it trained on: {shown}{more}; give each video one split")
    raise UserInputError(f"{name} at {root}: {len(twice)} videos are listed more than once, so their frames would "
                         f"count several times: {shown}{more}; list each video once")
