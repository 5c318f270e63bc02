"""AffectNet shapes and weight loading; AffectModule losses against hand-computed references."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from fer_lightning.metrics import ccc_loss
from fer_lightning.models import AffectModule, AffectNet


@pytest.mark.parametrize("layers,bidir,out", [(2, True, 2), (1, False, 6), (0, True, 3)])
def test_affect_net_shapes(layers, bidir, out):
    net = AffectNet(out, backbone="test_resnet", hidden_size=8, num_layers=layers, bidirectional=bidir)
    frames = torch.randint(0, 256, (2, 5, 3, 32, 32), dtype=torch.uint8)
    y = net(frames)
    assert y.shape == (2, 5, out) and y.dtype == torch.float32
    # the backbone runs channels_last
    assert next(p for p in net.encoder.model.parameters() if p.ndim == 4).is_contiguous(memory_format=torch.channels_last)


def test_frames_are_independent_without_temporal_model():
    """With num_layers=0 each frame's output depends on that frame alone (eval mode)."""
    net = AffectNet(2, backbone="test_resnet", num_layers=0).eval()
    frames = torch.randint(0, 256, (1, 4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        y = net(frames)
        y_single = torch.cat([net(frames[:, i : i + 1]) for i in range(4)], dim=1)
    torch.testing.assert_close(y, y_single, rtol=1e-4, atol=1e-5)


def test_backbone_loads_local_checkpoint(tmp_path):
    source = timm.create_model("test_resnet", pretrained=False)  # with its classifier
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    net = AffectNet(2, backbone="test_resnet", backbone_checkpoint=str(path))
    loaded = net.encoder.model.state_dict()
    for name, tensor in source.state_dict().items():
        if not name.startswith("fc."):
            torch.testing.assert_close(loaded[name], tensor)
    with pytest.raises(FileNotFoundError, match="nothing_here.pth"):
        AffectNet(2, backbone="test_resnet", backbone_checkpoint=str(tmp_path / "nothing_here.pth"))


def _batch(task, b=2, t=6, d=2, c=6):
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(b, t, generator=g) > 0.3
    targets = torch.rand(b, t, d, generator=g) * 2 - 1 if task == "finetune" else torch.randint(0, c, (b, t), generator=g)
    return {
        "frames": torch.randint(0, 256, (b, t, 3, 32, 32), dtype=torch.uint8, generator=g),
        "targets": targets,
        "mask": mask,
        "video_id": [f"v{i}" for i in range(b)],
        "frame_index": torch.arange(t).expand(b, -1),
    }


def test_finetune_loss_is_masked_ccc():
    module = AffectModule(task="finetune", net=dict(backbone="test_resnet", hidden_size=8, num_layers=1))
    batch = _batch("finetune")
    preds = module(batch["frames"])
    assert module.loss(preds, batch["targets"], batch["mask"]).item() == pytest.approx(
        ccc_loss(preds[batch["mask"]], batch["targets"][batch["mask"]]).item(), rel=1e-5)


def test_pretrain_loss_is_cross_entropy_on_valid_frames_only():
    module = AffectModule(task="pretrain", net=dict(backbone="test_resnet", hidden_size=8, num_layers=1))
    batch = _batch("pretrain")
    logits = module(batch["frames"])
    assert logits.shape == (2, 6, 6)
    expected = F.cross_entropy(logits[batch["mask"]], batch["targets"][batch["mask"]])
    assert module.loss(logits, batch["targets"], batch["mask"]).item() == pytest.approx(expected.item(), rel=1e-6)
    none = torch.zeros_like(batch["mask"])
    assert module.loss(logits, batch["targets"], none).item() == 0.0


def test_module_rejects_unknown_task():
    with pytest.raises(ValueError, match="model.task must be one of"):
        AffectModule(task="regress", net=dict(backbone="test_resnet"))


@pytest.mark.slow
def test_compiled_backbone_trains_like_the_eager_one_and_keeps_checkpoint_keys(tiny_corpus, tmp_path):
    """torch.compile (inductor, a minute on 2 cores) of the backbone: same losses as eager
    within float tolerance, and a checkpoint that loads into an uncompiled model."""
    import lightning as L

    from fer_lightning.data.datamodule import AffectDataModule

    losses = {}
    for compiled in (False, True):
        L.seed_everything(0)
        model = AffectModule(compile_backbone=compiled, net=dict(backbone="test_resnet", hidden_size=8, num_layers=1, dropout=0.0))
        dm = AffectDataModule(root=str(tiny_corpus), clip_len=4, image_size=32, batch_size=2, num_workers=0,
                              augment=False, train_reader="random")
        trainer = L.Trainer(accelerator="cpu", max_steps=3, limit_val_batches=0, logger=False,
                            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                            default_root_dir=tmp_path, log_every_n_steps=1)
        seen = []
        model.on_train_batch_end = lambda out, batch, i, seen=seen: seen.append(float(out["loss"]))
        trainer.fit(model, datamodule=dm)
        losses[compiled] = seen
        if compiled:
            assert model.net.encoder.model._compiled_call_impl is not None
            trainer.save_checkpoint(tmp_path / "compiled.ckpt")
    assert len(losses[False]) == 3 and losses[True] == pytest.approx(losses[False], abs=1e-4)
    ckpt = torch.load(tmp_path / "compiled.ckpt", map_location="cpu", weights_only=True)
    eager = AffectModule(net=dict(backbone="test_resnet", hidden_size=8, num_layers=1))
    eager.load_state_dict(ckpt["state_dict"], strict=True)  # no _orig_mod. prefixes


def test_backbone_loads_a_torchvision_weights_file(tmp_path):
    # torchvision's ResNet layout (what a cluster's shared model folder often holds): the same
    # tensor names as timm's resnet; its 1000-class fc is dropped
    import torchvision

    torch.manual_seed(0)
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-tv.pth"
    torch.save(source.state_dict(), path)
    loaded = AffectNet(2, backbone="resnet18", backbone_checkpoint=str(path), hidden_size=8).encoder.model.state_dict()
    for name, tensor in source.state_dict().items():
        if not name.startswith("fc."):
            torch.testing.assert_close(loaded[name], tensor)


def test_the_network_runs_in_three_stages_and_a_causal_one_streams_in_chunks():
    # timm's shape: forward = forward_head(forward_temporal(forward_features(x))); a causal net
    # run chunk by chunk with its state carried gives the whole clip's outputs
    import torch

    from fer_lightning.models.affect_net import AffectNet

    torch.manual_seed(0)
    frames = torch.randint(0, 256, (2, 9, 3, 32, 32), dtype=torch.uint8)
    for bidirectional, layers in ((True, 1), (False, 2), (True, 0)):
        net = AffectNet(2, backbone="test_resnet", hidden_size=8, num_layers=layers, bidirectional=bidirectional).eval()
        assert net.is_causal == (not bidirectional or layers == 0)
        with torch.no_grad():
            whole = net(frames)
            feats = net.forward_features(frames)
            assert feats.shape == (2, 9, net.num_features)
            staged = net.forward_head(net.forward_temporal(feats)[0])
            torch.testing.assert_close(staged, whole)
            if net.is_causal:
                state, parts = None, []
                for lo in range(0, 9, 4):
                    out, state = net.forward_temporal(feats[:, lo:lo + 4], state)
                    parts.append(net.forward_head(out))
                torch.testing.assert_close(torch.cat(parts, 1), whole, rtol=1e-5, atol=1e-6)


def test_the_module_receives_its_network_as_one_config_and_reads_checkpoints_of_either_layout(tmp_path):
    """``model.net`` is one NetworkConfig (validated once, stored as plain data); a checkpoint
    written before it, with the network's keys flat among the hyper-parameters, still loads for
    predict/evaluate/export and as ``init_from``, to the same outputs."""
    from fer_lightning.models.affect_net import AffectNet
    from fer_lightning.models.checkpoint import load_checkpoint_model
    from fer_lightning.models.net_config import NetworkConfig
    from fer_lightning.models.transfer import load_encoder

    net = NetworkConfig(backbone="test_resnet", hidden_size=8, num_layers=1, bidirectional=False)
    module = AffectModule(net=net).eval()
    assert module.hparams.net == {"backbone": "test_resnet", "pretrained": False, "backbone_checkpoint": None,
                                  "temporal": "lstm", "hidden_size": 8, "num_layers": 1, "bidirectional": False, "dropout": 0.1}
    assert isinstance(module.net, AffectNet) and module.net.is_causal
    with pytest.raises(ValueError, match="model.net.dropout must be in"):
        AffectModule(net=dict(backbone="test_resnet", dropout=1.5))
    with pytest.raises(ValueError, match="model.net: unknown hidden"):
        AffectModule(net=dict(backbone="test_resnet", hidden=8))
    frames = torch.randint(0, 256, (1, 5, 3, 32, 32), dtype=torch.uint8)
    flat = {k: v for k, v in module.hparams.items() if k != "net"} | module.hparams.net
    for name, hparams in (("nested", dict(module.hparams)), ("flat", flat)):
        path = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams}, path)
        loaded, _ = load_checkpoint_model(path)
        assert NetworkConfig.of(loaded.hparams.net) == net
        torch.testing.assert_close(loaded(frames), module(frames))
        encoder, backbone = load_encoder(path)
        assert backbone == "test_resnet"
        torch.testing.assert_close(encoder.forward_features(frames), module.net.forward_features(frames))
