"""One typed call from a corpus folder to the records each split trains or is scored on.

:func:`load_corpus` is what ``fit``/``validate``/``test`` (through the DataModule), ``data check``,
``evaluate`` and the benchmarks call, so that what ``data check`` reports is what a run uses:

    adapter (records, skips, unlabelled videos)
      -> face store attached (aligned face videos, labels on the store's frame times)
      -> held-out test split carved from training subjects (corpora without test labels)
      -> evaluation splits labelled at the annotations' own times
      -> a few training subjects kept (few-subject runs)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_lightning.corpora.adapters import list_datasets, load_dataset
from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.labels import labels_at_annotation_times, labels_on_store_times
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.corpora.splits import SPLIT_NAMES, carve_held_out
from fer_lightning.errors import MissingInputError, UserInputError
from fer_lightning.store.read import attach_store, is_face_store, is_image_folder_store, load_index


@dataclass
class Corpus:
    """A corpus as a run sees it.

    Attributes:
        name: the adapter (``data.dataset``).
        root: the corpus folder.
        splits: ``train``, ``val`` and ``test`` records (each present, perhaps empty); the
            evaluation splits carry labels at the annotations' own times.
        skipped: video -> why it was left out (the adapter's, the face store's).
        unlabelled: video -> why it has no labels (a partition the corpus ships without).
        held_out_subjects: training subjects made the test split (``held_out_from_train``).
        class_names: the emotion classes the labels index, in logit order (None: none).
        face_store: the face store the records read from (None: the source videos).
        excluded_subjects: the subjects ``exclude_subjects`` left out that the corpus holds.
    """

    name: str
    root: Path
    splits: dict[str, list[VideoRecord]]
    skipped: dict[str, str] = field(default_factory=dict)
    unlabelled: dict[str, str] = field(default_factory=dict)
    held_out_subjects: list[str] = field(default_factory=list)
    class_names: tuple[str, ...] | None = None
    face_store: Path | None = None
    excluded_subjects: list[str] = field(default_factory=list)

    @property
    def records(self) -> list[VideoRecord]:
        """Every record, split by split."""
        return [r for split in SPLIT_NAMES for r in self.splits[split]]


def load_corpus(
    dataset: str,
    root: str | Path,
    *,
    dataset_args: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    image_size: int = 112,
    face_store: str | Path | None = None,
    store_length_tolerance: int = 5,
    strict: bool = False,
    held_out_from_train: float = 0.0,
    train_subjects: int | None = None,
    exclude_subjects: Sequence[str] | None = None,
    seed: int = 0,
) -> Corpus:
    """Read corpus ``dataset`` at ``root`` into the records each split uses.

    The arguments are the DataModule's of the same names (``data.*``), so a run's data settings
    load the corpus as they are (:func:`corpus_settings`).

    Args:
        dataset: the adapter's name (:func:`fer_lightning.corpora.adapters.list_datasets`).
        root: the corpus folder.
        dataset_args: the adapter's own options.
        class_names: the emotion classes, in logit order, for adapters that read class labels.
        image_size: the side of the face crops: image corpora read their images at this size.
        face_store: a store made by ``fer-lightning preprocess`` from this corpus, or a folder of
            per-video face image folders (ABAW's ``cropped_aligned``): records then read its
            aligned faces; its index answers for the raw videos, which need not be here.
        store_length_tolerance: frames a face video may differ from the corpus's count.
        strict: a video that would be skipped is an error instead.
        held_out_from_train: for a corpus without a labelled test split, this fraction of the
            training subjects (drawn with ``seed``) becomes the test split.
        train_subjects: keep this many training subjects (drawn with ``seed``).
        exclude_subjects: subjects left out of every split, before any is carved (names the
            corpus does not hold are ignored; ``Corpus.excluded_subjects`` says which it held).
        seed: the draws' seed.

    Raises:
        UserInputError: an unknown corpus or option, a video listed twice or in two splits,
            ``strict`` with a video to skip.
        MissingInputError: the corpus is not at ``root``, the face store is not there or holds
            none of its videos.
    """
    if dataset not in list_datasets():
        raise UserInputError(f"data.dataset: unknown {dataset!r}; known: {', '.join(list_datasets())}")
    root = Path(root)
    store = Path(face_store) if face_store else None
    if store is not None and not is_face_store(store) and not is_image_folder_store(store):
        raise MissingInputError(
            f"data.face_store: no face-clip store at {store} (videos/ with frames.parquet or meta/), nor a folder of "
            "per-video face image folders (ABAW's cropped_aligned); make a store first with "
            f"`fer-lightning preprocess --input {root} --output {store}`")
    context = AdapterContext(index=load_index(store) if store is not None else None,
                             class_names=tuple(class_names) if class_names is not None else None,
                             image_size=image_size)
    try:
        records = load_dataset(dataset, root, context, **dict(dataset_args or {}))
    except FileNotFoundError as err:  # the corpus is not where data.root says: the adapter says what it sought
        raise MissingInputError(f"data.root {root} ({dataset}): {err}") from err
    skipped = list(context.skipped)
    if store is not None and any(r.frames is not None for r in records):
        raise UserInputError(f"data.face_store: {dataset} is a corpus of face images, read as they are; a face store "
                             "holds faces cut from videos: leave data.face_store unset for it")
    if store is not None:
        records, missing = attach_store(records, store, store_length_tolerance, strict)
        records = [labels_on_store_times(r) for r in records]  # labels on each face frame's own time
        if not records and missing:
            raise MissingInputError(
                f"none of the {len(missing)} videos of {root} is in the face store {store}: "
                f"run `fer-lightning preprocess --input {root} --output {store}` first")
        skipped += missing
    if skipped and strict:
        raise UserInputError(f"data.strict: {len(skipped)} videos would be skipped: "
                             + "; ".join(f"{vid}: {why}" for vid, why in skipped))
    excluded: list[str] = []
    if exclude_subjects:
        gone = set(exclude_subjects)
        excluded = sorted({r.subject for r in records if r.subject in gone})
        records = [r for r in records if r.subject not in gone]
    records, moved = carve_held_out(records, held_out_from_train, seed)
    splits: dict[str, list[VideoRecord]] = {s: [] for s in SPLIT_NAMES}
    for r in records:
        splits.setdefault(r.split, []).append(r)
    for split in ("val", "test"):  # scored as the corpus is: each annotation once, at its own time
        splits[split] = [labels_at_annotation_times(r) for r in splits[split]]
    if train_subjects:  # a few-subject regime: keep that many training subjects, drawn by seed
        subjects = sorted({r.subject for r in splits["train"]})
        keep = set(np.random.default_rng(seed).permutation(subjects)[:train_subjects].tolist())
        splits["train"] = [r for r in splits["train"] if r.subject in keep]
    return Corpus(name=dataset, root=root, splits=splits, skipped=dict(skipped), unlabelled=dict(context.unlabelled),
                  held_out_subjects=moved, class_names=context.class_names, face_store=store,
                  excluded_subjects=excluded)


def corpus_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`load_corpus` arguments among a run's data settings (``data:`` of an
    experiment file, or the DataModule's hyper-parameters)."""
    import inspect

    names = [p for p in inspect.signature(load_corpus).parameters if p not in ("dataset", "root")]
    return {"dataset": data["dataset"], "root": data["root"], **{k: data[k] for k in names if k in data}}

