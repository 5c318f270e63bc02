"""W&B sweeps: the shipped sweep files are valid for W&B's own sweep engine (PyPI ``sweeps``),
and two configurations it suggests run through exactly the sweep's ``command:`` line (W&B
offline), each ending with the target metric in its W&B run summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import sweeps
import yaml

from fer_lightning.cli.sweep import agent_command, load_sweep, run_local
from fer_lightning.training.loggers import read_run

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_files_are_valid_bayes_sweeps_over_the_recipe(path):
    sweep = load_sweep(path)
    assert sweep["method"] == "bayes" and sweep["early_terminate"]["type"] == "hyperband"
    swept = {"finetune_synthetic": {"model.lr", "model.freeze_backbone", "data.clip_len", "model.net.hidden_size"},
             # a real corpus: context up to 8 s, the raters' delay, how fast the encoder moves
             "finetune_recola": {"model.lr", "model.backbone_lr_scale", "data.clip_len", "data.dataset_args"},
             "finetune_manifest": {"model.lr", "model.backbone_lr_scale", "data.clip_len", "data.dataset_args"}}
    assert set(sweep["parameters"]) == swept[path.stem]
    suggestion = sweeps.next_run(sweep, [], validate=True)
    cmd = agent_command(sweep, suggestion.config)
    assert cmd[:3] == ["/usr/bin/env", ".venv/bin/fer-lightning", "fit"]
    lr = suggestion.config["model.lr"]["value"]
    assert f"--model.lr={lr}" in cmd and 1e-5 < lr < 1e-2  # ${args}: --name=value, as wandb agent passes them
    # every swept name is a real CLI option: the CLI parses the command without error
    from fer_lightning.cli.main import lightning_main

    args = [a for a in cmd[3:] if a.startswith("--") and "=" in a and not a.startswith("--model.init_from")]
    cli = lightning_main(["--config", str(ROOT / cmd[cmd.index("--config") + 1]), *args, "--data.dataset=synthetic",
                          "--trainer.logger=false", "--model.init_from=null", "--model.net.backbone=test_resnet",
                          "--model.net.pretrained=false"], run=False)
    assert cli.model.hparams.lr == pytest.approx(lr)
    assert cli.datamodule.hparams.clip_len == suggestion.config["data.clip_len"]["value"]
    if "data.dataset_args" in suggestion.config:  # a mapping passes through wandb's ${args} intact
        assert cli.datamodule.hparams.dataset_args == suggestion.config["data.dataset_args"]["value"]


@pytest.mark.cli
def test_two_suggested_runs_execute_the_sweep_command_offline(tiny_corpus, tmp_path):
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])  # the command runs .venv/bin/fer-lightning
    quick = [f"--data.root={tiny_corpus}", "--trainer.accelerator=cpu", "--model.net.backbone=test_resnet",
             "--model.init_from=null", "--data.image_size=32", "--data.batch_size=3", "--data.num_workers=0",
             "--trainer.max_epochs=2", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2",
             "--trainer.enable_progress_bar=false"]
    with pytest.raises(ValueError, match="swept"):
        run_local(ROOT / "experiments/sweeps/finetune_synthetic.yaml", 1, ["--model.lr=0.1"], cwd=tmp_path)
    results = run_local(ROOT / "experiments/sweeps/finetune_synthetic.yaml", 2, quick, cwd=tmp_path)
    assert len(results) == 2 and [r["exit_code"] for r in results] == [0, 0], results
    assert results[0]["model.lr"] != results[1]["model.lr"]  # the engine suggested two configurations
    for r in results:
        run = read_run(r["run_file"])
        assert run["run_id"] == r["run_id"]
        assert -1.0 <= run["summary"]["val/ccc_mean"] <= 1.0 and run["summary"]["val/ccc_mean"] == r["val/ccc_mean"]
        # the suggested values reached the CLI: the run's saved config holds them
        saved = [yaml.safe_load(p.read_text()) for p in (tmp_path / "runs").rglob("config.yaml")]
        assert any(c["model"]["lr"] == pytest.approx(r["model.lr"]) and c["model"]["net"]["hidden_size"] == r["model.net.hidden_size"]
                   and c["model"]["freeze_backbone"] == r["model.freeze_backbone"]
                   and c["data"]["clip_len"] == r["data.clip_len"] for c in saved), (r, saved)
    out = tmp_path / "runs" / "sweeps" / "finetune_synthetic"
    assert (out / "results.csv").read_text().count("\n") == 3 and (out / "results.png").stat().st_size > 1000
    # each run in a folder of its own (agents side by side never share runs/<exp>/logs/version_N)
    for r in results:
        own = tmp_path / "runs" / "finetune_synthetic" / "sweep-finetune_synthetic" / r["run_id"]
        assert len(list(own.rglob("finished.json"))) == 1 and str(own) in r["run_file"]
