"""Experiment files compose (a recipe plus a data-only file per corpus) and a run's folder is
derived once, from the data, when no file names it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fer_lightning.cli.compose import expand_args, expand_config
from fer_lightning.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
CORPORA = ["recola", "affwild2", "sewa", "afewva", "manifest"]


def resolved(capsys, *args: str) -> dict:
    """What ``fit ... --print_config`` resolves, as a mapping."""
    from fer_lightning.cli.main import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["fit", *args, "--print_config"])
    assert done.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.cli
@pytest.mark.parametrize("corpus", CORPORA)
def test_each_corpus_experiment_is_the_recipe_plus_its_data_file(corpus, capsys):
    """``finetune_<corpus>.yaml`` resolves to exactly ``--config finetune.yaml --config
    data/<file>.yaml`` (plus, for Aff-Wild2, its one schedule change), and the data file holds
    nothing but ``data:``."""
    composed = yaml.safe_load((EXPERIMENTS / f"finetune_{corpus}.yaml").read_text())
    recipe, data_file = (EXPERIMENTS / p for p in composed["compose"])
    assert recipe.name == "finetune.yaml" and list(yaml.safe_load(data_file.read_text())) == ["data"]
    whole = resolved(capsys, "--config", str(EXPERIMENTS / f"finetune_{corpus}.yaml"))
    layered = resolved(capsys, "--config", str(recipe), "--config", str(data_file))
    if corpus == "affwild2":
        assert whole["model"].pop("unfreeze_backbone_at_epoch") == 1
        assert layered["model"].pop("unfreeze_backbone_at_epoch") == 2
    assert whole == layered
    data = yaml.safe_load(data_file.read_text())["data"]
    assert {k: whole["data"][k] for k in data} == data  # the data file's values, as written
    assert whole["model"]["init_from"] == "latest" and whole["trainer"]["precision"] == "bf16-mixed"  # the recipe's


def test_a_composed_file_expands_in_order_relative_to_itself_and_refuses_loops(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text("model: {lr: 0.1}\n")
    (tmp_path / "sub" / "b.yaml").write_text("compose: [../a.yaml]\ndata: {clip_len: 4}\n")
    (tmp_path / "top.yaml").write_text("compose: [sub/b.yaml]\nmodel: {lr: 0.2}\n")
    values = expand_config(tmp_path / "top.yaml")
    assert values[0] == str(tmp_path / "sub" / ".." / "a.yaml")
    assert [yaml.safe_load(v) for v in values[1:]] == [{"data": {"clip_len": 4}}, {"model": {"lr": 0.2}}]
    assert expand_args(["fit", "--config=" + str(tmp_path / "a.yaml"), "--model.lr=1"]) == \
        ["fit", "--config", str(tmp_path / "a.yaml"), "--model.lr=1"]  # a plain file stays as it is
    (tmp_path / "a.yaml").write_text("compose: [top.yaml]\n")
    with pytest.raises(UserInputError, match="in a loop"):
        expand_config(tmp_path / "top.yaml")
    (tmp_path / "c.yaml").write_text("compose: [nowhere.yaml]\n")
    with pytest.raises(UserInputError, match="no such file nowhere.yaml"):
        expand_config(tmp_path / "c.yaml")


@pytest.mark.cli
def test_the_run_folder_is_derived_once_from_the_data_unless_given(tiny_corpus, tmp_path, monkeypatch):
    """No experiment file writes its run path: fit puts checkpoints, CSV logs and W&B files in
    ``runs/<task>_<dataset>`` (the W&B run named after it); ``trainer.default_root_dir`` or
    ``--run_root`` moves all of them together."""
    from fer_lightning.cli.main import lightning_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    common = ["--config", str(EXPERIMENTS / "finetune_synthetic.yaml"), f"--data.root={tiny_corpus}",
              "--model.net.backbone=test_resnet", "--model.net.hidden_size=8", "--data.num_workers=0"]

    def placed(*extra: str) -> tuple[str, dict]:
        cli = lightning_main([*common, *extra], run=False)
        dirs = {type(lg).__name__: (lg.save_dir, getattr(lg, "_name", None)) for lg in cli.trainer.loggers}
        return cli.trainer.default_root_dir, dirs

    root, dirs = placed()
    assert root == "runs/finetune_synthetic"
    assert dirs["RunCSVLogger"][0] == root and dirs["RunWandbLogger"] == (root, "finetune_synthetic")
    root, dirs = placed(f"--run_root={tmp_path / 'elsewhere'}")
    assert root == str(tmp_path / "elsewhere") and {d for d, _ in dirs.values()} == {root}
    root, _ = placed("--data.task=pretrain")
    assert root == "runs/pretrain_synthetic"
    assert json.loads(json.dumps(yaml.safe_load((EXPERIMENTS / "pretrain.yaml").read_text())["trainer"]))[
        "default_root_dir"] == "runs/pretrain"  # a file may still name its folder, once
