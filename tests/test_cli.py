"""The fer-lightning command: experiment configs smoke-run; config errors are clear."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cli  # every test here starts the fer-lightning command

ROOT = Path(__file__).resolve().parents[1]
# every fit experiment; compare_*.yaml are comparison files (fer-lightning compare-pretraining), checked in
# tests/test_compare.py
EXPERIMENTS = sorted(p for p in (ROOT / "experiments").glob("*.yaml") if not p.stem.startswith("compare_"))


def run_cli(*args, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "fer_lightning.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("config", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_smoke_runs_with_debug_preset(config, tiny_corpus, tmp_path):
    """Every experiment file, layered with the cpu and debug presets, on tiny synthetic data
    (real-corpus configs get the synthetic dataset and no pretraining checkpoint)."""
    proc = run_cli("fit", "--config", str(config), "--config", str(ROOT / "experiments/presets/cpu.yaml"),
                   "--config", str(ROOT / "experiments/presets/debug.yaml"), f"--data.root={tiny_corpus}",
                   "--data.dataset=synthetic", "--data.face_store=null", "--data.dataset_args=null",
                   "--model.init_from=null", "--model.net.pretrained=false", f"--trainer.default_root_dir={tmp_path}",
                   # self-supervision trains the encoder alone: the debug preset's LSTM layer does not apply
                   *(["--model.net.num_layers=0"] if config.stem.startswith("selfsup") else []),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fast_dev_run" in proc.stderr + proc.stdout


def test_config_error_is_reported_by_the_cli(tmp_path):
    proc = run_cli("fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"),
                   "--model.backbon=resnet18", cwd=tmp_path)
    assert proc.returncode != 0
    assert "backbon" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_dataset_is_named(tmp_path):
    proc = run_cli("fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"),
                   "--config", str(ROOT / "experiments/presets/debug.yaml"), "--data.dataset=recola9", cwd=tmp_path)
    assert proc.returncode != 0 and "recola9" in proc.stderr and "synthetic" in proc.stderr


def test_help_lists_synth(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0 and "synth" in proc.stdout


def test_a_missing_face_store_says_which_command_to_run(tiny_corpus, tmp_path):
    proc = run_cli("fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"),
                   "--config", str(ROOT / "experiments/presets/debug.yaml"), f"--data.root={tiny_corpus}",
                   f"--data.face_store={tmp_path / 'nostore'}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "fer-lightning preprocess --input" in proc.stderr and "nostore" in proc.stderr


def test_causal_preset_trains_a_unidirectional_model(tiny_corpus, tmp_path):
    import torch

    proc = run_cli("fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"),
                   "--config", str(ROOT / "experiments/presets/cpu.yaml"),
                   "--config", str(ROOT / "experiments/presets/causal.yaml"),
                   f"--data.root={tiny_corpus}", "--trainer.max_steps=1", "--trainer.limit_val_batches=1",
                   "--evaluate_after_fit=false", "--data.num_workers=0", f"--run_root={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(next(tmp_path.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["net"]["bidirectional"] is False
    lstm = ckpt["state_dict"]
    assert not any("reverse" in k for k in lstm) and any("weight_ih_l0" in k for k in lstm)


PRESETS = sorted((ROOT / "experiments/presets").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_parses_on_an_experiment(preset, tmp_path):
    """Presets that cannot run here (a GPU, several devices) must at least name real options."""
    proc = run_cli("fit", "--config", str(ROOT / "experiments/finetune_synthetic.yaml"), "--config", str(preset),
                   "--print_config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "augment_on:" in proc.stdout


def test_root_help_lists_every_subcommand_and_no_tool_help_imports_torch(tmp_path):
    """`fer-lightning --help` names every subcommand main() dispatches (and no Lightning predict);
    every tool's --help shows its defaults without importing torch or Lightning (a fresh
    interpreter reports what each --help left in sys.modules)."""
    script = """
import contextlib, io, json, sys
from fer_lightning.cli.main import LIGHTNING, TOOLS, main
out = {}
for argv in ([], ["synth"], ["preprocess"], ["data", "check"], ["predict"], ["evaluate"], ["submit"], ["export"],
             ["sweep"], ["ablation"], ["compare-pretraining"]):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            code = main([*argv, "--help"])
        except SystemExit as exit_:
            code = exit_.code
    out[" ".join(argv) or "root"] = {"code": code, "text": text.getvalue(),
                                     "heavy": sorted({"torch", "lightning"} & set(sys.modules))}
out["names"] = [*LIGHTNING, *TOOLS]
print(json.dumps(out))
"""
    import json

    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    names = got.pop("names")
    assert set(names) == {"fit", "validate", "test", "synth", "preprocess", "data", "predict", "evaluate", "submit",
                          "export", "sweep", "ablation", "compare-pretraining"}
    root = got.pop("root")
    assert root["code"] == 0 and all(f"  {n} " in root["text"] for n in names)
    for tool, res in got.items():
        assert res["code"] == 0 and res["heavy"] == [], (tool, res["heavy"])
        assert "--config" in res["text"] and "default:" in res["text"], tool
    assert "default: 5" in got["preprocess"]["text"]  # --detect_every, from PreprocessConfig
    assert "search.max_delay_s" in got["evaluate"]["text"] and "population" in got["evaluate"]["text"]
    assert "image_location,valence,arousal" in got["submit"]["text"]


def test_lightnings_predict_is_not_offered_and_an_unknown_subcommand_is_named(tmp_path):
    proc = run_cli("fit", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "--evaluate_after_fit" in proc.stdout
    proc = run_cli("frobnicate", cwd=tmp_path)
    assert proc.returncode == 2 and "frobnicate" in proc.stderr and "evaluate" in proc.stderr


def test_evaluate_layers_experiment_files_and_overrides_exactly_as_fit():
    import json

    """The data settings evaluate uses: the checkpoint's, then each --config in order, then
    --data. overrides (values read by hand from the files), with the same parser as fit."""
    from fer_lightning.cli.main import experiment_data, lightning_main

    base = {"root": "/ckpt/corpus", "dataset": "synthetic", "clip_len": 8, "batch_size": 4, "num_workers": 7}
    configs = [str(ROOT / "experiments/finetune_synthetic.yaml"), str(ROOT / "experiments/presets/cpu.yaml")]
    data = experiment_data(base, configs, ["--data.batch_size=3"])
    assert data["clip_len"] == 16  # finetune_synthetic.yaml over the checkpoint's 8
    assert data["num_workers"] == 2  # presets/cpu.yaml
    assert data["batch_size"] == 3  # the override
    assert data["root"] == "data/synthetic"  # the experiment file names its corpus
    assert experiment_data(base, [], [])["root"] == "/ckpt/corpus"  # nothing layered: the checkpoint's own
    fit = lightning_main(["--config", configs[0], "--config", configs[1], "--data.batch_size=3",
                          "--trainer.logger=false", "--data.generate_if_missing=false"], run=False)

    def plain(d: dict) -> dict:  # JSON types (tuples as lists); Lightning's own keys (_instantiator) left out
        return json.loads(json.dumps({k: v for k, v in d.items() if not k.startswith("_") and k != "generate_if_missing"}))

    assert plain(fit.datamodule.hparams) == plain(data)
