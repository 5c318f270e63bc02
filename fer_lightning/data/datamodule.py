"""LightningDataModule: corpus -> split by subject -> clip datasets -> DataLoaders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from fer_lightning.checkpoints import latest_checkpoint
from fer_lightning.corpora.adapters import adapter_options, get_preparer, list_datasets
from fer_lightning.corpora.check import (
    check_labelled,
    class_frames,
    drop_unlabelled_records,
    has_labels,
)
from fer_lightning.corpora.load import Corpus, corpus_settings, load_corpus
from fer_lightning.corpora.records import VideoRecord
from fer_lightning.data.chunked import (
    ChunkedClipStream,
    class_balanced_sampler,
    class_balanced_weights,
)
from fer_lightning.data.clips import ClipDataset
from fer_lightning.data.device_augment import build_device_augment
from fer_lightning.data.features import EncoderLoader
from fer_lightning.data.transforms import build_augment
from fer_lightning.errors import UserInputError
from fer_lightning.tasks import EMOTIONS, TASKS

MIX_KEYS = {"dataset", "root", "dataset_args", "face_store", "clip_len", "batch_size"}
SPLITS = ("train", "val", "test")


def _single_threaded_opencv() -> None:
    """One OpenCV thread in the DataLoader workers (they already run in parallel; OpenCV's own
    threads would oversubscribe the cores). Set in the parent, before the workers fork, and
    inherited: a forked child that changes the thread count after the parent has used OpenCV's
    thread pool deadlocks on the pool's lock, held by a thread the child does not have."""
    import cv2

    cv2.setNumThreads(1)


def _return_freed_memory() -> None:
    """Hand the memory that reading a large corpus freed back to the OS: Arrow's pool and glibc's
    heap keep freed pages otherwise, and DataLoader workers forked later map them too. On 10,000
    videos (a million frames) this takes the main process from +245 MB to +155 MB over its start
    (benchmarks/corpus_scale.py's store)."""
    import ctypes
    import gc

    gc.collect()
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except ImportError:
        pass
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def _learnable(records: list[VideoRecord], hp, what: str) -> list[VideoRecord]:
    """Training ``records`` without those that hold no label the task learns from, which are named."""
    kept, dropped = drop_unlabelled_records(records, hp.task, hp.target_names)
    if dropped:
        kind = "emotion class" if hp.task == "pretrain" else f"value of {', '.join(hp.target_names)}"
        rank_zero_info(f"{what} train: {len(dropped)} videos hold no {kind} on any frame and are not read: "
                       + ", ".join(dropped[:5]) + (" ..." if len(dropped) > 5 else ""))
    return kept


def _listed(reasons: dict[str, str], most: int) -> str:
    """``video: why; ...`` for the first ``most`` entries."""
    shown = "; ".join(f"{vid}: {why}" for vid, why in list(reasons.items())[:most])
    return shown + (" ..." if len(reasons) > most else "")


def _worker_init(_: int) -> None:
    info = torch.utils.data.get_worker_info()
    transform = getattr(getattr(info, "dataset", None), "transform", None)
    if callable(getattr(transform, "seed", None)):
        transform.seed(torch.initial_seed())  # per worker and epoch, from the run's seed


def resolve_class_names(class_names: Sequence[str] | None, dataset: str, task: str) -> Sequence[str]:
    """The emotion classes of a run: as given, or the synthetic corpus's own when it is the
    corpus; a pretraining on any other corpus must name its classes (a clear error otherwise)."""
    if class_names is not None:
        return class_names
    if dataset == "synthetic" or task != "pretrain":
        return EMOTIONS
    raise ValueError(f"data.class_names: set the emotion classes of your {dataset} corpus, in the order of its "
                     "label indices (or as its label names are written), e.g. --data.class_names='[neutral, anger, "
                     "disgust, fear, happiness, sadness, surprise]' for ABAW's EXPR labels; the model's logits "
                     "follow this list")


class AffectDataModule(L.LightningDataModule):
    """Face clips of one corpus, split by subject, for pretraining or fine-tuning.

    Args:
        root: folder of the corpus.
        dataset: adapter name (see ``fer_lightning.corpora.adapters``).
        task: ``finetune`` (continuous targets), ``pretrain`` (emotion classes) or ``selfsup``
            (no labels: the model learns from the frames alone; see
            :mod:`fer_lightning.models.selfsup`).
        target_names: continuous targets, in output order.
        class_names: emotion classes, in logit order: your corpus's, in the order of its label
            indices (null: the synthetic corpus's own six; any other corpus must name its own).
        clip_len: frames per clip (T).
        frame_step: take every ``frame_step``-th frame inside a clip.
        train_stride: frames between training clip starts (default: half a clip).
        image_size: side of the square face crop, pixels.
        face_margin: crop enlargement around the face box (0.2 = 20 %).
        batch_size: clips per batch.
        num_workers: DataLoader worker processes (persistent across epochs).
        prefetch_factor: batches each worker prepares ahead (None: torch's default, 2).
        augment: clip-consistent augmentation of training clips: ``true`` (the default
            pipeline), ``false``, a mapping of its probabilities, or any albumentations
            pipeline (a serialized mapping or a saved file); see
            :func:`~fer_lightning.data.transforms.build_augment`.
        augment_on: where training clips are augmented: ``loader`` (in the DataLoader workers,
            albumentations on the CPU) or ``device`` (after the host-to-device copy, the whole
            batch at once: :class:`~fer_lightning.data.device_augment.DeviceClipAugment`, the
            same flip/affine/photometric knobs; workers then only decode, which is what a GPU
            machine's CPUs need, see benchmarks/train_throughput.py). ``device`` takes
            ``augment`` as true/false or a mapping of DeviceClipAugment arguments.
        generate_if_missing: for ``dataset: synthetic``, create the corpus when ``root`` has none.
        synth_args: arguments of :class:`SynthConfig` used when generating.
        train_reader: ``chunked`` (default) reads long contiguous chunks of each face video,
            cuts them into clips at a random position and phase and mixes them in a shuffle
            buffer (:class:`~fer_lightning.data.chunked.ChunkedClipStream`); ``random`` reads
            each clip with its own seek (stride-tiled windows, shuffled). See
            benchmarks/datamodule.py for what each costs.
        chunk_len: frames per contiguous read (``chunked``).
        shuffle_buffer: clips mixed before they leave (``chunked``).
        windows_per_video: training clips per video per epoch (``chunked``; default: as many
            as the tiled windows, i.e. about one pass over every frame).
        feature_cache: a pretraining checkpoint (or ``latest``): its frozen face feature
            extractor computes every frame's features once (cached under ``feature_cache_dir``,
            keyed by the checkpoint's hash) and clips carry ``features`` instead of frames, so
            only the LSTM and head train. No image augmentation then.
        feature_cache_dir: where (default: ``<face_store>/features``, else ``<root>/features``).
        train_subjects: train on this many training subjects only (drawn with ``seed``), for
            few-subject experiments; validation and test keep all of theirs.
        exclude_subjects: subjects no split reads (by the corpus's subject names): the people
            another run holds out for testing, where both read one corpus (Aff-Wild2's
            expression and valence-arousal tracks share their videos). ``compare-pretraining``
            sets it for each stage that would read its held-out people. It applies to ``mix``
            corpora too.
        eval_overlap: fraction of a window that consecutive validation/test windows share
            (0.5: every frame is predicted by two windows and gets their mean; 0: each once).
        seed: the chunked stream's random seed.
        balance_classes: pretraining only: draw training videos (``chunked``) or windows
            (``random``) so that rare emotion classes are seen as often as common ones.
        dataset_args: the adapter's own options, e.g. ``{"method": "linear", "delay": 2.0}``
            (see each adapter in ``fer_lightning.corpora.adapters`` and data/README.md).
        face_store: a store written by ``fer-lightning preprocess`` from this corpus's videos:
            clips then read the aligned face videos and preprocessing's ``has_face`` instead
            of cropping source frames with the corpus's boxes; or a folder of per-video folders
            of face images numbered by frame (ABAW's ``cropped_aligned``: a missing image is a
            frame without a face). Videos missing from the store are skipped and reported.
        held_out_from_train: for a corpus without a labelled test split (RECOLA, SEWA and
            Aff-Wild2 publish no test labels): this fraction of the training subjects, drawn
            with ``seed``, becomes the test split, subject-disjoint, so the final table comes
            from subjects neither model selection nor post-processing saw (0: no test split;
            the final table then has validation only). A corpus with test labels keeps its own.
        store_length_tolerance: a face video whose frame count differs from the corpus's by
            at most this many frames is used (labels fitted to the store's frames); beyond it
            the video is skipped with both counts in the reason.
        strict: per-video problems (a video the adapter leaves out, one missing from the face
            store or beyond the length tolerance) stop setup with an error instead of being
            skipped and reported.
        mix: more corpora whose training splits train in the same run, beside this one's (an
            image corpus beside a video corpus: AffectNet with Aff-Wild2's expression track).
            Each entry is ``{dataset, root}`` and optionally ``dataset_args``, ``face_store``,
            ``clip_len`` (default 1 for images, which can take nothing else; else this corpus's)
            and ``batch_size`` (default this one's). Every training step takes one batch of each
            (Lightning's CombinedLoader, cycling the shorter ones; an epoch is the longest), the
            loss counts all their
            labelled frames together, each corpus is drawn in random order, class-balanced with
            ``balance_classes``. Classes are this run's ``class_names`` (each adapter maps its own
            onto them); validation and test are this corpus's.
    """

    def __init__(
        self,
        root: str = "data/synthetic",
        dataset: str = "synthetic",
        task: str = "finetune",
        target_names: Sequence[str] = ("valence", "arousal"),
        class_names: Sequence[str] | None = None,
        clip_len: int = 16,
        frame_step: int = 1,
        train_stride: int | None = None,
        image_size: int = 112,
        face_margin: float = 0.2,
        batch_size: int = 8,
        num_workers: int = 2,
        prefetch_factor: int | None = None,
        augment: bool | dict | str = True,
        augment_on: str = "loader",
        generate_if_missing: bool = True,
        synth_args: dict | None = None,
        face_store: str | None = None,
        dataset_args: dict | None = None,
        train_reader: str = "chunked",
        chunk_len: int = 128,
        shuffle_buffer: int = 256,
        windows_per_video: int | None = None,
        seed: int = 0,
        balance_classes: bool = False,
        eval_overlap: float = 0.5,
        train_subjects: int | None = None,
        exclude_subjects: Sequence[str] | None = None,
        feature_cache: str | None = None,
        feature_cache_dir: str | None = None,
        held_out_from_train: float = 0.2,
        store_length_tolerance: int = 5,
        strict: bool = False,
        mix: Sequence[dict] | None = None,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise UserInputError(f"data.task must be one of {TASKS}, got {task!r}")
        if train_reader not in ("chunked", "random"):
            raise UserInputError(f"data.train_reader must be 'chunked' or 'random', got {train_reader!r}")
        if augment_on not in ("loader", "device"):
            raise UserInputError(f"data.augment_on must be 'loader' or 'device', got {augment_on!r}")
        if not 0.0 <= eval_overlap < 1.0:
            raise UserInputError(f"data.eval_overlap must be in [0, 1), got {eval_overlap}")
        if balance_classes and task != "pretrain":
            raise UserInputError("data.balance_classes applies to task: pretrain (emotion classes) only")
        for name, value, low in (("clip_len", clip_len, 1), ("frame_step", frame_step, 1), ("image_size", image_size, 8),
                                 ("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                 ("chunk_len", chunk_len, 1), ("shuffle_buffer", shuffle_buffer, 1),
                                 ("train_stride", train_stride or 1, 1), ("prefetch_factor", prefetch_factor or 1, 1),
                                 ("store_length_tolerance", store_length_tolerance, 0)):
            if value < low:
                raise UserInputError(f"data.{name} must be at least {low}, got {value}")
        if face_margin < 0 or not 0.0 <= held_out_from_train < 1.0:
            raise UserInputError(f"data.face_margin must be >= 0 (got {face_margin}) and data.held_out_from_train in "
                                 f"[0, 1) (got {held_out_from_train})")
        if dataset not in list_datasets():
            raise UserInputError(f"data.dataset: unknown {dataset!r}; known: {', '.join(list_datasets())}")
        for entry in mix or ():
            if not isinstance(entry, dict) or not {"dataset", "root"} <= set(entry) or set(entry) - MIX_KEYS:
                raise UserInputError(f"data.mix: each entry is a mapping with dataset and root (and optionally "
                                     f"{', '.join(sorted(MIX_KEYS - {'dataset', 'root'}))}); got {entry!r}")
            if entry["dataset"] not in list_datasets():
                raise UserInputError(f"data.mix: unknown dataset {entry['dataset']!r}; known: {', '.join(list_datasets())}")
        if mix and feature_cache:
            raise UserInputError("data.mix with data.feature_cache: the cache holds this corpus's features only")
        if mix and (task == "selfsup" or augment_on == "device"):
            raise UserInputError("data.mix trains emotion classes or valence/arousal from several corpora; with "
                                 + ("task selfsup, preprocess the corpora into one face store instead"
                                    if task == "selfsup" else "augment_on: device each corpus would go unaugmented: "
                                    "use augment_on: loader"))
        names = [self._mix_name(e) for e in mix or ()]
        if len(set(names)) != len(names):
            raise UserInputError(f"data.mix lists one corpus twice: {sorted(n for n in names if names.count(n) > 1)}")
        class_names = resolve_class_names(class_names, dataset, task)
        self.save_hyperparameters()
        self.hparams.class_names = class_names
        self.root = Path(root)
        self.datasets: dict[str, ClipDataset] = {}
        self.mixed: dict[str, ClipDataset] = {}  # data.mix: name -> its training clips
        self.corpus: Corpus | None = None  # what setup loaded (load_corpus)
        # built here, not in setup, so that a config error shows before any data is touched
        self.device_augment = (build_device_augment(augment) if augment_on == "device" and not feature_cache
                               else None)
        self._augment_base: int | None = None
        self._augmented = 0  # training batches augmented on the device so far (checkpointed)
        # feature_cache's encoder: the data cannot build a network, so whoever holds the model
        # says how (evaluate does; under a Trainer the attached model's load_frozen_encoder)
        self.encoder_loader: EncoderLoader | None = None

    def prepare_data(self) -> None:
        hp = self.hparams
        prepare = get_preparer(hp.dataset)
        if hp.generate_if_missing and prepare is not None:
            prepare(self.root, **(hp.synth_args or {}))

    @property
    def skip_reasons(self) -> dict[str, str]:
        """Video -> why setup left it out."""
        return self.corpus.skipped if self.corpus is not None else {}

    @property
    def skipped(self) -> list[str]:
        """The videos setup left out."""
        return list(self.skip_reasons)

    @property
    def unlabelled(self) -> dict[str, str]:
        """Video -> why it has no labels (a partition the corpus ships without): not used."""
        return self.corpus.unlabelled if self.corpus is not None else {}

    @property
    def held_out_subjects(self) -> list[str]:
        """Training subjects made the test split (``held_out_from_train``)."""
        return self.corpus.held_out_subjects if self.corpus is not None else []

    def _encoder_loader(self) -> EncoderLoader:
        model = self.trainer.lightning_module if self.trainer is not None else None
        loader = self.encoder_loader or getattr(model, "load_frozen_encoder", None)
        if loader is None:
            raise ValueError("data.feature_cache needs the model's encoder: set datamodule.encoder_loader "
                             "(fer_lightning.models.transfer.load_encoder) or attach the datamodule to a Trainer "
                             "with an AffectModule")
        return loader

    def setup(self, stage: str | None = None) -> None:
        if self.device_augment is not None and self._augment_base is None:
            self._augment_base = torch.initial_seed()  # the run's seed (a resumed run takes its checkpoint's)
        if self.datasets:
            return
        hp = self.hparams
        self.corpus = corpus = load_corpus(**corpus_settings(hp))
        if corpus.unlabelled:
            rank_zero_info(f"{len(corpus.unlabelled)} videos of {hp.dataset} come without labels and are not used: "
                           + _listed(corpus.unlabelled, 5))
        if corpus.skipped:
            rank_zero_warn(f"{len(corpus.skipped)} videos are skipped: " + _listed(corpus.skipped, 10))
        if hp.exclude_subjects:
            rank_zero_info(f"data.exclude_subjects: {len(corpus.excluded_subjects)} of the {len(hp.exclude_subjects)} "
                           f"subjects listed are in {hp.dataset} and are left out of every split"
                           + (": " + ", ".join(corpus.excluded_subjects[:10]) if corpus.excluded_subjects else ""))
        if corpus.held_out_subjects:
            rank_zero_info(f"{hp.dataset} has no labelled test split: {len(corpus.held_out_subjects)} training subjects "
                           f"held out as test (data.held_out_from_train={hp.held_out_from_train}): "
                           + ", ".join(corpus.held_out_subjects))
        if hp.clip_len > 1 and any(r.frames is not None for r in corpus.records):
            raise UserInputError(f"{hp.dataset} is a corpus of still images, each a one-frame clip: set data.clip_len: 1 "
                                 f"(it is {hp.clip_len}) and model.net.num_layers: 0, as experiments/pretrain_images.yaml "
                                 "does")
        # training reads only what it learns from; evaluation keeps every video (each is scored,
        # written and plotted, whatever it holds)
        by_split = {**corpus.splits, "train": _learnable(corpus.splits["train"], hp, hp.dataset)}
        margin = 0.0 if hp.face_store else hp.face_margin  # store frames are aligned crops with their own margin
        if hp.task == "pretrain":  # what the loss will see of each class, before a long run starts
            frames = class_frames(by_split["train"], hp.class_names)
            total = max(1, sum(frames.values()))
            rank_zero_info(f"training frames per class ({len(by_split['train'])} videos): "
                           + ", ".join(f"{c} {n} ({n / total:.1%})" for c, n in frames.items()))
        if sum(r.num_frames for rs in by_split.values() for r in rs) >= 100_000:  # where it pays for its 0.5 s
            _return_freed_memory()  # the manifest's and the index's peak, before workers fork
        span = (hp.clip_len - 1) * hp.frame_step + 1
        common = dict(
            clip_len=hp.clip_len,
            frame_step=hp.frame_step,
            image_size=hp.image_size,
            face_margin=margin,
            task=hp.task,
            target_names=hp.target_names,
        )

        def stride(train: bool) -> int:  # training: half-overlapping tiles; evaluation: eval_overlap
            return (hp.train_stride or max(1, span // 2)) if train else max(1, round(span * (1 - hp.eval_overlap)))

        if hp.feature_cache:
            from fer_lightning.data.features import FeatureClipDataset, build_feature_cache

            ckpt = (latest_checkpoint(synthetic=hp.dataset == "synthetic") if hp.feature_cache == "latest"
                    else Path(hp.feature_cache))
            cache_root = hp.feature_cache_dir or str(Path(hp.face_store or self.root) / "features")
            device = self.trainer.strategy.root_device if self.trainer is not None else "auto"
            folder = build_feature_cache([r for rs in by_split.values() for r in rs], ckpt, cache_root,
                                         hp.image_size, margin, self._encoder_loader(), device=device)
            for split in SPLITS:
                train = split == "train"
                self.datasets[split] = FeatureClipDataset(
                    by_split[split], folder,
                    stride=stride(train),
                    pad_last=not train, **common)
            return
        for split in SPLITS:
            train = split == "train"
            self.datasets[split] = ClipDataset(
                by_split[split],
                stride=stride(train),
                transform=self._augment() if train else None,
                pad_last=not train,  # evaluation windows reach every frame; the metric stitches them
                on_read_error="mask",  # a file that breaks mid-epoch is masked and named, not a crash
                **common,
            )
        for entry in hp.mix or ():
            name = self._mix_name(entry)
            args = dict(entry.get("dataset_args") or {})
            # a mixed corpus lends its training split alone: what it would carve off for its own
            # validation or test (image corpora do) would never be read, so it is not carved
            args.update({k: 0.0 for k in ("val_fraction", "test_fraction")
                         if k in adapter_options(entry["dataset"]) and k not in args})
            extra = load_corpus(**{**corpus_settings(hp), "dataset": entry["dataset"], "root": entry["root"],
                                   "dataset_args": args, "face_store": entry.get("face_store"),
                                   "held_out_from_train": 0.0, "train_subjects": None})
            if extra.skipped:
                rank_zero_warn(f"data.mix {name}: {len(extra.skipped)} videos are skipped: " + _listed(extra.skipped, 10))
            images = any(r.frames is not None for r in extra.records)  # still images: one-frame clips
            clip_len = int(entry.get("clip_len", 1 if images else hp.clip_len))
            if images and clip_len > 1:
                raise UserInputError(f"data.mix {name}: a corpus of still images is read as one-frame clips; its "
                                     f"clip_len is {clip_len}: leave it unset or 1")
            self.mixed[name] = ClipDataset(
                _learnable(extra.splits["train"], hp, f"data.mix {name}"), clip_len=clip_len,
                stride=max(1, ((clip_len - 1) * hp.frame_step + 1) // 2),
                frame_step=hp.frame_step, image_size=hp.image_size,
                face_margin=0.0 if entry.get("face_store") else hp.face_margin, task=hp.task,
                target_names=hp.target_names, transform=self._augment(), on_read_error="mask")
            if hp.task == "pretrain":
                frames = class_frames(extra.splits["train"], hp.class_names)
                rank_zero_info(f"data.mix {name}: {len(self.mixed[name])} training clips of {clip_len} frames; "
                               "frames per class: " + ", ".join(f"{c} {n}" for c, n in frames.items()))

    def _augment(self):
        if self.hparams.augment_on == "device":
            return None  # the batch is augmented on the device (on_after_batch_transfer)
        augment = build_augment(self.hparams.augment)
        if augment is not None:
            augment.seed(torch.initial_seed())  # reproducible in-process too (num_workers=0)
        return augment

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Training batches, once on the device: ``augment_on: device`` augments them here."""
        if self.device_augment is not None and "frames" in batch and self.trainer is not None and self.trainer.training:
            # each batch's draws follow from (run seed, rank, batch number), all in the checkpoint,
            # so a resumed run augments what an uninterrupted one would have
            key = [self._augment_base or 0, self.trainer.global_rank, self._augmented]
            self.device_augment.seed(int(np.random.SeedSequence(key).generate_state(1)[0]))
            self._augmented += 1
            batch["frames"] = self.device_augment(batch["frames"])
        return batch

    def state_dict(self) -> dict:
        if self.device_augment is None:
            return {}
        return {"device_augment": {"base": self._augment_base, "batches": self._augmented}}

    def load_state_dict(self, state_dict: dict) -> None:
        if self.device_augment is not None and "device_augment" in state_dict:
            self._augment_base = state_dict["device_augment"]["base"]
            self._augmented = state_dict["device_augment"]["batches"]

    def split_records(self, split: str) -> list[VideoRecord]:
        return self.datasets[split].records

    def check_ready(self, stage: str) -> None:
        """Set up now and check that the splits ``stage`` uses have something to learn from or
        score (:func:`~fer_lightning.corpora.check.check_labelled`): what the CLI calls before a
        fit, validate or test makes its run folder and W&B run, so a corpus that is not there, a
        missing face store or a split without a valid label is one sentence and leaves nothing
        behind. Real corpora only (the synthetic corpus may first be made, once per node) and
        not with a feature cache (built on the trainer's device)."""
        if get_preparer(self.hparams.dataset) is not None or self.hparams.feature_cache:
            return
        self.setup(stage)
        for split in {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage, ()):
            if split in self.datasets:
                check_labelled(split, self.datasets[split].records, self.hparams.dataset, self.root, self.hparams.task)

    def has_clips(self, split: str) -> bool:
        """Whether ``split`` has anything to evaluate (after setup): clips, and a valid label."""
        return split in self.datasets and len(self.datasets[split]) > 0 and \
            has_labels(split, self.datasets[split].records, self.hparams.task)

    def _loader(self, split: str, shuffle: bool, sampler=None) -> DataLoader:
        ds = self.datasets[split]
        if len(ds) == 0:
            hint = (" (the corpus has no labelled test videos: data.held_out_from_train > 0 holds training subjects "
                    "out as a test split)" if split == "test" else "")
            raise ValueError(f"the {split!r} split of {self.hparams.dataset} at {self.root} holds no clips{hint}")
        check_labelled(split, ds.records, self.hparams.dataset, self.root, self.hparams.task)  # e.g. every label invalid: loss 0
        workers = self.hparams.num_workers
        if workers:
            _single_threaded_opencv()
        return DataLoader(
            ds,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=(shuffle or sampler is not None) and len(ds) > self.hparams.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=self.hparams.prefetch_factor if workers > 0 else None,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=_worker_init,
        )

    @staticmethod
    def _mix_name(entry: dict) -> str:
        return f"{entry['dataset']}:{entry['root']}"

    def train_dataloader(self):
        main = self._train_loader()
        if not self.mixed:
            return main
        from lightning.pytorch.utilities import CombinedLoader

        hp = self.hparams
        loaders = {"main": main}
        for entry in hp.mix:
            name = self._mix_name(entry)
            clips = self.mixed[name]
            if len(clips) == 0:
                raise ValueError(f"data.mix {name}: its training split holds no clips")
            check_labelled("train", clips.records, name, entry["root"], hp.task)
            sampler = class_balanced_sampler(clips, len(hp.class_names)) if hp.balance_classes else None
            batch = int(entry.get("batch_size", hp.batch_size))
            loaders[name] = DataLoader(clips, batch_size=batch, shuffle=sampler is None, sampler=sampler,
                                       # never drop a rank's only partial batch: an empty loader would end
                                       # every combined epoch at once
                                       drop_last=False, num_workers=hp.num_workers,
                                       persistent_workers=hp.num_workers > 0,
                                       pin_memory=torch.cuda.is_available(), worker_init_fn=_worker_init)
        return CombinedLoader(loaders, mode="max_size_cycle")

    def _train_loader(self) -> DataLoader:
        hp = self.hparams
        clips = self.datasets["train"]
        if hp.train_reader == "random" or hp.feature_cache:  # cached features: no video to read
            if not hp.balance_classes:
                return self._loader("train", shuffle=True)
            sampler = class_balanced_sampler(clips, len(hp.class_names))
            return self._loader("train", shuffle=False, sampler=sampler)
        if len(clips) == 0:
            raise ValueError(f"the 'train' split of {hp.dataset} at {self.root} holds no clips")
        check_labelled("train", clips.records, hp.dataset, self.root, hp.task)
        world = self.trainer.world_size if self.trainer is not None else 1
        per_rank = hp.windows_per_video * len(clips.records) // world if hp.windows_per_video else None
        stream = ChunkedClipStream(clips, chunk_len=hp.chunk_len, buffer_size=hp.shuffle_buffer,
                                   num_workers=hp.num_workers, world_size=world, clips_per_epoch=per_rank,
                                   batch_size=hp.batch_size, seed=hp.seed,
                                   video_weights=class_balanced_weights(clips.records, len(hp.class_names))
                                   if hp.balance_classes else None)
        if hp.num_workers:
            _single_threaded_opencv()
        return DataLoader(stream, batch_size=hp.batch_size, num_workers=hp.num_workers,
                          persistent_workers=hp.num_workers > 0, pin_memory=torch.cuda.is_available(),
                          prefetch_factor=hp.prefetch_factor if hp.num_workers > 0 else None,
                          worker_init_fn=_worker_init)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
