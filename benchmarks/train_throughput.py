"""Training throughput: the full data pipeline against the model-only ceiling, in one run.

Prints one JSON line. On one device, with one model, precision and training step:

(a) model-only frames/s: random uint8 clips and targets already on the device;
(b) full pipeline frames/s: the project's ``AffectDataModule`` reading a face-clip store made by
    ``fer-lightning preprocess`` (decord, chunked sequential reads + shuffle buffer, clip-wise
    augmentation), pinned host memory and a non-blocking copy to the device, the same step;

and the judged ratio b / a. Also: loader-only frames/s per worker count (the CPU side alone),
the frames/s one worker delivers, the workers the measured ratio needed and the workers that
12,000 frames/s (an H100's ResNet-50 ceiling at 112 px, ../shared/probes) would need at that
per-worker rate; and the shuffle quality: distinct videos among the 16 clips of a batch, against
the expectation under uniform random sampling of clips (over all videos, and over the share of
videos one worker reads: a batch comes from one worker).

Here (2 CPU cores) it runs a small backbone on the CPU; on a GPU machine run e.g.
``--device cuda --backbone resnet50 --hidden-size 256 --num-layers 2 --precision bf16-mixed
--workers 4 8 14 --videos 48``.
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


def make_store(tmp: Path, videos: int, seconds: float) -> tuple[Path, Path]:
    from fer_lightning.data.store import PreprocessConfig, preprocess
    from fer_lightning.data.synthetic import SynthConfig, generate_corpus

    corpus, store = tmp / "corpus", tmp / "store"
    generate_corpus(SynthConfig(videos=videos, seconds=seconds, seed=5, split=(1.0, 0.0, 0.0), faceless_prob=0.0),
                    corpus, workers=os.cpu_count(), progress=False)
    report = preprocess([corpus / "videos"], store, PreprocessConfig(), workers=os.cpu_count() or 1, progress=False)
    assert report["failed"] == 0, report
    return corpus, store


def datamodule(corpus: Path, store: Path, args, workers: int):
    from fer_lightning.data.datamodule import AffectDataModule

    dm = AffectDataModule(root=str(corpus), face_store=str(store), clip_len=args.clip_len, image_size=args.image_size,
                          batch_size=args.batch_size, num_workers=workers, augment=True, train_reader="chunked",
                          prefetch_factor=args.prefetch_factor if workers else None)
    dm.setup()
    return dm


def forever(loader):
    while True:
        yield from loader


class Step:
    """One training step, the same for both paths: forward under the chosen precision, masked
    1 - CCC loss, backward, AdamW."""

    def __init__(self, args, device: torch.device) -> None:
        from fer_lightning.models import AffectModule

        self.module = AffectModule(backbone=args.backbone, hidden_size=args.hidden_size, num_layers=args.num_layers,
                                   compile_backbone=args.compile)
        self.module.configure_model()  # what Lightning calls: compiles the backbone in place if asked
        self.module.to(device).train()
        self.opt = torch.optim.AdamW(self.module.parameters(), lr=1e-4)
        self.device = device
        bf16 = args.precision == "bf16-mixed"
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


def model_only(step: Step, args) -> float:
    b, t, s = args.batch_size, args.clip_len, args.image_size
    frames = torch.randint(0, 256, (b, t, 3, s, s), dtype=torch.uint8, device=step.device)
    targets = torch.rand(b, t, 2, device=step.device) * 2 - 1
    mask = torch.ones(b, t, dtype=torch.bool, device=step.device)

    def batches():
        while True:
            yield frames, targets, mask

    return timed(step, batches(), args.steps, args.warmup, b * t)


def pipeline(step: Step, corpus: Path, store: Path, args, workers: int) -> float:
    loader = datamodule(corpus, store, args, workers).train_dataloader()

    def batches():
        for batch in forever(loader):
            yield (batch["frames"].to(step.device, non_blocking=True), batch["targets"].to(step.device, non_blocking=True),
                   batch["mask"].to(step.device, non_blocking=True))

    return timed(step, batches(), args.steps, args.warmup, args.batch_size * args.clip_len)


def loader_only(corpus: Path, store: Path, args, workers: int, batches: int) -> tuple[float, list[int]]:
    """Frames/s of the DataLoader alone, and distinct videos per batch."""
    it = forever(datamodule(corpus, store, args, workers).train_dataloader())
    for _ in range(3):
        next(it)
    distinct = []
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        distinct.append(len(set(batch["video_id"])))
    return batches * args.batch_size * args.clip_len / (time.perf_counter() - start), distinct


def augment_cost(args, clips: int = 200) -> dict[str, float]:
    """Milliseconds per clip of each part of the default CPU augmentation (one thread): what a
    worker spends besides decoding, and what moving it onto the GPU would free."""
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
    ap.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--prefetch-factor", type=int, default=None)
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--loader-batches", type=int, default=60)
    ap.add_argument("--target-fps", type=float, default=12_000.0, help="frames/s the workers estimate is for")
    args = ap.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    out: dict = {"benchmark": "train_throughput", "device": torch.cuda.get_device_name(device) if device.type == "cuda"
                 else f"cpu ({len(os.sched_getaffinity(0))} cores)", "backbone": args.backbone,
                 "lstm": f"{args.num_layers}x{args.hidden_size} bidirectional", "image_size": args.image_size,
                 "clip": f"{args.batch_size} x {args.clip_len}", "precision": args.precision, "compile": args.compile,
                 "channels_last": True}
    with tempfile.TemporaryDirectory() as tmp:
        corpus, store = make_store(Path(tmp), args.videos, args.seconds)
        out["store_mb_per_million_frames"] = round(
            sum(p.stat().st_size for p in (store / "videos").glob("*.mp4")) / 2**20
            / (args.videos * args.seconds * 25) * 1e6, 1)
        loader_fps, distinct = {}, {}
        for w in args.workers:
            loader_fps[w], distinct[w] = loader_only(corpus, store, args, w, args.loader_batches)
        per_worker = max(loader_fps[w] / w for w in args.workers if w)
        out["loader_frames_per_s"] = {str(w): round(v, 1) for w, v in loader_fps.items()}
        out["frames_per_s_per_worker"] = round(per_worker, 1)
        out[f"workers_for_{int(args.target_fps)}_frames_per_s"] = int(np.ceil(args.target_fps / per_worker))
        # a batch comes from one worker, and workers read disjoint shares of the videos: compare
        # with uniform sampling over all videos and over one worker's share
        v, k = args.videos, args.batch_size

        def expected(n: float) -> float:
            return round(n * (1 - (1 - 1 / n) ** k), 2)

        out["distinct_videos_per_batch"] = {str(w): round(float(np.mean(d)), 2) for w, d in distinct.items()}
        out["distinct_videos_per_batch_random_sampling"] = expected(v)
        out["distinct_videos_per_batch_random_sampling_within_a_worker_share"] = {
            str(w): expected(max(1.0, v / max(1, w))) for w in distinct}
        out["augment_ms_per_clip"] = augment_cost(args)
        step = Step(args, device)
        ceiling = model_only(step, args)
        full = {w: pipeline(step, corpus, store, args, w) for w in args.workers}
    best_w = max(full, key=full.get)
    out["model_only_frames_per_s"] = round(ceiling, 1)
    out["pipeline_frames_per_s"] = {str(w): round(v, 1) for w, v in full.items()}
    out["ratio"] = round(full[best_w] / ceiling, 3)
    enough = [w for w in sorted(full) if full[w] / ceiling >= 0.95]
    out["workers_for_ratio_0.95"] = enough[0] if enough else None
    out["judged"] = "ratio = pipeline / model-only frames/s (goal >= 0.95)"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
