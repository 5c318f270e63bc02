"""``fer-lightning compare-pretraining``: every route chained and fine-tuned per temporal model
and seed, tested on identities no stage saw; a stage that would read them reads its corpus
without them."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest
from test_datasets import affwild2_root  # noqa: F401  (a fixture: Aff-Wild2 as shipped)

from fer_lightning.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


def test_a_stage_on_the_fine_tuning_corpus_reads_it_without_the_held_out_people(tmp_path):
    """Fine-tuning and a pretraining stage on one corpus (a manifest split by subject): whatever
    the stage's own splits, every held-out person it holds is found (its corpus read whole) and
    given to it to leave out (data.exclude_subjects, with any it already leaves out), after which
    it reads none. A data.mix entry on the corpus is found too; a stage on another folder is
    reported as not checked."""
    from test_datasets import write_manifest_corpus

    from fer_lightning.cli.compare import _data_of, check_disjoint, held_out_identities
    from fer_lightning.corpora.load import corpus_settings, load_corpus

    write_manifest_corpus(tmp_path / "mine", with_split=False)
    finetune = [str(EXPERIMENTS / "finetune_manifest.yaml"), f"--data.root={tmp_path / 'mine'}",
                "--data.face_store=null", "--data.dataset_args={manifest: manifest.csv, scale: [0, 100], seed: 0}"]
    data, held_out, videos = held_out_identities(finetune, tmp_path)
    assert held_out and held_out <= {f"s{i}" for i in range(4)}
    for seed in (0, 3):  # the fine-tuning's own splits or others: the stage's test split is no hiding place
        stage = [*finetune[:-1], f"--data.dataset_args={{manifest: manifest.csv, scale: [0, 100], seed: {seed}}}"]
        assert check_disjoint(stage, data, held_out, tmp_path, videos) == ("", sorted(held_out))
    given = [*stage, '--data.exclude_subjects=["s3"]']
    other, leaking = check_disjoint(given, data, held_out, tmp_path, videos)
    assert leaking == sorted(held_out | {"s3"})  # the stage's own exclusions are kept
    fixed = [*stage, f"--data.exclude_subjects={leaking}"]
    assert check_disjoint(fixed, data, held_out, tmp_path, videos) == ("", [])
    corpus = load_corpus(**corpus_settings(_data_of(fixed, tmp_path)))
    assert corpus.excluded_subjects == leaking and not {r.subject for r in corpus.records} & set(leaking)
    shutil.copytree(tmp_path / "mine", tmp_path / "elsewhere")
    elsewhere = [*stage[:1], f"--data.root={tmp_path / 'elsewhere'}", *stage[2:]]
    assert check_disjoint(elsewhere, data, held_out, tmp_path, videos) == \
        (f"manifest at {tmp_path / 'elsewhere'}", [])
    mixed = [*elsewhere, f"--data.mix=[{{dataset: manifest, root: {tmp_path / 'mine'}, "
                         "dataset_args: {manifest: manifest.csv, scale: [0, 100]}}]"]
    assert check_disjoint(mixed, data, held_out, tmp_path, videos) == \
        (f"manifest at {tmp_path / 'elsewhere'}", sorted(held_out))


def test_aff_wild2_expression_pretraining_leaves_out_the_valence_arousal_test_people(affwild2_root, tmp_path):  # noqa: F811
    """Aff-Wild2's two tracks share their videos: fine-tuning on valence-arousal holds
    training subjects out as its test split, and the expression track (another adapter on the
    same folder, with a held-out carve of its own that would move once people are left out)
    would train on them; it is matched by name and reads the folder without them."""
    from fer_lightning.cli.compare import check_disjoint, held_out_identities

    root = shutil.copytree(affwild2_root, tmp_path / "ABAW")
    ann = root / "6th_ABAW_Annotations" / "EXPR_Recognition_Challenge"
    header = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
    for rel, n in {"Train_Set/1-30-1280x720.txt": 40, "Train_Set/video10_2_left.txt": 30,
                   "Validation_Set/118-30-640x480.txt": 30}.items():
        (ann / rel).parent.mkdir(parents=True, exist_ok=True)
        (ann / rel).write_text(header + "\n" + "\n".join(str(i % 7) for i in range(n)) + "\n")
    finetune = [str(EXPERIMENTS / "finetune_affwild2.yaml"), f"--data.root={root}", "--data.face_store=null",
                "--data.held_out_from_train=0.5"]
    data, held_out, videos = held_out_identities(finetune, tmp_path)
    assert len(held_out) == 1 and held_out <= {"1-30-1280x720", "video10_2_left"}
    stage = [str(EXPERIMENTS / "pretrain_affwild2_expr.yaml"), f"--data.root={root}", "--data.face_store=null",
             "--data.held_out_from_train=0.5"]
    assert check_disjoint(stage, data, held_out, tmp_path, videos) == ("", sorted(held_out))
    stage.append(f"--data.exclude_subjects={sorted(held_out)}")
    assert check_disjoint(stage, data, held_out, tmp_path, videos) == ("", [])


def test_a_row_is_reused_only_from_the_same_weights_not_the_same_path(tmp_path):
    """A stage retrained into its folder writes the same checkpoint path with other weights:
    the rows fine-tuned from the old weights are not reused."""
    from fer_lightning.cli.compare import previous_rows, start_id

    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"weights one")
    first = start_id(str(ckpt))
    (tmp_path / "results.csv").write_text("route,temporal,seed,ccc_valence,ccc_arousal,ccc_mean,start\n"
                                          f"video,lstm,0,0.1,0.2,0.15,{first}\nscratch,lstm,0,0.0,0.0,0.0,\n")
    assert set(previous_rows(tmp_path / "results.csv", {"video": first, "scratch": ""})) == \
        {("video", "lstm", "0"), ("scratch", "lstm", "0")}
    ckpt.write_bytes(b"weights two")
    again = start_id(str(ckpt))
    assert again != first and again.startswith(f"{ckpt}@")
    assert set(previous_rows(tmp_path / "results.csv", {"video": again, "scratch": ""})) == {("scratch", "lstm", "0")}


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


@pytest.mark.slow
def test_a_stage_that_would_read_the_held_out_people_runs_without_them_and_says_so(tmp_path, capsys):
    """End to end: a self-supervised stage on the fine-tuning corpus with splits of its own
    (another seed) would train on held-out people; the comparison runs it with them left out
    (data.exclude_subjects, in the stage's settings and in summary.md) and tests both routes."""
    import json

    from test_datasets import write_manifest_corpus

    from fer_lightning.cli.compare import main

    mine = tmp_path / "mine"
    write_manifest_corpus(mine, with_split=False)
    (tmp_path / "c.yaml").write_text(f"""
finetune: [{EXPERIMENTS / "finetune_manifest.yaml"}]
finetune_args: ["--data.dataset_args={{manifest: manifest.csv, scale: [0, 100], seed: 0}}"]
routes:
  scratch: {{}}
  selfsup:
    stages: [[{EXPERIMENTS / "selfsup_synthetic.yaml"}, --data.dataset=manifest, --data.held_out_from_train=0,
              "--data.dataset_args={{manifest: manifest.csv, scale: [0, 100], seed: 3}}"]]
""")
    tiny = ["--model.net.backbone=test_resnet", "--model.net.hidden_size=8", "--data.image_size=32",
            "--data.num_workers=0", "--trainer.accelerator=cpu", "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", f"--data.root={mine}",
            "--data.face_store=null", "--data.clip_len=8", "--data.batch_size=2", "--model.selfsup.image_size=32",
            "--model.net.pretrained=false"]
    assert main(["--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out"), "--", *tiny]) == 0
    out = capsys.readouterr().out
    held_out = sorted(re.search(r"held-out identities: (.*)", out).group(1).split(", "))
    left_out = re.search(r"route selfsup, stage 1: (\d) held-out subjects left out", out)
    assert left_out and 1 <= int(left_out.group(1)) <= len(held_out)
    stage = json.loads(next((tmp_path / "out" / "stages").glob("selfsup_0/stage.json")).read_text())
    [excluded] = [i for i in stage["items"] if i.startswith("--data.exclude_subjects=")]
    assert set(json.loads(excluded.split("=", 1)[1])) <= set(held_out)
    assert "left out of pretraining stages" in (tmp_path / "out" / "summary.md").read_text()
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [r["route"] for r in rows] == ["scratch", "selfsup"]


def test_a_flat_stage_list_is_refused_by_route_and_key(tmp_path):
    from fer_lightning.cli.compare import read_comparison

    (tmp_path / "c.yaml").write_text("finetune: [a.yaml]\nroutes: {x: {stages: [b.yaml]}}\n")
    with pytest.raises(UserInputError, match="route x: stages is a list of stages"):
        read_comparison(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("finetune: a.yaml\nroutes: {x: {}}\n")
    with pytest.raises(UserInputError, match="finetune must be a list"):
        read_comparison(tmp_path / "c.yaml")
