"""``fer-lightning compare-pretraining``: every route chained and fine-tuned per temporal model
and seed, tested on identities no stage saw; a stage that would read them is refused."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from fer_lightning.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


def test_a_stage_that_reads_the_held_out_identities_is_refused_by_name(tmp_path):
    """Fine-tuning and a pretraining stage on one corpus (a manifest split by subject): with
    the fine-tuning's seed the stage never trains on its test people; with another seed it
    would, and the comparison stops before anything trains, naming them."""
    from test_datasets import write_manifest_corpus

    from fer_lightning.cli.compare import check_disjoint, held_out_identities

    write_manifest_corpus(tmp_path / "mine", with_split=False)
    finetune = [str(EXPERIMENTS / "finetune_manifest.yaml"), f"--data.root={tmp_path / 'mine'}",
                "--data.face_store=null", "--data.dataset_args={manifest: manifest.csv, scale: [0, 100], seed: 0}"]
    data, held_out = held_out_identities(finetune, tmp_path)
    assert held_out and held_out <= {f"s{i}" for i in range(4)}
    check_disjoint("same splits", finetune, data, held_out, tmp_path)
    leaky = [*finetune[:-1], "--data.dataset_args={manifest: manifest.csv, scale: [0, 100], seed: 3}"]
    with pytest.raises(UserInputError, match="reads 1 of the identities fine-tuning holds out"):
        check_disjoint("leaky", leaky, data, held_out, tmp_path)


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("compare_*.yaml")), ids=lambda p: p.stem)
def test_each_shipped_comparison_file_names_experiments_that_exist(path):
    from fer_lightning.cli.compare import read_comparison

    spec = read_comparison(path)
    files = [*spec["finetune"], *(i for r in spec["routes"].values() for s in r["stages"] for i in s)]
    assert all(Path(f).is_file() for f in files if not f.startswith("--")), files
    assert {"scratch", "imagenet", "video", "images", "selfsup", "selfsup+video"} <= set(spec["routes"])


def test_a_comparison_file_is_checked_before_anything_runs(tmp_path):
    from fer_lightning.cli.compare import read_comparison

    (tmp_path / "c.yaml").write_text("finetune: [a.yaml]\nroutes: {x: {stages: [[b.yaml]], nedes: []}}\n")
    with pytest.raises(UserInputError, match=r"route x: a mapping of .*'nedes'"):
        read_comparison(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("finetune: [a.yaml]\nseed: [1]\nroutes: {x: {}}\n")
    with pytest.raises(UserInputError, match=r"unknown keys \['seed'\]"):
        read_comparison(tmp_path / "c.yaml")


@pytest.mark.slow
def test_every_route_fine_tunes_per_temporal_model_and_lands_in_one_table(tiny_corpus, tmp_path, capsys,
                                                                           monkeypatch):
    """The shipped comparison file at test size: scratch, video, images (exported from the
    corpus's training and validation subjects), self-supervised and chained routes, two temporal
    models, one seed; the weights-file route is skipped without a file, and says so, and runs
    with one when the comparison is run again, the rest reused."""
    from fer_lightning.cli.compare import main

    corpus = shutil.copytree(tiny_corpus, tmp_path / "synthetic")
    tiny = ["--model.net.backbone=test_resnet", "--model.net.hidden_size=8", "--data.image_size=32",
            "--data.num_workers=0", "--trainer.accelerator=cpu", "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--trainer.check_val_every_n_epoch=1",
            f"--data.root={corpus}", "--model.selfsup.image_size=32"]
    code = main(["--config", str(EXPERIMENTS / "compare_pretraining.yaml"), "--seeds", "0", "--temporal", "lstm",
                 "gru", "--out", str(tmp_path / "out"), "--", *tiny])
    out = capsys.readouterr().out
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    routes = ["scratch", "video", "images", "selfsup", "selfsup+video"]
    assert [(r["route"], r["temporal"]) for r in rows] == [(r, t) for r in routes for t in ("lstm", "gru")]
    assert all(-1 <= float(r["ccc_mean"]) <= 1 for r in rows)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| imagenet | - | 0 | skipped: needs" in summary and "identities never seen in fine-tuning" in summary
    assert (tmp_path / "out" / "compare_pretraining.png").stat().st_size > 10_000
    import re

    from fer_lightning.corpora.load import load_corpus

    test_videos = {r.video_id for r in load_corpus("synthetic", corpus).splits["test"]}
    assert re.search(rf"tested on {len(test_videos)} held-out identities", out)
    # the image route's corpus holds the training and validation subjects' faces only
    exported = list((tmp_path / "out" / "images").rglob("*.png"))
    assert exported and not any(p.name.startswith(tuple(test_videos)) for p in exported)
    # the self-supervised stage ran once and fed both routes that start with it
    assert len(list((tmp_path / "out" / "stages").glob("selfsup*_0"))) == 1
    # run again into the same folder, now with a local weights file for the backbone (timm's
    # layout; random here, ImageNet's in use): only that route trains, the rest is reused
    import timm
    import torch

    weights = tmp_path / "backbone.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), weights)
    monkeypatch.setenv("IMAGENET_WEIGHTS", str(weights))
    assert main(["--config", str(EXPERIMENTS / "compare_pretraining.yaml"), "--seeds", "0", "--temporal", "lstm",
                 "gru", "--out", str(tmp_path / "out"), "--", *tiny]) == 0
    again = capsys.readouterr().out
    assert again.count("done before") == 4
    rows_again = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [r for r in rows_again if r["route"] != "imagenet"] == rows
    assert [(r["route"], r["temporal"]) for r in rows_again if r["route"] == "imagenet"] == \
        [("imagenet", "lstm"), ("imagenet", "gru")]
    assert "skipped" not in (tmp_path / "out" / "summary.md").read_text()


def test_a_flat_stage_list_is_refused_by_route_and_key(tmp_path):
    from fer_lightning.cli.compare import read_comparison

    (tmp_path / "c.yaml").write_text("finetune: [a.yaml]\nroutes: {x: {stages: [b.yaml]}}\n")
    with pytest.raises(UserInputError, match="route x: stages is a list of stages"):
        read_comparison(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("finetune: a.yaml\nroutes: {x: {}}\n")
    with pytest.raises(UserInputError, match="finetune must be a list"):
        read_comparison(tmp_path / "c.yaml")
