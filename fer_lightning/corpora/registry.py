"""The registry of corpus adapters: each turns one corpus's native layout into
:class:`VideoRecord` objects.

Adapters register themselves by name, so configs say ``data.dataset: synthetic`` and a new
corpus is one module with one decorated function that follows :class:`Adapter`. Look adapters
up through :mod:`fer_lightning.corpora.adapters`, which imports (and so registers) the built-in
ones; what training, ``data check`` and ``evaluate`` use is
:func:`fer_lightning.corpora.load.load_corpus`, which calls the adapter.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.errors import UserInputError


class Adapter(Protocol):
    """A corpus adapter: ``root`` (the corpus folder) and an :class:`AdapterContext` in, one
    record per usable video out. ``options`` are the adapter's own keyword arguments
    (``data.dataset_args``); a video left out goes to ``context.skip`` with its reason, one the
    corpus ships without labels to ``context.without_labels``; facts of a raw video come from
    ``context.video_info`` and its files from ``context.find_videos`` (so that a face store's
    index answers where it can)."""

    def __call__(self, root: Path, context: AdapterContext, /, **options: Any) -> list[VideoRecord]: ...


Preparer = Callable[..., None]
_ADAPTERS: dict[str, Adapter] = {}
_PREPARERS: dict[str, Preparer] = {}


def register_dataset(name: str, prepare: Preparer | None = None) -> Callable[[Adapter], Adapter]:
    """Decorator: make an adapter available under ``name``. ``prepare(root, **args)``, if given,
    makes the corpus when ``root`` has none (only a corpus the project makes itself has one)."""

    def wrap(fn: Adapter) -> Adapter:
        params = list(inspect.signature(fn).parameters.values())
        if len(params) < 2 or [p.name for p in params[:2]] != ["root", "context"] or any(
                p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) for p in params[2:]):
            raise TypeError(f"adapter {name!r} ({fn.__module__}.{fn.__name__}) must take (root, context, **options): "
                            "see fer_lightning.corpora.registry.Adapter")
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


def adapter_options(name: str) -> dict[str, inspect.Parameter]:
    """The options adapter ``name`` takes (``data.dataset_args``), by name."""
    return dict(list(inspect.signature(get_adapter(name)).parameters.items())[2:])


def load_dataset(name: str, root: str | Path, context: AdapterContext | None = None, **options: Any) -> list[VideoRecord]:
    """The records adapter ``name`` reads from ``root``, checked for a video listed twice.

    The adapter alone: the face store, the held-out split and the evaluation labels are
    :func:`fer_lightning.corpora.load.load_corpus`'s. ``options`` are the adapter's own
    (``data.dataset_args``); ``context`` collects what it leaves out (a fresh one if not given).
    """
    known = adapter_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in known.values()):
        hint = ("; the emotion classes are data.class_names, for the data and the model alike"
                if "class_names" in unknown else "")
        raise UserInputError(f"data.dataset_args: {name} has no option {', '.join(unknown)}; it takes "
                             f"{', '.join(known) or 'none'}{hint}")
    records = get_adapter(name)(Path(root), context if context is not None else AdapterContext(), **options)
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
