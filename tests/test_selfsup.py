"""Self-supervised pretraining (``task: selfsup``): temporal positive pairs from a real face
store, per-frame views, lightly's losses over the global batch under DDP, and a checkpoint that
chains into emotion pretraining and fine-tuning."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_lightning.errors import UserInputError
from fer_lightning.models import AffectModule
from fer_lightning.models.selfsup import SelfSupConfig, make_views, pair_faces, view_augment

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


@pytest.fixture(scope="module")
def real_face_store(feat_data, tmp_path_factory):
    """Real people's faces through the real detector into a store: a talking man, a face that
    leaves the frame, a face that enters it."""
    from fer_lightning.store.settings import PreprocessConfig
    from fer_lightning.store.write import preprocess

    inputs = tmp_path_factory.mktemp("ssl_inputs")
    for name in ("single_face.mp4", "face_noface.mov", "noface_face.mov"):
        shutil.copy(feat_data / name, inputs / name)
    store = tmp_path_factory.mktemp("ssl_store")
    report = preprocess([inputs], store, PreprocessConfig(size=64), workers=2, progress=False)
    assert report["ok"] == 3
    return store


def test_the_face_store_adapter_reads_every_face_video_without_labels(real_face_store):
    from fer_lightning.corpora.load import load_corpus
    from fer_lightning.data.clips import ClipDataset

    corpus = load_corpus("face_store", real_face_store, dataset_args={"split_fractions": (2, 1, 0)})
    records = corpus.records
    assert sorted(r.video_id for r in records) == ["face_noface", "noface_face", "single_face"]
    assert [len(corpus.splits[s]) for s in ("train", "val", "test")] == [2, 1, 0]
    assert all(r.labels is None and r.values is None for r in records)
    leaving = next(r for r in records if r.video_id == "face_noface")
    assert leaving.has_face[:20].all() and not leaving.has_face[-20:].any()  # the face leaves
    clips = ClipDataset(records, clip_len=2, frame_step=8, image_size=32, task="selfsup")
    item = clips[0]
    assert item["frames"].shape == (2, 3, 32, 32) and item["targets"].tolist() == [-1, -1]
    assert item["mask"].tolist() == item["has_face"].tolist()


def test_views_are_drawn_per_frame_and_replayed_by_their_seed():
    augment = view_augment(SelfSupConfig())
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 1, 3, 32, 32), dtype=np.uint8))
    pairs = frames.repeat(1, 2, 1, 1, 1)  # the same image twice
    views = make_views(augment, pairs, seed=5)
    assert views.shape == pairs.shape and views.dtype == torch.float32
    assert all(not torch.equal(views[i, 0], views[i, 1]) for i in range(3))  # each frame its own draw
    torch.testing.assert_close(make_views(augment, pairs, seed=5), views)
    assert not torch.equal(make_views(augment, pairs, seed=6), views)
    assert torch.equal(make_views(view_augment(SelfSupConfig(views={})), pairs, seed=5), pairs.float())


def test_a_pair_with_one_face_uses_it_twice_and_a_pair_without_takes_another():
    frames = torch.arange(4 * 2, dtype=torch.float32).view(4, 2, 1, 1, 1).expand(4, 2, 3, 2, 2).clone()
    has_face = torch.tensor([[True, True], [False, True], [True, False], [False, False]])
    out = pair_faces(frames, has_face)[:, :, 0, 0, 0]
    assert out.tolist() == [[0, 1], [3, 3], [4, 4], [0, 1]]  # the faceless pair borrows the first pair with a face


def test_settings_that_cannot_work_are_refused_by_name():
    with pytest.raises(UserInputError, match="set model.net.num_layers: 0"):
        AffectModule(task="selfsup", net=dict(backbone="test_resnet"))
    with pytest.raises(UserInputError, match="mae needs a ViT backbone"):
        AffectModule(task="selfsup", net=dict(backbone="test_resnet", num_layers=0), selfsup={"method": "mae"})
    with pytest.raises(UserInputError, match=r"unknown \['temprature'\]"):
        AffectModule(task="selfsup", net=dict(backbone="test_resnet", num_layers=0), selfsup={"temprature": 0.2})
    with pytest.raises(UserInputError, match="method: unknown 'byol'"):
        SelfSupConfig.of({"method": "byol"})


@pytest.mark.parametrize("method, backbone", [("simclr", "test_resnet"), ("vicreg", "test_resnet"),
                                              ("mae", "test_vit")])
def test_each_method_learns_on_real_faces(real_face_store, method, backbone):
    """Thirty steps on pairs of real faces 8 frames apart (views drawn afresh each step, at
    fine-tuning's strength: a tiny network needs far longer for the recipe's strong views) lower
    each method's loss on the same pairs seen through views it never trained on."""
    import lightning as L

    from fer_lightning.corpora.load import load_corpus
    from fer_lightning.data.clips import ClipDataset

    L.seed_everything(0)
    records = load_corpus("face_store", real_face_store).records
    clips = ClipDataset(records, clip_len=2, frame_step=8, stride=6, image_size=32, task="selfsup")
    batch = torch.utils.data.default_collate([clips[i] for i in range(0, len(clips), max(1, len(clips) // 16))][:16])
    model = AffectModule(task="selfsup", net=dict(backbone=backbone, num_layers=0),
                         selfsup=dict(method=method, image_size=32, projection_dim=32, hidden_dim=64, decoder_dim=32,
                                      decoder_heads=2, views={"flip": 0.5, "affine": 0.5, "photometric": 0.8}))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def unseen_views_loss() -> float:
        torch.manual_seed(99)  # mae's masks
        with torch.no_grad():
            return model.selfsup_loss(batch, seed=12345).item()

    before = unseen_views_loss()
    for step in range(30):
        loss = model.selfsup_loss(batch, seed=step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    assert unseen_views_loss() < 0.97 * before, method


def _simclr_on_rank(rank: int, port: int, out: str, features: torch.Tensor) -> None:
    from fer_lightning.models.selfsup import SimCLR

    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        method = SimCLR(type("Encoder", (), {"num_features": 8})(), SelfSupConfig(hidden_dim=16, projection_dim=4))
        half = features.shape[0] // 2
        mine = features[rank * half:(rank + 1) * half].clone().requires_grad_(True)
        loss = method(lambda x: x, mine)  # the encoder: features as they are
        loss.backward()
        torch.save({"loss": loss.detach(), "grad": mine.grad}, f"{out}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.ddp
def test_simclr_under_two_ranks_contrasts_with_every_ranks_negatives(tmp_path):
    """Two gloo ranks, half the pairs each: their mean loss and their gradients are those of one
    process contrasting each pair with all the others (each rank's own batch statistics in the
    projection head, as DDP without SyncBatchNorm has them)."""
    import socket

    import torch.multiprocessing as mp

    from fer_lightning.models.selfsup import SimCLR

    features = torch.randn(8, 2, 8, generator=torch.Generator().manual_seed(1))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_simclr_on_rank, args=(port, str(tmp_path), features), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]

    torch.manual_seed(0)
    method = SimCLR(type("Encoder", (), {"num_features": 8})(), SelfSupConfig(hidden_dim=16, projection_dim=4))
    from lightly.loss import NTXentLoss

    x = features.clone().requires_grad_(True)
    z = torch.cat([method.head(x[h * 4:(h + 1) * 4].reshape(8, 8)).view(4, 2, -1) for h in (0, 1)])
    reference = NTXentLoss(temperature=0.1)(z[:, 0], z[:, 1])  # every anchor against all 15 others
    reference.backward()
    mean = (ranks[0]["loss"] + ranks[1]["loss"]) / 2
    torch.testing.assert_close(mean, reference.detach(), rtol=1e-5, atol=1e-6)
    # DDP averages the ranks' gradients: each rank's share of the global loss's gradient
    torch.testing.assert_close(torch.cat([ranks[0]["grad"], ranks[1]["grad"]]) / 2, x.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.cli
def test_routes_chain_from_self_supervision_to_emotion_classes_to_valence_arousal(real_face_store, tiny_corpus,
                                                                                  tmp_path, capsys):
    """experiments/selfsup.yaml on a real face store, its encoder into emotion pretraining
    (synthetic classes), that encoder into fine-tuning: each stage starts from the one before."""
    from fer_lightning.cli.main import main

    tiny = ["--model.net.backbone=test_resnet", "--data.image_size=32", "--data.num_workers=0",
            "--trainer.accelerator=cpu", "--trainer.precision=32-true", "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false"]
    stages = [
        ("selfsup", ["--config", str(EXPERIMENTS / "selfsup.yaml"), f"--data.root={real_face_store}",
                     "--data.batch_size=4", "--model.selfsup.image_size=32", "--model.selfsup.hidden_dim=32",
                     "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1",
                     "--data.dataset_args={split_fractions: [2, 1, 0]}"]),
        ("pretrain", ["--config", str(EXPERIMENTS / "pretrain_synthetic.yaml"), f"--data.root={tiny_corpus}",
                      "--data.clip_len=4", "--data.batch_size=2", "--model.net.hidden_size=8",
                      "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=0", "--evaluate_after_fit=false"]),
        ("finetune", ["--config", str(EXPERIMENTS / "finetune_synthetic.yaml"), f"--data.root={tiny_corpus}",
                      "--data.clip_len=4", "--data.batch_size=2", "--model.net.hidden_size=8",
                      "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=0", "--evaluate_after_fit=false"]),
    ]
    previous = None
    for name, args in stages:
        start = [f"--model.init_from={previous}", "--model.freeze_backbone=true",
                 "--model.unfreeze_backbone_at_epoch=null"] if previous else []
        code = main(["fit", *args, *tiny, *start, f"--run_root={tmp_path / name}"])
        assert code == 0, capsys.readouterr().err[-3000:]
        ckpt = sorted((tmp_path / name).rglob("last.ckpt"))[0]
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        encoder = {k: v for k, v in state["state_dict"].items() if k.startswith("net.encoder.")}
        if previous:  # the frozen encoder is the one the previous stage handed on
            before = torch.load(previous, map_location="cpu", weights_only=True)["state_dict"]
            assert encoder and all(torch.equal(before[k], v) for k, v in encoder.items()), name
        else:
            assert state["hyper_parameters"]["task"] == "selfsup" and state["hyper_parameters"]["selfsup"]["method"] \
                == "simclr" and any(k.startswith("selfsup.head.") for k in state["state_dict"])
        previous = ckpt


@pytest.mark.parametrize("method, backbone", [("simclr", "test_resnet"), ("mae", "test_vit")])
def test_bf16_mixed_self_supervision_trains_with_a_float32_loss(tiny_corpus, tmp_path, method, backbone):
    """Under bf16-mixed on the CPU the encoder runs in bf16, the loss computes in float32 and
    stays finite, in training and validation alike."""
    import lightning as L

    from fer_lightning.data.datamodule import AffectDataModule

    class Probe(L.Callback):
        dtypes: set = set()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.dtypes.add(outputs["loss"].dtype)

    L.seed_everything(0)
    model = AffectModule(task="selfsup", net=dict(backbone=backbone, num_layers=0),
                         selfsup=dict(method=method, image_size=32, hidden_dim=32, decoder_dim=32, decoder_heads=2))
    features = {}
    # the encoder's first convolution (mae runs the ViT's parts itself, not the encoder's forward)
    watched = next(m for m in model.net.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    watched.register_forward_hook(lambda m, i, o: features.update(dtype=o.dtype))  # returns None
    dm = AffectDataModule(root=str(tiny_corpus), task="selfsup", clip_len=2, frame_step=4, image_size=32,
                          batch_size=4, num_workers=0, augment=False)
    probe = Probe()
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=3, limit_val_batches=2, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[probe], default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    val = trainer.validate(model, datamodule=dm, verbose=False)[0]
    assert features["dtype"] == torch.bfloat16 and probe.dtypes == {torch.float32}
    assert np.isfinite(val["val/loss"])


def test_views_differ_between_accumulated_micro_batches_and_replay_on_resume(tiny_corpus, tmp_path):
    """Every micro-batch of an accumulated step draws views of its own; a run resumed from its
    checkpoint draws, batch for batch, what an uninterrupted one did."""
    import lightning as L

    from fer_lightning.data.datamodule import AffectDataModule

    def fit(epochs: int, ckpt_path: str | None = None) -> tuple[list[int], L.Trainer]:
        L.seed_everything(0)
        model = AffectModule(task="selfsup", net=dict(backbone="test_resnet", num_layers=0),
                             selfsup=dict(method="simclr", image_size=32, hidden_dim=32))
        seeds: list[int] = []
        loss = model.selfsup_loss
        model.selfsup_loss = lambda batch, seed: seeds.append(seed) or loss(batch, seed)
        dm = AffectDataModule(root=str(tiny_corpus), task="selfsup", clip_len=2, frame_step=4, image_size=32,
                              batch_size=2, num_workers=0, augment=False)
        trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, limit_train_batches=4, limit_val_batches=0,
                            accumulate_grad_batches=2, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return seeds, trainer

    whole, _ = fit(2)
    assert len(whole) == 8 and len(set(whole)) == 8  # 4 micro-batches x 2 epochs, each its own draw
    first, trainer = fit(1)
    trainer.save_checkpoint(tmp_path / "epoch1.ckpt")
    resumed, _ = fit(2, str(tmp_path / "epoch1.ckpt"))
    assert first == whole[:4] and resumed == whole[4:]
