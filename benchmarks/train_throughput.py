"""Training throughput: the full data pipeline against the model-only ceiling, in one run.

Prints one JSON line. On one device, with one model, precision and training step:

(a) model-only frames/s: random uint8 clips and targets already on the device;
(b) full pipeline frames/s: the project's ``AffectDataModule`` reading a face-clip store made by
    ``fer-lightning preprocess`` (decord, chunked sequential reads + shuffle buffer, clip-wise
    augmentation), pinned host memory and a non-blocking copy to the device, the same step;

and the judged ratio b / a. Each change is shown before and after, in the same run:

- augmentation in the DataLoader workers (``data.augment_on: loader``, albumentations on the CPU)
  against augmentation of the whole batch on the device (``augment_on: device``): loader-only
  frames/s per worker count (the CPU side alone), the frames/s one worker delivers, the workers
  12,000 frames/s (about an H100's ResNet-50 training ceiling at 112 px) would need, what the
  device augmentation costs per batch beside the training step, and the full pipeline with each;
- model-only with and without channels_last (``--ablate channels_last``), torch.compile of the
  backbone (``--ablate compile``), the other precision (``--ablate precision``);
- the store: H.264 face videos against a raw uint8 store (size per million frames; one process
  decoding contiguous chunks against one process copying them out of a page-cached memmap, the
  best case of a fast local disk);

how long the loader takes to the first batch of an epoch (persistent workers keep the shuffle
buffer across epochs, so only the first epoch fills it), and the shuffle quality: distinct videos among the 16 clips of a batch, against the expectation
under uniform random sampling of clips (over all videos, and over the share of videos one worker
reads: a batch comes from one worker).

Here (2 CPU cores) it runs a small backbone on the CPU; on a GPU machine run
``benchmarks/gpu_suite.sh`` (ResNet-50 + 2x256 BiLSTM, bf16, 112 and 224 px).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

AUGMENT_ON = ("loader", "device")


def make_store(tmp: Path, videos: int, seconds: float, size: int) -> tuple[Path, Path]:
    from fer_lightning.corpora.synthetic.generator import SynthConfig, generate_corpus
    from fer_lightning.store.write import PreprocessConfig, preprocess

    corpus, store = tmp / "corpus", tmp / "store"
    generate_corpus(SynthConfig(videos=videos, seconds=seconds, seed=5, split=(1.0, 0.0, 0.0), faceless_prob=0.0),
                    corpus, workers=os.cpu_count(), progress=False)
    report = preprocess([corpus / "videos"], store, PreprocessConfig(size=size), workers=os.cpu_count() or 1,
                        progress=False)
    assert report["failed"] == 0, report
    return corpus, store


def datamodule(corpus: Path, store: Path, args, workers: int, augment_on: str):
    from fer_lightning.data.datamodule import AffectDataModule

    dm = AffectDataModule(root=str(corpus), face_store=str(store), clip_len=args.clip_len, image_size=args.image_size,
                          batch_size=args.batch_size, num_workers=workers, augment=True, augment_on=augment_on,
                          train_reader="chunked", chunk_len=args.chunk_len, shuffle_buffer=args.shuffle_buffer,
                          prefetch_factor=args.prefetch_factor if workers else None)
    dm.setup()
    return dm


def forever(loader):
    while True:
        yield from loader


class Step:
    """One training step, the same for every path: forward under the chosen precision, masked
    1 - CCC loss, backward, AdamW."""

    def __init__(self, args, device: torch.device, precision: str, channels_last: bool = True,
                 compile_backbone: bool = False) -> None:
        from fer_lightning.models import AffectModule

        self.module = AffectModule(compile_backbone=compile_backbone,
                                   net=dict(backbone=args.backbone, hidden_size=args.hidden_size, num_layers=args.num_layers))
        if not channels_last:
            encoder = self.module.net.encoder
            encoder.channels_last = False
            encoder.model = encoder.model.to(memory_format=torch.contiguous_format)
        self.module.configure_model()  # what Lightning calls: compiles the backbone in place if asked
        self.module.to(device).train()
        self.opt = torch.optim.AdamW(self.module.parameters(), lr=1e-4)
        self.device = device
        bf16 = precision == "bf16-mixed"
        self.autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext

    def __call__(self, frames: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> None:
        with self.autocast():
            preds = self.module.net(frames)
        loss = self.module.loss(preds.float(), targets, mask)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def timed(step: Step, batches, n: int, warmup: int, frames_per_batch: int) -> float:
    for _ in range(warmup):
        step(*next(batches))
    step.sync()
    start = time.perf_counter()
    for _ in range(n):
        step(*next(batches))
    step.sync()
    return n * frames_per_batch / (time.perf_counter() - start)


def model_only(step: Step, args, warmup: int | None = None) -> float:
    b, t, s = args.batch_size, args.clip_len, args.image_size
    frames = torch.randint(0, 256, (b, t, 3, s, s), dtype=torch.uint8, device=step.device)
    targets = torch.rand(b, t, 2, device=step.device) * 2 - 1
    mask = torch.ones(b, t, dtype=torch.bool, device=step.device)

    def batches():
        while True:
            yield frames, targets, mask

    return timed(step, batches(), args.steps, args.warmup if warmup is None else warmup, b * t)


def pipeline(step: Step, corpus: Path, store: Path, args, workers: int, augment_on: str) -> float:
    """What Lightning does per batch: pinned batch -> non-blocking copy -> the DataModule's
    ``on_after_batch_transfer`` (device augmentation) -> the step."""
    dm = datamodule(corpus, store, args, workers, augment_on)
    augment = dm.device_augment
    loader = dm.train_dataloader()

    def batches():
        for batch in forever(loader):
            frames = batch["frames"].to(step.device, non_blocking=True)
            yield (augment(frames) if augment is not None else frames,
                   batch["targets"].to(step.device, non_blocking=True), batch["mask"].to(step.device, non_blocking=True))

    return timed(step, batches(), args.steps, args.warmup, args.batch_size * args.clip_len)


def loader_only(corpus: Path, store: Path, args, workers: int, batches: int,
                augment_on: str) -> tuple[float, list[int]]:
    """Frames/s of the DataLoader alone, and distinct videos per batch."""
    it = forever(datamodule(corpus, store, args, workers, augment_on).train_dataloader())
    for _ in range(3):
        next(it)
    distinct = []
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        distinct.append(len(set(batch["video_id"])))
    return batches * args.batch_size * args.clip_len / (time.perf_counter() - start), distinct


def epoch_start(corpus: Path, store: Path, args, workers: int, epochs: int = 3) -> dict[str, float]:
    """Seconds to the first batch of epochs after the first (persistent workers) against the
    median gap between batches: what a GPU waits at each epoch start."""
    loader = datamodule(corpus, store, args, workers, "device").train_dataloader()
    first, gaps = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        times = [time.perf_counter() for _ in loader]
        first.append(times[0] - start)
        gaps += np.diff(times).tolist()
    return {"batches_per_epoch": len(loader), "first_batch_s_epoch_0": round(first[0], 3),
            "first_batch_s_later_epochs": round(float(np.mean(first[1:])), 3),
            "median_batch_gap_s": round(float(np.median(gaps)), 4)}


def augment_cost(args, clips: int = 200) -> dict[str, float]:
    """Milliseconds per clip of each part of the default CPU augmentation (one thread): what a
    worker spends besides decoding, and what moving it onto the device frees."""
    import cv2

    from fer_lightning.data.transforms import ClipAugment

    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (args.clip_len, args.image_size, args.image_size, 3), dtype=np.uint8)
    parts = {"flip": dict(flip=1.0, affine=0.0, photometric=0.0), "affine": dict(flip=0.0, affine=1.0, photometric=0.0),
             "photometric": dict(flip=0.0, affine=0.0, photometric=1.0), "default": {}}
    out = {}
    for name, probs in parts.items():
        aug = ClipAugment(**probs)
        aug.seed(0)
        aug(clip)
        start = time.perf_counter()
        for _ in range(clips):
            aug(clip)
        out[name] = round(1000 * (time.perf_counter() - start) / clips, 2)
    return out


def device_augment_ms(args, device: torch.device, n: int = 10) -> float:
    """Milliseconds per batch of the device augmentation (all of flip, affine and photometric on)."""
    from fer_lightning.data.device_augment import DeviceClipAugment

    aug = DeviceClipAugment(flip=1.0, affine=1.0, photometric=1.0)
    frames = torch.randint(0, 256, (args.batch_size, args.clip_len, 3, args.image_size, args.image_size),
                           dtype=torch.uint8, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    aug(frames)
    sync()
    start = time.perf_counter()
    for _ in range(n):
        aug(frames)
    sync()
    return 1000 * (time.perf_counter() - start) / n


def raw_store(store: Path, args, tmp: Path, reads: int = 100) -> dict:
    """A raw uint8 store against the H.264 store: bytes per million frames, and one process
    reading ``chunk`` contiguous frames at random places: decord decoding the face video vs a copy
    out of a page-cached memmap (the best case of a fast local disk)."""
    import decord

    chunk = 128
    videos = sorted((store / "videos").glob("*.mp4"))
    arrays = []
    for path in videos:
        vr = decord.VideoReader(str(path), num_threads=1)
        frames = vr.get_batch(list(range(len(vr)))).asnumpy()
        mm = np.lib.format.open_memmap(tmp / f"{path.stem}.npy", mode="w+", dtype=np.uint8, shape=frames.shape)
        mm[:] = frames
        mm.flush()
        arrays.append(np.load(tmp / f"{path.stem}.npy", mmap_mode="r"))
    rng = np.random.default_rng(0)
    picks = [(int(rng.integers(len(videos))), float(rng.random())) for _ in range(reads)]

    def starts(i: int, u: float) -> int:
        return int(u * max(1, len(arrays[i]) - chunk))

    start = time.perf_counter()
    n = 0
    for i, u in picks:
        vr = decord.VideoReader(str(videos[i]), num_threads=1)  # a worker opens each video once per chunk at most
        a = starts(i, u)
        n += len(vr.get_batch(list(range(a, min(len(vr), a + chunk)))).asnumpy())
    decode = n / (time.perf_counter() - start)
    start = time.perf_counter()
    n = 0
    for i, u in picks:
        a = starts(i, u)
        n += len(np.array(arrays[i][a:a + chunk]))
    raw = n / (time.perf_counter() - start)
    s = args.image_size
    return {"h264_mb_per_million_frames": round(sum(p.stat().st_size for p in videos) / 2**20
                                                / sum(len(a) for a in arrays) * 1e6, 1),
            "raw_uint8_mb_per_million_frames": round(s * s * 3 / 2**20 * 1e6, 1),
            f"decode_frames_per_s_one_process_chunk_{chunk}": round(decode, 1),
            f"raw_copy_frames_per_s_one_process_chunk_{chunk}": round(raw, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backbone", default="resnet10t")
    ap.add_argument("--hidden-size", type=int, default=64)
    ap.add_argument("--num-layers", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--clip-len", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--precision", default="32-true", choices=("32-true", "bf16-mixed"))
    ap.add_argument("--compile", action="store_true", help="torch.compile the backbone on every path")
    ap.add_argument("--ablate", nargs="*", default=["channels_last"], choices=("channels_last", "compile", "precision"),
                    help="model-only before/after figures to add")
    ap.add_argument("--augment-on", nargs="+", default=list(AUGMENT_ON), choices=AUGMENT_ON)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="loader-only worker counts")
    ap.add_argument("--pipeline-workers", type=int, nargs="+", default=None,
                    help="full-pipeline worker counts (default: the largest of --workers)")
    ap.add_argument("--prefetch-factor", type=int, default=None)
    ap.add_argument("--chunk-len", type=int, default=128, help="data.chunk_len: frames per contiguous read")
    ap.add_argument("--shuffle-buffer", type=int, default=256, help="data.shuffle_buffer: clips mixed")
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--loader-batches", type=int, default=60)
    ap.add_argument("--target-fps", type=float, default=12_000.0, help="frames/s the workers estimate is for")
    ap.add_argument("--skip-raw-store", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    pipeline_workers = args.pipeline_workers or [max(args.workers)]
    out: dict = {"benchmark": "train_throughput", "device": torch.cuda.get_device_name(device) if device.type == "cuda"
                 else f"cpu ({len(os.sched_getaffinity(0))} cores)", "cpu_cores": len(os.sched_getaffinity(0)),
                 "backbone": args.backbone, "lstm": f"{args.num_layers}x{args.hidden_size} bidirectional",
                 "image_size": args.image_size, "clip": f"{args.batch_size} x {args.clip_len}",
                 "precision": args.precision, "compile": args.compile, "channels_last": True,
                 "prefetch_factor": args.prefetch_factor, "chunk_len": args.chunk_len,
                 "shuffle_buffer": args.shuffle_buffer}
    target = f"workers_for_{int(args.target_fps)}_frames_per_s"
    with tempfile.TemporaryDirectory() as tmp:
        corpus, store = make_store(Path(tmp), args.videos, args.seconds, args.image_size)
        if not args.skip_raw_store:
            (Path(tmp) / "raw").mkdir()
            out["store"] = raw_store(store, args, Path(tmp) / "raw")
        loader_fps: dict = {}
        distinct: dict = {}
        for on in args.augment_on:
            loader_fps[on] = {}
            for w in args.workers:
                loader_fps[on][w], d = loader_only(corpus, store, args, w, args.loader_batches, on)
                distinct.setdefault(w, []).extend(d)
        out["loader_frames_per_s"] = {on: {str(w): round(v, 1) for w, v in r.items()} for on, r in loader_fps.items()}
        per_worker = {on: max(r[w] / w for w in r if w) for on, r in loader_fps.items()}
        out["frames_per_s_per_worker"] = {on: round(v, 1) for on, v in per_worker.items()}
        out[target] = {on: int(np.ceil(args.target_fps / v)) for on, v in per_worker.items()}
        # a batch comes from one worker, and workers read disjoint shares of the videos: compare
        # with uniform sampling over all videos and over one worker's share
        v, k = args.videos, args.batch_size

        def expected(n: float) -> float:
            return round(n * (1 - (1 - 1 / n) ** k), 2)

        out["distinct_videos_per_batch"] = {str(w): round(float(np.mean(d)), 2) for w, d in distinct.items()}
        out["distinct_videos_per_batch_random_sampling"] = expected(v)
        out["distinct_videos_per_batch_random_sampling_within_a_worker_share"] = {
            str(w): expected(max(1.0, v / max(1, w))) for w in distinct}
        out["epoch_start"] = epoch_start(corpus, store, args, max(args.workers))
        out["loader_augment_ms_per_clip_one_thread"] = augment_cost(args)
        out["device_augment_ms_per_batch"] = round(device_augment_ms(args, device), 2)

        step = Step(args, device, args.precision, compile_backbone=args.compile)
        ceiling = model_only(step, args)
        out["model_step_ms_per_batch"] = round(1000 * args.batch_size * args.clip_len / ceiling, 2)
        full = {on: {w: pipeline(step, corpus, store, args, w, on) for w in pipeline_workers} for on in args.augment_on}
        del step
        variants = {"as configured": ceiling}
        other = "32-true" if args.precision == "bf16-mixed" else "bf16-mixed"
        for name in args.ablate:
            kw = {"channels_last": dict(channels_last=False, compile_backbone=args.compile),
                  "compile": dict(compile_backbone=not args.compile),
                  "precision": dict(compile_backbone=args.compile)}[name]
            label = {"channels_last": "without channels_last", "compile": "without compile" if args.compile
                     else "with compile", "precision": other}[name]
            s = Step(args, device, other if name == "precision" else args.precision, **kw)
            variants[label] = model_only(s, args, warmup=args.warmup + (3 if name == "compile" else 0))
            del s
    out["model_only_frames_per_s"] = {k: round(v, 1) for k, v in variants.items()}
    out["pipeline_frames_per_s"] = {on: {str(w): round(x, 1) for w, x in r.items()} for on, r in full.items()}
    out["ratio_by_augment_on"] = {on: round(max(r.values()) / ceiling, 3) for on, r in full.items()}
    out["ratio"] = max(out["ratio_by_augment_on"].values())
    enough = {on: [w for w in sorted(r) if r[w] / ceiling >= 0.95] for on, r in full.items()}
    out["workers_for_ratio_0.95"] = {on: (e[0] if e else None) for on, e in enough.items()}
    out["judged"] = "ratio = pipeline / model-only frames/s, best augment_on (goal >= 0.95)"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
