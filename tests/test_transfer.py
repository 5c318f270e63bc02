"""Transfer from a pretraining checkpoint: exact tensors, freezing, learning rates, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch

from fer_lightning.checkpoints import latest_checkpoint
from fer_lightning.data.datamodule import AffectDataModule
from fer_lightning.models import AffectModule

TINY = dict(net=dict(backbone="test_resnet", hidden_size=8, num_layers=1, dropout=0.0))


def datamodule(root, task):
    return AffectDataModule(root=str(root), task=task, clip_len=4, image_size=32, batch_size=2, num_workers=0,
                            augment=False)


def trainer(tmp_path, **kw):
    args = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path)
    return L.Trainer(**(args | kw))


@pytest.fixture(scope="module")
def pretrained(tiny_corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pretrain")
    model = AffectModule(task="pretrain", **TINY)
    t = trainer(tmp, max_steps=3)
    t.fit(model, datamodule=datamodule(tiny_corpus, "pretrain"))
    path = tmp / "pretrain.ckpt"
    t.save_checkpoint(path)
    return path, {k: v.clone() for k, v in model.net.state_dict().items()}


def test_fine_tuning_starts_from_the_pretrained_tensors(tiny_corpus, pretrained, tmp_path):
    path, reference = pretrained
    model = AffectModule(task="finetune", init_from=str(path), init_parts=("encoder", "temporal"), **TINY)
    trainer(tmp_path, max_epochs=1, limit_train_batches=0).fit(model, datamodule=datamodule(tiny_corpus, "finetune"))
    got = model.net.state_dict()
    for key, value in reference.items():
        if key.startswith(("encoder.", "temporal.")):
            assert torch.equal(got[key], value), key  # weights and BatchNorm statistics alike
    assert got["head.weight"].shape[0] == 2 and model.loaded_from == str(path)  # the head is new


def test_a_frozen_backbone_stays_put_until_it_is_unfrozen(tiny_corpus, pretrained, tmp_path):
    path, reference = pretrained
    model = AffectModule(task="finetune", init_from=str(path), freeze_backbone=True, unfreeze_backbone_at_epoch=1,
                         lr=1e-2, backbone_lr_scale=0.1, **TINY)
    snapshots = []

    class Snap(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            snapshots.append({k: v.clone() for k, v in pl_module.net.encoder.state_dict().items()})

    t = trainer(tmp_path, max_epochs=2, limit_train_batches=3, callbacks=[Snap()])
    t.fit(model, datamodule=datamodule(tiny_corpus, "finetune"))
    enc0 = {k[len("encoder."):]: v for k, v in reference.items() if k.startswith("encoder.")}
    assert all(torch.equal(snapshots[0][k], v) for k, v in enc0.items())  # epoch 0: frozen, BN too
    assert any(not torch.equal(snapshots[1][k], v) for k, v in enc0.items())  # epoch 1: training
    lrs = sorted({g["initial_lr"] for g in t.optimizers[0].param_groups})
    assert lrs == pytest.approx([1e-3, 1e-2])


def test_a_checkpoint_of_another_architecture_is_refused_with_its_keys(tiny_corpus, pretrained, tmp_path):
    path, _ = pretrained
    model = AffectModule(task="finetune", init_from=str(path), net=dict(backbone="resnet10t", hidden_size=8, num_layers=1))
    with pytest.raises(ValueError) as err:
        trainer(tmp_path, max_epochs=1, limit_train_batches=0).fit(model, datamodule=datamodule(tiny_corpus, "finetune"))
    msg = str(err.value)
    assert "'test_resnet'" in msg and "'resnet10t'" in msg
    assert "different shapes: model." in msg and "(16, 3, 3, 3) vs (24, 3, 3, 3)" in msg


def test_latest_finds_the_newest_finished_pretraining_run_of_the_same_kind(tmp_path, monkeypatch):
    import json

    def run(name: str, t: int, dataset: str | None) -> Path:
        d = tmp_path / "runs" / name / "checkpoints"
        d.mkdir(parents=True)
        for f in ("last.ckpt", "best-epoch=01.ckpt"):
            (d / f).write_bytes(b"x")
            os.utime(d / f, (t, t))
        if dataset is not None:  # None: still running (or killed): no finished.json
            (d / "finished.json").write_text(json.dumps({"dataset": dataset}))
            os.utime(d / "finished.json", (t, t))
        return d / "best-epoch=01.ckpt"

    demo_old = run("pretrain_synthetic/logs/version_0", 1000, "synthetic")
    real = run("pretrain/logs/version_0", 1010, "emotion_manifest")
    demo = run("pretrain_synthetic/logs/version_1", 1020, "synthetic")
    run("pretrain/logs/version_1", 1030, None)  # the newest: a pretraining still going
    runs = tmp_path / "runs"
    assert latest_checkpoint(runs) == demo  # any kind, never the unfinished one
    assert latest_checkpoint(runs, synthetic=True) == demo
    assert latest_checkpoint(runs, synthetic=False) == real  # a real corpus never takes the demo's run
    assert demo_old != demo
    with pytest.raises(FileNotFoundError, match="make pretrain"):
        latest_checkpoint(tmp_path / "nothing")
    only_demo = tmp_path / "only_demo"
    (only_demo / "pretrain_synthetic").mkdir(parents=True)
    os.rename(runs / "pretrain_synthetic", only_demo / "pretrain_synthetic")
    with pytest.raises(FileNotFoundError, match="all on the synthetic corpus"):
        latest_checkpoint(only_demo, synthetic=False)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    os.rename(runs / "pretrain", unfinished / "pretrain")
    (unfinished / "pretrain/logs/version_0/checkpoints/finished.json").unlink()
    with pytest.raises(FileNotFoundError, match="no finished pretraining run"):
        latest_checkpoint(unfinished)


def test_a_fit_marks_its_run_finished_for_latest(tiny_corpus, tmp_path):
    import json

    import lightning as L

    from fer_lightning.data.datamodule import AffectDataModule

    dm = AffectDataModule(root=str(tiny_corpus), task="pretrain", clip_len=4, image_size=32, batch_size=2,
                          num_workers=0, generate_if_missing=False)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, limit_val_batches=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path / "runs" / "pretrain_synthetic")
    trainer.fit(AffectModule(task="pretrain", net=dict(backbone="test_resnet", hidden_size=8, num_layers=1)), datamodule=dm)
    marks = list((tmp_path / "runs").rglob("finished.json"))
    assert len(marks) == 1 and json.loads(marks[0].read_text())["dataset"] == "synthetic"
    assert latest_checkpoint(tmp_path / "runs", synthetic=True).parent == marks[0].parent


def test_ablation_driver_writes_table_and_plot(tiny_corpus, pretrained, tmp_path, monkeypatch):
    from pathlib import Path

    from fer_lightning.cli.ablation import main

    path, _ = pretrained
    config = Path(__file__).resolve().parents[1] / "experiments/ablation_pretrain.yaml"
    monkeypatch.chdir(tmp_path)
    overrides = ["--model.net.backbone=test_resnet", "--model.net.hidden_size=8", "--data.image_size=32",
                 "--data.clip_len=4", "--data.batch_size=2", "--data.num_workers=0", f"--data.root={tiny_corpus}",
                 "--data.train_subjects=2", "--data.windows_per_video=4", "--trainer.max_epochs=1",
                 "--trainer.check_val_every_n_epoch=1",
                 "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2", "--trainer.accelerator=cpu"]
    assert main(["--config", str(config), "--init_from", str(path), "--seeds", "0", "1",
                 "--out", str(tmp_path / "out"), "--", *overrides]) == 0
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert rows[0] == "condition,seed,ccc_valence,ccc_arousal,ccc_mean" and len(rows) == 5
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| pretrained | 2 |" in summary and "| scratch | 2 |" in summary and "±" in summary
    assert (tmp_path / "out" / "ablation.png").stat().st_size > 10_000


def test_feature_cache_gives_the_frozen_backbone_s_features_and_the_same_predictions(tiny_corpus, pretrained,
                                                                                    tmp_path):
    import decord
    import numpy as np

    from fer_lightning.faces.detect import crop_face
    from fer_lightning.models.transfer import load_encoder

    path, _ = pretrained
    cache = tmp_path / "features"
    common = dict(root=str(tiny_corpus), clip_len=4, image_size=32, batch_size=2, num_workers=0, augment=False,
                  eval_overlap=0.0)
    fdm = AffectDataModule(feature_cache=str(path), feature_cache_dir=str(cache), **common)
    fdm.encoder_loader = load_encoder
    fdm.setup()
    folders = [p for p in cache.iterdir() if p.is_dir()]
    assert len(folders) == 1 and len(folders[0].name) == 16  # keyed by the checkpoint's hash
    # independent reference: decode, crop and encode a few frames by hand
    rec = fdm.split_records("val")[0]
    encoder, backbone = load_encoder(path)
    assert backbone == "test_resnet"
    idx = [i for i in (0, 7, 30) if rec.has_face[i]]
    frames = decord.VideoReader(str(rec.path)).get_batch(idx).asnumpy()
    crops = np.stack([crop_face(f, b, 32, 0.2) for f, b in zip(frames, rec.boxes[idx], strict=True)])
    with torch.no_grad():
        expected = encoder.forward_features(torch.from_numpy(crops).permute(0, 3, 1, 2)[None])[0].numpy()
    cached = np.load(folders[0] / f"{rec.video_id}.npy")
    np.testing.assert_allclose(cached[idx].astype(np.float32), expected, rtol=2e-2, atol=2e-2)
    stamp = (folders[0] / f"{rec.video_id}.npy").stat().st_mtime_ns
    again = AffectDataModule(feature_cache=str(path), feature_cache_dir=str(cache), **common)
    again.encoder_loader = load_encoder
    again.setup()
    assert (folders[0] / f"{rec.video_id}.npy").stat().st_mtime_ns == stamp  # reused, not recomputed

    # the LSTM and head see the same thing either way: predictions agree
    model = AffectModule(task="finetune", init_from=str(path), freeze_backbone=True, **TINY).eval()
    from fer_lightning.models.transfer import load_parts

    load_parts(model.net, path, ("encoder",))
    idm = AffectDataModule(**common)
    idm.setup()
    with torch.no_grad():
        a = model.predict_batch({k: v[None] if torch.is_tensor(v) else [v] for k, v in idm.datasets["val"][0].items()})
        b = model.predict_batch({k: v[None] if torch.is_tensor(v) else [v] for k, v in fdm.datasets["val"][0].items()})
    torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)

    # and training on features runs, the backbone untouched
    before = {k: v.clone() for k, v in model.net.encoder.state_dict().items()}
    trainer(tmp_path, max_epochs=1, limit_train_batches=3).fit(model, datamodule=fdm)
    assert all(torch.equal(before[k], v) for k, v in model.net.encoder.state_dict().items())


def test_a_feature_cache_over_an_unreadable_image_stops_naming_it(pretrained, tmp_path):
    """A cache cannot mask a frame it could not encode: building one over an image that does
    not decode is an error naming the image and the way out, not a row of zeros."""
    import pytest

    from fer_lightning.corpora.adapters import load_dataset
    from fer_lightning.corpora.context import AdapterContext
    from fer_lightning.data.features import build_feature_cache
    from fer_lightning.media.video import VideoReadError
    from fer_lightning.models.transfer import load_encoder

    (tmp_path / "faces" / "happy").mkdir(parents=True)
    (tmp_path / "faces" / "happy" / "broken.jpg").write_bytes(b"no image here" * 10)
    records = load_dataset("image_folders", tmp_path / "faces", AdapterContext(class_names=["happy"], image_size=32),
                           val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(VideoReadError, match=r"feature cache for image_folders_train_happy: .*broken.jpg.*without "
                                             r"data.feature_cache"):
        build_feature_cache(records, pretrained[0], tmp_path / "cache", 32, 0.0, load_encoder, device="cpu",
                            progress=False)
