"""Image emotion corpora as pretraining data, read in their native layouts: AffectNet, RAF-DB
(basic), FER2013 and FER+, and any folder with one sub-folder per class (see data/README.md).

An image is a one-frame clip: the images of one class in one split form one record, read as a
video whose frames are the images squared and resized to the run's ``data.image_size``
(:class:`~fer_lightning.media.images.ImageFrames`). Classes are mapped by name onto the run's
``data.class_names`` (:func:`~fer_lightning.corpora.classes.class_index_map`): an unmapped class
is an error unless dropped. Every corpus ends with all three splits: where it ships no
validation or test images, a seeded fraction of its training images (image by image: the
corpora name no identities) is carved out. A listed image that is missing or empty is left out
and counted in the report. AffectNet's valence and arousal per image are regression targets
too (``data.task: finetune`` with ``clip_len: 1``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fer_lightning.corpora.classes import class_index_map
from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.corpora.registry import register_dataset
from fer_lightning.corpora.tables import read_table
from fer_lightning.media.images import ImageFrames, PixelFrames
from fer_lightning.media.video import IMAGE_SUFFIXES
from fer_lightning.store.read import whole_crop_boxes

SPLIT_ALIASES = {"train": "train", "training": "train",
                 "val": "val", "valid": "val", "validation": "val", "publictest": "val", "dev": "val",
                 "test": "test", "testing": "test", "privatetest": "test"}
AFFECTNET_CLASSES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
RAFDB_CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")  # labels 1..7
FER2013_CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
FERPLUS_DISCARD = ("unknown", "NF")  # FER+'s votes for "not an emotion" and "not a face"


@dataclass
class LabelledImages:
    """Images of a corpus with one label each (and the facts some corpora add)."""

    names: list[str]  # how the report names each image (its path under the corpus)
    labels: np.ndarray  # (N,) the run's class index, -1 unlabelled
    splits: np.ndarray  # (N,) "train"/"val"/"test"
    files: list[Path] | None = None  # image files, or
    pixels: np.ndarray | None = None  # (N, H, W[, 3]) uint8 images held in memory
    values: np.ndarray | None = None  # (N, 2) valence, arousal (NaN where invalid)
    boxes: np.ndarray | None = None  # (N, 4) face boxes in image pixels


def _carve(splits: np.ndarray, fractions: Mapping[str, float], seed: int) -> np.ndarray:
    """Each split in ``fractions`` the corpus lacks gets that fraction of its training images
    (fractions of the training images as shipped, drawn together with ``seed``)."""
    splits = splits.copy()
    train = np.flatnonzero(splits == "train")
    order = np.random.default_rng(seed).permutation(train)
    start = 0
    for split, fraction in fractions.items():
        if fraction > 0 and not (splits == split).any() and len(train) > 1:
            take = min(max(1, round(fraction * len(train))), len(train) - 1 - start)
            splits[order[start:start + take]] = split
            start += max(take, 0)
    return splits


def _present(files: Sequence[Path]) -> np.ndarray:
    """(N,) bool: the file exists and is not empty, from one directory listing per folder."""
    sizes: dict[Path, dict[str, int]] = {}
    ok = np.zeros(len(files), bool)
    for i, f in enumerate(files):
        folder = f.parent
        if folder not in sizes:
            try:
                sizes[folder] = {e.name: e.stat().st_size for e in os.scandir(folder) if e.is_file()}
            except OSError:
                sizes[folder] = {}
        ok[i] = sizes[folder].get(f.name, 0) > 0
    return ok


def image_records(corpus: str, images: LabelledImages, class_names: Sequence[str], context: AdapterContext,
                  val_fraction: float, test_fraction: float, seed: int) -> list[VideoRecord]:
    """One record per (split, class) of ``images``, plus one per split for images without a class
    but with valence/arousal; missing images are counted and reported as one skip per split."""
    splits = _carve(np.asarray(images.splits, dtype=object), {"val": val_fraction, "test": test_fraction}, seed)
    keep = np.ones(len(images.names), bool)
    if images.files is not None:
        keep = _present(images.files)
        for split in ("train", "val", "test"):
            gone = np.flatnonzero(~keep & (splits == split))
            if len(gone):
                shown = ", ".join(images.names[i] for i in gone[:5]) + (" ..." if len(gone) > 5 else "")
                context.skip(f"{corpus}_{split}: {len(gone)} images", f"missing or empty image files: {shown}")
    size = context.image_size
    has_values = images.values is not None
    for split in ("train", "val", "test"):
        rows = keep & (splits == split) & (images.labels < 0)
        if has_values:
            rows &= ~np.isfinite(images.values).all(axis=1)
        if rows.any():
            context.without_labels(f"{corpus}_{split}: {int(rows.sum())} images",
                                   "no class among data.class_names (a dropped class, or none in the corpus)"
                                   + (" and no valence/arousal" if has_values else ""))
    records = []
    for split in ("train", "val", "test"):
        for label in range(-1, len(class_names)):
            rows = np.flatnonzero(keep & (splits == split) & (images.labels == label))
            if label < 0 and has_values:  # no class, but valence/arousal to learn from
                rows = rows[np.isfinite(images.values[rows]).all(axis=1)]
            if not len(rows) or (label < 0 and not has_values):
                continue
            name = class_names[label] if label >= 0 else "no_class"
            vid = f"{corpus}_{split}_{name}"
            if images.files is not None:
                frames = ImageFrames([images.files[i] for i in rows], size,
                                     images.boxes[rows] if images.boxes is not None else None)
            else:
                frames = PixelFrames(images.pixels[rows], size)
            n = len(rows)
            labels = np.full(n, label, np.int64)
            records.append(VideoRecord(
                video_id=vid, path=Path(corpus) / split / name, subject=vid, split=split, fps=frames.fps,
                num_frames=n, has_face=np.ones(n, bool), boxes=whole_crop_boxes(size, size, n),
                values=images.values[rows].astype(np.float32) if has_values else None, labels=labels, frames=frames,
                extra={"face_margin": 0.0, "images": n, "label_counts": {"frames": n, "labelled": n},
                       "class_counts": np.bincount(labels[labels >= 0], minlength=len(class_names)).tolist()}))
    return records


def _need_classes(corpus: str, context: AdapterContext) -> list[str]:
    if context.class_names is None:
        raise ValueError(f"{corpus} needs the emotion classes in logit order: set data.class_names, e.g. "
                         "[neutral, anger, disgust, fear, happiness, sadness, surprise]")
    return list(context.class_names)


def _find(root: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` (relative paths) under ``root`` or one folder below it."""
    candidates = [root / n for n in names] + [d / n for d in sorted(root.glob("*")) if d.is_dir() for n in names]
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError(f"no {what} under {root} (looked for {', '.join(names)}, also one folder down)")


@register_dataset("image_folders")
def load_image_folders(root: Path, context: AdapterContext, drop: Sequence[str] = (),
                       rename: Mapping[str, str] | None = None, val_fraction: float = 0.1,
                       test_fraction: float = 0.1, seed: int = 0) -> list[VideoRecord]:
    """A folder per class, ``<root>/<class>/<image>``, or per split and class,
    ``<root>/<split>/<class>/<image>`` (splits ``train``/``val``/``test`` or their common names:
    ``training``, ``validation``, ``PublicTest``, ``PrivateTest`` ...). Folder names are the
    classes, mapped by name onto ``data.class_names`` (``rename`` for others, ``drop`` to leave
    some out); splits the folder lacks are carved from training (``val_fraction``,
    ``test_fraction``, ``seed``)."""
    class_names = _need_classes("image_folders", context)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}")
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    by_split = all(d.name.lower() in SPLIT_ALIASES for d in subdirs) and subdirs
    layout = [(SPLIT_ALIASES[d.name.lower()], c) for d in subdirs for c in sorted(d.iterdir()) if c.is_dir()] \
        if by_split else [("train", d) for d in subdirs]
    natives = sorted({folder.name for _, folder in layout})
    to_run = dict(zip(natives, class_index_map(natives, class_names, "image_folders", drop, rename).tolist(),
                      strict=False))
    files, labels, splits = [], [], []
    ignored: list[str] = []  # files where no class is: named in the report, never silently dropped
    for d in (subdirs if by_split else [root]):
        ignored += [str(p.relative_to(root)) for p in d.iterdir() if p.is_file() and not p.name.startswith(".")]
    for split, folder in layout:
        found = []
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
                found.append(p)
            elif not p.name.startswith("."):
                ignored.append(str(p.relative_to(root)))
        files += found
        labels += [to_run[folder.name]] * len(found)
        splits += [split] * len(found)
    if ignored:
        shown = ", ".join(ignored[:5]) + (" ..." if len(ignored) > 5 else "")
        context.skip(f"image_folders: {len(ignored)} entries", "outside a class folder, a folder inside one, or not "
                     f"an image ({', '.join(IMAGE_SUFFIXES)}): {shown}")
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in class folders under {root}")
    images = LabelledImages(names=[str(f.relative_to(root)) for f in files], labels=np.array(labels, np.int64),
                            splits=np.array(splits, dtype=object), files=files)
    return image_records("image_folders", images, class_names, context, val_fraction, test_fraction, seed)


@register_dataset("affectnet")
def load_affectnet(root: Path, context: AdapterContext, drop: Sequence[str] = (),
                   rename: Mapping[str, str] | None = None, use_boxes: bool = True, val_fraction: float = 0.1,
                   seed: int = 0) -> list[VideoRecord]:
    """AffectNet as released: ``training.csv`` and ``validation.csv`` (``subDirectory_filePath,
    face_x, face_y, face_width, face_height, facial_landmarks, expression, valence, arousal``;
    in ``Manually_Annotated_file_lists/`` or the root) and the images they list under
    ``Manually_Annotated_Images/`` (or ``Manually_Annotated/Manually_Annotated_Images/``).

    Expressions 0-7 (Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Contempt) map onto
    ``data.class_names``; 8-10 (None, Uncertain, No-Face) are unlabelled. Valence and arousal
    (-1..1; -2 where there is no face) are each image's regression targets. The validation set is
    the test split (AffectNet's own test set is not public; papers report on validation), and
    ``val_fraction`` of the training images, drawn with ``seed``, is the validation split.
    ``use_boxes``: frames are the listed face box's square (the images are mostly that already).
    """
    class_names = _need_classes("affectnet", context)
    lists = {"train": _find(root, ["training.csv", "Manually_Annotated_file_lists/training.csv"], "training.csv"),
             "test": _find(root, ["validation.csv", "Manually_Annotated_file_lists/validation.csv"],
                           "validation.csv")}
    image_root = _find(root, ["Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images"],
                       "Manually_Annotated_Images folder")
    to_run = class_index_map(AFFECTNET_CLASSES, class_names, "affectnet", drop, rename)
    to_run = np.concatenate([to_run[:-1], [-1, -1, -1, -1]])  # 8 None, 9 Uncertain, 10 No-Face; -1 stays -1
    wanted = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression", "valence",
              "arousal"]
    parts = []
    for split, path in lists.items():
        table = read_table(path, usecols=lambda c: c in wanted)
        missing = [c for c in wanted if c not in table.columns]
        if missing:
            raise ValueError(f"{path}: lacks columns {missing}; AffectNet's lists have {wanted} (and landmarks)")
        parts.append(table.assign(split=split))
    table = pd.concat(parts, ignore_index=True)
    expression = pd.to_numeric(table["expression"], errors="coerce").fillna(-1).to_numpy(np.int64, copy=True)
    expression[(expression < 0) | (expression > 10)] = -1
    va = table[["valence", "arousal"]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64, copy=True)
    va[~((va >= -1) & (va <= 1))] = np.nan  # -2: no face; anything else outside -1..1 is not a label
    boxes = None
    if use_boxes:
        x, y, w, h = (pd.to_numeric(table[c], errors="coerce").to_numpy(np.float64)
                      for c in ("face_x", "face_y", "face_width", "face_height"))
        boxes = np.stack([x, y, x + w, y + h], axis=1)
        boxes[~((w > 0) & (h > 0))] = np.nan  # the whole image
    names = table["subDirectory_filePath"].astype(str).tolist()
    images = LabelledImages(names=names, labels=to_run[expression], splits=table["split"].to_numpy(object),
                            files=[image_root / n for n in names], values=va, boxes=boxes)
    return image_records("affectnet", images, class_names, context, val_fraction, 0.0, seed)


@register_dataset("rafdb")
def load_rafdb(root: Path, context: AdapterContext, faces: str = "aligned", drop: Sequence[str] = (),
               rename: Mapping[str, str] | None = None, val_fraction: float = 0.1, seed: int = 0) -> list[VideoRecord]:
    """RAF-DB's basic set: ``EmoLabel/list_patition_label.txt`` (``train_00001.jpg 5``; labels
    1-7: Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral) and the images in
    ``Image/aligned/`` (``train_00001_aligned.jpg``, 100 x 100, ``faces: aligned``) or
    ``Image/original/`` (``faces: original``), under ``root`` or ``root/basic``. Splits by name
    (``train_``, ``test_``); ``val_fraction`` of the training images is the validation split."""
    class_names = _need_classes("rafdb", context)
    if faces not in ("aligned", "original"):
        raise ValueError(f"rafdb: faces must be 'aligned' or 'original', got {faces!r}")
    label_file = _find(root, ["EmoLabel/list_patition_label.txt", "basic/EmoLabel/list_patition_label.txt"],
                       "RAF-DB label list")
    base = label_file.parent.parent
    table = read_table(label_file, sep=" ", names=["image", "label"])
    label = pd.to_numeric(table["label"], errors="coerce")
    bad = table.index[~label.isin(range(1, 8))]
    if len(bad):
        raise ValueError(f"{label_file}: line {bad[0] + 1}: label {str(table['label'][bad[0]])!r} is not 1..7")
    to_run = class_index_map(RAFDB_CLASSES, class_names, "rafdb", drop, rename)
    names = table["image"].astype(str).tolist()
    prefix = [n.split("_", 1)[0].lower() for n in names]
    unknown = sorted({p for p in prefix if p not in ("train", "test")})
    if unknown:
        raise ValueError(f"{label_file}: image names start with {unknown}, not train_ or test_")
    files = [base / "Image" / faces / (f"{Path(n).stem}_aligned.jpg" if faces == "aligned" else n) for n in names]
    images = LabelledImages(names=names, labels=to_run[label.to_numpy(np.int64) - 1],
                            splits=np.array(prefix, dtype=object), files=files)
    return image_records("rafdb", images, class_names, context, val_fraction, 0.0, seed)


def _fer_pixels(column: pd.Series, path: Path) -> np.ndarray:
    """FER2013's ``pixels`` strings (2,304 grey values each) as uint8 (N, 48, 48)."""
    out = np.zeros((len(column), 48, 48), np.uint8)
    for i, text in enumerate(column.tolist()):
        try:
            values = np.array(str(text).split(), dtype=np.int64) if isinstance(text, str) else np.zeros(0, np.int64)
        except ValueError:
            raise ValueError(f"{path}: line {i + 2}: pixels hold something that is not a whole number "
                             f"({str(text)[:40]!r}...)") from None
        if values.size != 48 * 48 or values.min(initial=0) < 0 or values.max(initial=0) > 255:
            raise ValueError(f"{path}: line {i + 2}: pixels hold {values.size} values (expected 2304 in 0..255)")
        out[i] = values.reshape(48, 48)
    return out


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """FER+'s majority label per image from its (N, 10) annotator votes (eight emotions, then
    ``unknown`` and ``NF``), as the FER+ authors' ``majority`` mode: single votes are dropped as
    outliers; the image is labelled where one class has more than half of what is left and that
    class is an emotion; else -1."""
    votes = np.where(votes <= 1, 0, votes).astype(np.float64)
    total = votes.sum(axis=1)
    best = votes.argmax(axis=1)
    top = votes.max(axis=1)
    ok = (total > 0) & (top > 0.5 * total) & (best < len(FERPLUS_CLASSES))
    return np.where(ok, best, -1)


@register_dataset("fer2013")
def load_fer2013(root: Path, context: AdapterContext, labels: str = "fer2013", drop: Sequence[str] = (),
                 rename: Mapping[str, str] | None = None) -> list[VideoRecord]:
    """FER2013 as Kaggle ships it: ``fer2013.csv`` (``emotion,pixels,Usage``: 48 x 48 grey faces,
    emotions 0-6 Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral; ``Training``, ``PublicTest``
    and ``PrivateTest`` are train, val and test, the usual protocol). ``labels: ferplus`` takes
    FER+'s relabelling instead: ``fer2013new.csv`` beside it (ten annotators' votes per image
    over eight emotions, ``unknown`` and ``NF``), labelled by majority (:func:`ferplus_majority`);
    images FER+ removed are unlabelled."""
    class_names = _need_classes("fer2013", context)
    if labels not in ("fer2013", "ferplus"):
        raise ValueError(f"fer2013: labels must be 'fer2013' or 'ferplus', got {labels!r}")
    path = _find(root, ["fer2013.csv", "fer2013/fer2013.csv"], "fer2013.csv")
    table = read_table(path, dtype={"pixels": str})
    if not {"emotion", "pixels", "Usage"} <= set(table.columns):
        raise ValueError(f"{path}: needs columns emotion, pixels, Usage; has {list(table.columns)}")
    usage = table["Usage"].astype(str).str.lower().map(SPLIT_ALIASES)
    if usage.isna().any():
        row = int(np.flatnonzero(usage.isna())[0])
        raise ValueError(f"{path}: line {row + 2}: Usage {table['Usage'][row]!r} is not Training, PublicTest or "
                         "PrivateTest")
    if labels == "fer2013":
        to_run = class_index_map(FER2013_CLASSES, class_names, "fer2013", drop, rename)
        emotion = pd.to_numeric(table["emotion"], errors="coerce")
        bad = np.flatnonzero(~emotion.isin(range(len(FER2013_CLASSES))).to_numpy())
        if len(bad):
            raise ValueError(f"{path}: line {bad[0] + 2}: emotion {str(table['emotion'][bad[0]])!r} is not 0..6")
        raw = emotion.to_numpy(np.int64, copy=True)
    else:
        plus_path = path.parent / "fer2013new.csv"
        if not plus_path.is_file():
            raise FileNotFoundError(f"labels: ferplus needs fer2013new.csv beside {path} (from the FER+ repository)")
        plus = read_table(plus_path)
        columns = [*FERPLUS_CLASSES, *FERPLUS_DISCARD]
        lower = {c.lower(): c for c in plus.columns}
        if len(plus) != len(table) or not all(c.lower() in lower for c in columns):
            raise ValueError(f"{plus_path}: needs one row per row of {path.name} ({len(table)}, has {len(plus)}) and "
                             f"vote columns {columns}")
        to_run = class_index_map(FERPLUS_CLASSES, class_names, "fer2013 (ferplus)", drop, rename)
        votes = plus[[lower[c.lower()] for c in columns]].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy()
        raw = ferplus_majority(votes)
        removed = plus[lower.get("image name", "Image name")].isna().to_numpy() if "image name" in lower else \
            np.zeros(len(plus), bool)
        raw[removed] = -1
    images = LabelledImages(names=[f"{path.name}:{i + 2}" for i in range(len(table))], labels=to_run[raw],
                            splits=usage.to_numpy(object), pixels=_fer_pixels(table["pixels"], path))
    return image_records("fer2013", images, class_names, context, 0.0, 0.0, 0)
