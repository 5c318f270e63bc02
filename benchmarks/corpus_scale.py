"""How setup, memory and the first batch grow with the number of videos in a face store.

Builds face stores of 100, 1,000 and 10,000 short 112 px face videos (100 frames each at 25 fps,
so 10,000 to 1,000,000 frames) the way ``fer-lightning preprocess`` lays them out: a few face
videos are encoded with the store's own writer and every store video is a hard link to one of
them (setup never decodes; the clip reads decode real H.264), one ``meta/*.csv`` per video, and
the index (``index.csv``, ``frames.parquet``) written by ``store.index.write_index``. Beside it a
pretraining corpus whose raw videos are *absent*: an emotion manifest with one row per frame
(CSV and Parquet; a million rows at the largest), 7 classes with a long tail, four videos per
subject.

For each size, in a fresh process (so that memory is that size's alone), it measures:

- ``index_read_s``: the store's ``index.csv`` and ``frames.parquet`` into memory;
- ``manifest_parquet_s`` / ``manifest_csv_s``: the emotion-manifest adapter on each manifest
  (labels on every frame, per-class counts, the subject-disjoint train/val/test split);
- ``setup_s``: ``AffectDataModule.setup`` (pretraining, class-balanced, through the store);
- ``data_check_s``: ``fer-lightning data check`` as a user runs it (a new process);
- ``main_rss_mb``: the main process after setup (``main_rss_over_start_mb``: above the same
  process before it read anything: per-video and per-frame arrays, and the manifest's peak);
- ``worker_rss_mb`` / ``worker_uss_mb``: one DataLoader worker after 2,000 training clips (RSS
  counts the pages it shares with the main process after fork; USS only its own);
- ``first_batch_s``: from ``iter(train_dataloader)`` to the first batch (the worker starts and
  fills its shuffle buffer).

Then the growth exponent ``k`` of each figure (least squares on log figure = k log N + c; also
between the two largest sizes alone, where fixed costs have faded: the slope to extrapolate by) and,
for 10,000 videos across 8 workers, the chunked stream's shuffle quality: distinct videos in a
batch of 32 against 32 clips drawn uniformly. Prints one JSON line, judged by the largest ``k``
(goal <= 1.1) and the 10,000-video setup and data check seconds (goal < 30 each); writes
``corpus_scale.png`` (log-log plot) and the figures as ``corpus_scale.json`` beside ``--out``.

    python benchmarks/corpus_scale.py [--sizes 100 1000 10000] [--out runs/bench/corpus_scale]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CLASSES = ["neutral", "happiness", "sadness", "surprise", "anger", "disgust", "fear"]
SHARE = np.array([0.40, 0.25, 0.12, 0.10, 0.07, 0.04, 0.02])  # a long tail, as in-the-wild emotion corpora have
FPS, SIZE = 25.0, 112


def proc_mb(pid: int, fields: tuple[str, ...]) -> float:
    """Sum of ``fields`` (kB) in /proc/<pid>/smaps_rollup, in MB."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in fields:
                total += int(rest.split()[0])
    return total / 1024


def encode_templates(folder: Path, count: int, frames: int) -> list[tuple[Path, Path, np.ndarray]]:
    """``count`` face videos encoded with the store's writer, each with its meta CSV: a bright
    moving blob on a gradient, one faceless (black) stretch of 10-30 frames."""
    from fer_lightning.media.face_video import FaceVideoWriter

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    out = []
    for k in range(count):
        video, meta = folder / f"t{k}.mp4", folder / f"t{k}.csv"
        gap = int(rng.integers(10, 31))
        lo = int(rng.integers(0, frames - gap))
        has_face = np.ones(frames, bool)
        has_face[lo:lo + gap] = False
        writer = FaceVideoWriter(folder / f".t{k}.tmp.mp4", SIZE, FPS)
        for i in range(frames):
            if has_face[i]:
                cx, cy = 56 + 20 * np.sin(0.1 * i + k), 56 + 20 * np.cos(0.13 * i + k)
                blob = 255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 300.0)
                img = np.stack([blob, 0.5 * xx + 40 * k % 255, 0.5 * yy], -1).clip(0, 255).astype(np.uint8)
                writer.write(i, img)
        writer.close(frames, video)
        rows = ["frame_index,time_s,has_face"] + [f"{i},{i / FPS:.6f},{int(h)}" for i, h in enumerate(has_face)]
        meta.write_text("\n".join(rows) + "\n")
        out.append((video, meta, has_face))
    return out


def build(root: Path, n: int, frames: int, templates: list) -> dict:
    """A store of ``n`` face videos and the manifests of their (absent) raw corpus under ``root``."""
    import pandas as pd

    from fer_lightning.store.index import write_index

    store, corpus = root / "store", root / "corpus"
    for sub in ("videos", "meta"):
        (store / sub).mkdir(parents=True, exist_ok=True)
    corpus.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    entries, video_col, frame_col, label_col, subject_col = [], [], [], [], []
    for i in range(n):
        vid = f"v{i:05d}"
        video, meta, has_face = templates[i % len(templates)]
        os.link(video, store / "videos" / f"{vid}.mp4")
        os.link(meta, store / "meta" / f"{vid}.csv")
        face = int(has_face.sum())
        entries.append({"video_id": vid, "source": f"/raw/corpus/videos/{vid}.mp4", "source_rel": f"videos/{vid}.mp4",
                        "fps": FPS, "num_frames": frames, "face_frames": face, "coverage": face / frames,
                        "status": "ok", "reason": "", "outputs": [{"video_id": vid, "face_frames": face,
                                                                   "coverage": face / frames}]})
        # each video mostly shows one emotion (drawn with the corpus's shares), with stretches of others
        main = rng.choice(len(CLASSES), p=SHARE)
        labels = np.where(rng.random(frames) < 0.8, main, rng.choice(len(CLASSES), size=frames, p=SHARE))
        video_col += [f"videos/{vid}.mp4"] * frames
        frame_col.append(np.arange(frames))
        label_col.append(labels)
        subject_col += [f"s{i // 4:05d}"] * frames
    t = time.perf_counter()
    write_index(store, entries, SIZE)
    index_s = time.perf_counter() - t
    (store / "report.json").write_text(json.dumps({"settings": {"size": SIZE}, "entries": entries}) + "\n")
    table = pd.DataFrame({"video": video_col, "frame": np.concatenate(frame_col),
                          "label": np.array(CLASSES)[np.concatenate(label_col)], "subject": subject_col})
    table.to_parquet(corpus / "labels.parquet", index=False)
    table.to_csv(corpus / "labels.csv", index=False)
    return {"videos": n, "frames": n * frames, "rows": len(table), "index_write_s": round(index_s, 2),
            "store_mb": round(sum(f.stat().st_size for f in (store / "frames.parquet", store / "index.csv")) / 2**20, 1),
            "manifest_csv_mb": round((corpus / "labels.csv").stat().st_size / 2**20, 1),
            "manifest_parquet_mb": round((corpus / "labels.parquet").stat().st_size / 2**20, 1)}


def shuffle_quality(clips, workers: int = 8, batch: int = 32, batches: int = 40) -> dict:
    """Distinct videos per batch of the chunked stream (each batch comes from one worker's
    stream) against ``batch`` clips drawn uniformly over all clips (by video length), from the
    stream's own plan (no decoding)."""
    from fer_lightning.data.chunked import ChunkedClipStream, _StreamState

    stream = ChunkedClipStream(clips, chunk_len=128, buffer_size=256, num_workers=workers, batch_size=batch, seed=0)
    distinct = []
    for shard in range(workers):
        state = _StreamState(stream, shard, workers)
        for _ in range(batches):
            distinct.append(len({state.next(decode=False).rec_i for _ in range(batch)}))
    rng = np.random.default_rng(0)
    p = stream.video_weights / stream.video_weights.sum()
    uniform = [len(set(rng.choice(len(p), size=batch, p=p).tolist())) for _ in range(workers * batches)]
    return {"videos": len(clips.records), "workers": workers, "batch": batch,
            "distinct_per_batch": round(float(np.mean(distinct)), 2),
            "uniform_distinct_per_batch": round(float(np.mean(uniform)), 2),
            "ratio": round(float(np.mean(distinct) / np.mean(uniform)), 3)}


def measure(root: Path, clips_for_rss: int, shuffle: bool) -> dict:
    """One size's figures, in this (fresh) process."""
    import torch

    from fer_lightning.corpora.adapters import load_dataset
    from fer_lightning.corpora.context import AdapterContext
    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.store.read import _INDEX_CACHE, load_index

    torch.set_num_threads(1)
    corpus, store = root / "corpus", root / "store"
    base_rss = proc_mb(os.getpid(), ("Rss",))
    out: dict = {}
    t = time.perf_counter()
    dm = AffectDataModule(root=str(corpus), dataset="emotion_manifest", task="pretrain", class_names=CLASSES,
                          face_store=str(store), dataset_args={"manifest": "labels.parquet"}, clip_len=16,
                          image_size=SIZE, batch_size=8, num_workers=1, augment=False, balance_classes=True,
                          held_out_from_train=0.0)
    dm.setup()
    out["setup_s"] = round(time.perf_counter() - t, 3)
    out["main_rss_mb"] = round(proc_mb(os.getpid(), ("Rss",)), 1)
    out["main_rss_over_start_mb"] = round(out["main_rss_mb"] - base_rss, 1)
    t = time.perf_counter()
    it = iter(dm.train_dataloader())
    next(it)
    out["first_batch_s"] = round(time.perf_counter() - t, 3)
    seen = 8
    while seen < clips_for_rss:
        try:
            seen += len(next(it)["video_id"])
        except StopIteration:
            it = iter(dm.train_dataloader())
    pid = it._workers[0].pid
    out["worker_rss_mb"] = round(proc_mb(pid, ("Rss",)), 1)
    out["worker_uss_mb"] = round(proc_mb(pid, ("Private_Clean", "Private_Dirty")), 1)
    out["clips_read"] = seen
    del it
    # the adapter alone on each manifest format, after setup so that its peak memory is not
    # counted in the main process's figure above
    _INDEX_CACHE.clear()
    t = time.perf_counter()
    index = load_index(store)
    index.frames()
    out["index_read_s"] = round(time.perf_counter() - t, 3)  # cached by setup: read anew here
    for fmt in ("parquet", "csv"):
        t = time.perf_counter()
        records = load_dataset("emotion_manifest", corpus, AdapterContext(index=index, class_names=CLASSES),
                               manifest=f"labels.{fmt}")
        out[f"manifest_{fmt}_s"] = round(time.perf_counter() - t, 3)
    splits = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
    counts = np.sum([r.extra["class_counts"] for r in records], axis=0)
    out["splits"] = splits
    out["class_frames"] = dict(zip(CLASSES, counts.tolist(), strict=True))
    del records
    if shuffle:
        out["shuffle"] = shuffle_quality(dm.datasets["train"])
    return out


def data_check_seconds(root: Path) -> float:
    cmd = [sys.executable, "-m", "fer_lightning.cli", "data", "check", "--dataset", "emotion_manifest", "--root",
           str(root / "corpus"), "--dataset_args", json.dumps({"manifest": "labels.parquet"}),
           "--face_store", str(root / "store"), "--data.task=pretrain", f"--data.class_names={json.dumps(CLASSES)}",
           "--data.held_out_from_train=0"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    seconds = time.perf_counter() - t
    summary = json.loads(proc.stdout)
    if not summary.get("ok"):
        raise RuntimeError(f"data check failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return round(seconds, 3)


def exponent(sizes: list[int], values: list[float]) -> float:
    """k in value ~ N^k, least squares over log-log points."""
    return round(float(np.polyfit(np.log(sizes), np.log(np.maximum(values, 1e-6)), 1)[0]), 3)


def plot(sizes: list[int], figures: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name in ("setup_s", "data_check_s", "manifest_parquet_s", "manifest_csv_s", "first_batch_s"):
        a.loglog(sizes, figures[name], "o-", label=name)
    a.loglog(sizes, [figures["setup_s"][-1] * s / sizes[-1] for s in sizes], "k:", label="linear")
    a.set_xlabel("videos in the store (100 frames each)")
    a.set_ylabel("seconds")
    a.legend(fontsize=8)
    for name in ("main_rss_mb", "worker_rss_mb", "worker_uss_mb"):
        b.semilogx(sizes, figures[name], "o-", label=name)
    b.set_xlabel("videos in the store")
    b.set_ylabel("MB")
    b.legend(fontsize=8)
    fig.suptitle("fer-lightning: setup and memory against corpus size (benchmarks/corpus_scale.py)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--frames", type=int, default=100, help="frames per video")
    ap.add_argument("--templates", type=int, default=16, help="distinct encoded face videos")
    ap.add_argument("--clips", type=int, default=2000, help="training clips read before the worker's memory")
    ap.add_argument("--workdir", default=None, help="where the stores go (default: a temporary folder)")
    ap.add_argument("--out", default="runs/bench/corpus_scale")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: one size in a fresh process
    ap.add_argument("--shuffle", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.clips, args.shuffle)))
        return

    import shutil
    import tempfile

    from tqdm.auto import tqdm

    work = Path(args.workdir or tempfile.mkdtemp(prefix="corpus_scale-"))
    sizes = sorted(args.sizes)
    rows = []
    try:
        templates = encode_templates(work / "templates", args.templates, args.frames)
        for n in tqdm(sizes, desc="corpus_scale", unit="size"):
            root = work / f"n{n}"
            built = build(root, n, args.frames, templates)
            child = subprocess.run([sys.executable, __file__, "--measure", str(root), "--clips", str(args.clips),
                                    *(["--shuffle"] if n == sizes[-1] else [])],
                                   capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
            if child.returncode != 0:
                raise RuntimeError(child.stderr[-4000:])
            row = built | json.loads(child.stdout.strip().splitlines()[-1]) | {"data_check_s": data_check_seconds(root)}
            rows.append(row)
            shutil.rmtree(root)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    names = ["index_read_s", "manifest_parquet_s", "manifest_csv_s", "setup_s", "data_check_s", "main_rss_mb", "worker_rss_mb",
             "worker_uss_mb", "first_batch_s"]
    figures = {name: [r[name] for r in rows] for name in names}
    k = {name: exponent(sizes, values) for name, values in figures.items()} if len(sizes) > 1 else {}
    # between the two largest sizes only: fixed costs fade there, so this is the slope to extrapolate by
    k_top = {name: exponent(sizes[-2:], values[-2:]) for name, values in figures.items()} if len(sizes) > 1 else {}
    largest = rows[-1]
    result = {
        "benchmark": "corpus_scale",
        "machine": f"{os.cpu_count()} CPU cores",
        "sizes": sizes,
        "per_size": rows,
        "growth_exponent_k": k,
        "max_k": max(k.values()) if k else None,
        "growth_exponent_k_largest_two": k_top,
        "largest": {"videos": largest["videos"], "setup_s": largest["setup_s"],
                    "data_check_s": largest["data_check_s"]},
        "shuffle": largest.get("shuffle"),
        "goals": {"setup_and_check_under_30s": largest["setup_s"] < 30 and largest["data_check_s"] < 30,
                  "k_at_most_1.1": bool(k) and max(k.values()) <= 1.1,
                  "worker_uss_flat": bool(k) and k["worker_uss_mb"] <= 0.1},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(sizes, figures, out / "corpus_scale.png")
    (out / "corpus_scale.json").write_text(json.dumps(result, indent=1) + "\n")
    result["plot"] = str(out / "corpus_scale.png")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
