"""Training-clip throughput from the face-clip store, and worker memory over many clips.

Builds a synthetic corpus (12 subjects x 20 s, 256 px), preprocesses it into a face-clip store
with the real detector, then reads training batches (16 clips x 16 frames, 112 px, no
augmentation) through ``AffectDataModule`` with each train reader (``random``: one seek per
clip; ``chunked``: contiguous chunk reads cut into clips and mixed in a shuffle buffer) and
0, 1 and 2 DataLoader workers. Prints one JSON line: frames/s and clips/s per setting, frames/s
per worker, the ratio chunked/random at the most workers, and the RSS of a worker after 200 and
after 2,000 clips (goal: growth under 10 %).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def make_store(tmp: Path) -> tuple[Path, Path]:
    from fer_lightning.corpora.synthetic.generator import SynthConfig, generate_corpus
    from fer_lightning.store.write import PreprocessConfig, preprocess

    corpus, store = tmp / "corpus", tmp / "store"
    generate_corpus(SynthConfig(videos=12, seconds=20.0, seed=3, split=(1.0, 0.0, 0.0)), corpus, workers=2,
                    progress=False)
    report = preprocess([corpus / "videos"], store, PreprocessConfig(), workers=2, progress=False)
    assert report["failed"] == 0, report
    return corpus, store


def loader(corpus: Path, store: Path, reader: str, workers: int):
    from fer_lightning.data.datamodule import AffectDataModule

    dm = AffectDataModule(root=str(corpus), face_store=str(store), clip_len=16, image_size=112, batch_size=16,
                          num_workers=workers, augment=False, train_reader=reader, windows_per_video=400)
    dm.setup()
    return dm.train_dataloader()


def forever(dl):
    """Batches across epochs (persistent workers stay the same processes)."""
    while True:
        yield from dl


def throughput(corpus: Path, store: Path, reader: str, workers: int, batches: int) -> float:
    it = forever(loader(corpus, store, reader, workers))
    for _ in range(3):  # warm-up: workers start, readers open
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * 16 * 16 / (time.perf_counter() - t)


def worker_rss(corpus: Path, store: Path, reader: str) -> tuple[float, float]:
    dl = loader(corpus, store, reader, 1)
    clips, marks, pid = 0, {}, None
    while clips < 2000:
        it = iter(dl)
        pid = pid or it._workers[0].pid
        assert it._workers[0].pid == pid  # persistent: the same worker process every epoch
        for batch in it:
            clips += len(batch["video_id"])
            for mark in (200, 2000):
                if clips >= mark and mark not in marks:
                    marks[mark] = rss_mb(pid)
            if clips >= 2000:
                break
    return marks[200], marks[2000]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, default=40, help="timed batches per setting")
    args = ap.parse_args()
    result = {"benchmark": "datamodule", "clip": "16 x 112 px", "batch": 16}
    with tempfile.TemporaryDirectory() as tmp:
        corpus, store = make_store(Path(tmp))
        for reader in ("random", "chunked"):
            for workers in (0, 1, 2):
                fps = throughput(corpus, store, reader, workers, args.batches)
                result[f"{reader}_w{workers}_frames_per_s"] = round(fps, 1)
                result[f"{reader}_w{workers}_clips_per_s"] = round(fps / 16, 1)
                if workers:
                    result[f"{reader}_w{workers}_frames_per_s_per_worker"] = round(fps / workers, 1)
        result["ratio_chunked_over_random_w2"] = round(result["chunked_w2_frames_per_s"] / result["random_w2_frames_per_s"], 3)
        for reader in ("random", "chunked"):
            a, b = worker_rss(corpus, store, reader)
            result[f"{reader}_worker_rss_mb_200_clips"] = round(a, 1)
            result[f"{reader}_worker_rss_mb_2000_clips"] = round(b, 1)
            result[f"{reader}_worker_rss_growth"] = round(b / a - 1, 3)
    result["cpu_cores"] = len(os.sched_getaffinity(0))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
