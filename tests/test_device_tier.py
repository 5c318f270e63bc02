"""The device tier: every path that runs on the accelerator, run here with tensors that claim
``cuda`` (tests/fake_cuda.py) so that a CPU tensor mixed into GPU work fails as it would on a GPU.

Not reachable this way (covered elsewhere): cuDNN's LSTM and other GPU-only kernels, NCCL (DDP is
tested on two gloo ranks, tests/test_ddp.py), autocast on ``cuda`` (bf16-mixed runs on the CPU,
tests/test_bf16.py)."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from fake_cuda import DeviceMismatch, fake_cuda, fake_cuda_strategy

from fer_lightning.data.datamodule import AffectDataModule
from fer_lightning.metrics import ConcordanceCC, SequenceConcordanceCC, ccc_loss
from fer_lightning.models import AffectModule
from fer_lightning.training.callbacks import TracePlot

pytestmark = pytest.mark.device


def np_ccc(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    mp, mt = p.mean(0), t.mean(0)
    cov = ((p - mp) * (t - mt)).mean(0)
    return 2 * cov / (p.var(0) + t.var(0) + (mp - mt) ** 2)


def test_the_fake_device_refuses_what_cuda_refuses():
    with fake_cuda() as cuda:
        x = torch.randn(3, 4).to(cuda)
        assert x.device == cuda and x.is_cuda and (x * 2 + 1).sum().device == cuda
        with pytest.raises(DeviceMismatch, match="same device"):
            x + torch.ones(3, 4)
        with pytest.raises(DeviceMismatch):
            torch.zeros(3).index_add_(0, torch.tensor([0, 1, 2]).to(cuda), torch.ones(3).to(cuda))
        with pytest.raises(TypeError, match="numpy"):
            x.numpy()
        # what CUDA allows: 0-dim CPU tensors as scalars, CPU index tensors, copies back
        assert (x + torch.tensor(2.0)).device == cuda and x[torch.tensor([0, 2])].device == cuda
        assert x.cpu().device.type == "cpu" and x.cpu().numpy().shape == (3, 4)
        assert torch.zeros(2, device="cuda").device == cuda and torch.zeros_like(x).device == cuda
        net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5)).to(cuda)
        assert all(p.device == cuda for p in net.parameters()) and net[1].running_mean.device == cuda
        net(x).sum().backward()
        assert net[0].weight.grad.device == cuda
        torch.optim.AdamW(net.parameters()).step()
        with pytest.raises(DeviceMismatch):
            net(torch.randn(3, 4))  # a CPU batch into a GPU model


def test_ccc_metrics_and_loss_on_the_device_equal_numpy():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(12, 2))
    pred_a, pred_b = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))  # frames 0..7 and 4..11 of one video
    stitched = np.concatenate([pred_a[:4], (pred_a[4:] + pred_b[:4]) / 2, pred_b[4:]])
    with fake_cuda() as cuda:
        seq, pooled = SequenceConcordanceCC(2).to(cuda), ConcordanceCC(2).to(cuda)
        assert seq.compute_pooled().device == cuda and seq.compute().device == cuda  # nothing seen yet
        for pred, lo in ((pred_a, 0), (pred_b, 4), (pred_a, 0)):  # the last: a padded copy
            p, t = torch.tensor(pred)[None].to(cuda), torch.tensor(target[lo : lo + 8])[None].to(cuda)
            frames, mask = torch.arange(lo, lo + 8)[None].to(cuda), torch.ones(1, 8, dtype=torch.bool).to(cuda)
            seq.update(p.float(), t.float(), ["v"], frames, mask)
        pooled.update(torch.tensor(stitched).to(cuda), torch.tensor(target).to(cuda))
        results = [seq.compute_pooled(), seq.compute(), pooled.compute(), seq.compute_per_sequence()[1][0]]
        assert all(r.device == cuda for r in results)
        for r in results:
            np.testing.assert_allclose(r.cpu().numpy(), np_ccc(stitched, target), rtol=1e-6)
        p = torch.tensor(stitched, dtype=torch.float32).to(cuda).requires_grad_()
        loss = ccc_loss(p, torch.tensor(target).float().to(cuda), torch.ones(12, dtype=torch.bool).to(cuda))
        loss.backward()
        assert loss.device == cuda and p.grad.device == cuda
        assert loss.item() == pytest.approx(1 - np_ccc(stitched, target).mean(), rel=1e-5)


class DeviceProbe(L.Callback):
    """Records where the model, each batch and each step's output live."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        key = "frames" if "frames" in batch else "features"
        self.seen += [f"train {key} {batch[key].device} {batch[key].dtype}", f"params {next(pl_module.parameters()).device}"]

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.seen.append(f"val preds {outputs['preds'].device}")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.seen.append(f"test preds {outputs['preds'].device}")


def _run_stages(model, dm, tmp_path, **trainer_args) -> tuple[dict, dict, DeviceProbe, TracePlot]:
    probe, traces = DeviceProbe(), TracePlot(on_validation=True)
    trainer = L.Trainer(strategy=fake_cuda_strategy(), max_steps=3, limit_val_batches=3, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[probe, traces], default_root_dir=tmp_path, **trainer_args)
    trainer.fit(model, datamodule=dm)  # with the sanity check and a validation epoch
    val = trainer.validate(model, datamodule=dm, verbose=False)[0]
    test = trainer.test(model, datamodule=dm, verbose=False)[0]
    return val, test, probe, traces


@pytest.mark.parametrize("task,augment_on", [("finetune", "loader"), ("finetune", "device"), ("pretrain", "loader")])
def test_fit_validate_and_test_run_on_the_device(tiny_corpus, tmp_path, task, augment_on):
    with fake_cuda():
        L.seed_everything(0)
        model = AffectModule(task=task, net=dict(backbone="test_resnet", hidden_size=8, num_layers=1))
        dm = AffectDataModule(root=str(tiny_corpus), clip_len=4, image_size=32, batch_size=2, num_workers=0, task=task,
                              augment_on=augment_on)
        val, test, probe, traces = _run_stages(model, dm, tmp_path)
    batch_dtype = "torch.float32" if augment_on == "device" else "torch.uint8"  # augmented on the device
    assert f"train frames cuda:0 {batch_dtype}" in probe.seen and "params cuda:0" in probe.seen
    assert not [s for s in probe.seen if "cpu" in s], probe.seen
    assert "val preds cuda:0" in probe.seen and "test preds cuda:0" in probe.seen
    names = ["ccc_valence", "seq_ccc_arousal", "ccc_mean"] if task == "finetune" else ["acc", "f1_macro"]
    for stage, logged in (("val", val), ("test", test)):
        assert all(np.isfinite(logged[f"{stage}/{n}"]) for n in names), logged
    if task == "finetune":  # trace plots gathered from the device
        assert traces.written["csv"].name == "predictions_test.csv" and traces.written["png"].stat().st_size > 1000


def test_feature_cache_is_built_and_trained_on_on_the_device(tiny_corpus, tmp_path):
    from conftest import train_tiny_checkpoint

    from fer_lightning.corpora.adapters import load_dataset
    from fer_lightning.data.features import build_feature_cache
    from fer_lightning.models.transfer import load_encoder

    pretrained = train_tiny_checkpoint(tiny_corpus, tmp_path / "pre.ckpt", task="pretrain")
    records = load_dataset("synthetic", tiny_corpus)[:2]
    on_cpu = build_feature_cache(records, pretrained, tmp_path / "cpu", 32, 0.2, load_encoder, progress=False, device="cpu")
    with fake_cuda() as cuda:
        on_gpu = build_feature_cache(records, pretrained, tmp_path / "gpu", 32, 0.2, load_encoder, progress=False, device=cuda)
        L.seed_everything(0)
        model = AffectModule(freeze_backbone=True, net=dict(backbone="test_resnet", hidden_size=8, num_layers=1))
        dm = AffectDataModule(root=str(tiny_corpus), clip_len=4, image_size=32, batch_size=2, num_workers=0,
                              feature_cache=str(pretrained), feature_cache_dir=str(tmp_path / "dm"))
        val, test, probe, _ = _run_stages(model, dm, tmp_path)
    for rec in records:
        np.testing.assert_array_equal(np.load(on_gpu / f"{rec.video_id}.npy"), np.load(on_cpu / f"{rec.video_id}.npy"))
    assert "train features cuda:0 torch.float32" in probe.seen and "val preds cuda:0" in probe.seen
    assert np.isfinite(test["test/ccc_mean"])


@pytest.mark.parametrize("which", ["tiny_checkpoint", "tiny_causal_checkpoint"])
def test_predict_s_model_stream_on_the_device_equals_the_cpu(which, request):
    from fer_lightning.inference.settings import PredictConfig
    from fer_lightning.inference.stream import ModelStream, Timings
    from fer_lightning.models.checkpoint import load_checkpoint_model

    ckpt = request.getfixturevalue(which)
    crops = torch.randint(0, 256, (21, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    def stream(device) -> np.ndarray:
        model, _ = load_checkpoint_model(ckpt)
        model.to(device)
        s = ModelStream(model, device, 1, PredictConfig(window=8, batch_size=3), 4, Timings(), encode_batch=5)
        got = {}
        for i in range(len(crops)):
            got.update(s.push(i, crops[i].numpy()))
        got.update(s.finish())
        return np.stack([got[i] for i in range(len(crops))])

    expected = stream(torch.device("cpu"))
    with fake_cuda() as cuda:
        np.testing.assert_allclose(stream(cuda), expected, rtol=1e-5, atol=1e-6)


def test_evaluate_on_the_device_equals_the_cpu(tiny_checkpoint, tmp_path):
    from fer_lightning.inference.evaluate import evaluate

    on_cpu = evaluate(tiny_checkpoint, out=tmp_path / "cpu", device="cpu", num_workers=0, progress=False)
    with fake_cuda():
        on_gpu = evaluate(tiny_checkpoint, out=tmp_path / "gpu", device="cuda", num_workers=0, progress=False)
    for kind in ("raw", "postprocessed"):
        for name in ("valence", "arousal"):
            assert on_gpu[kind]["test"][name]["ccc"] == pytest.approx(on_cpu[kind]["test"][name]["ccc"], abs=1e-6)


def test_the_fake_device_refuses_mixing_two_gpus():
    with fake_cuda():
        a, b = torch.ones(3).to("cuda:0"), torch.ones(3).to("cuda:1")
        assert str(a.device) == "cuda:0" and str(b.device) == "cuda:1" and str((b * 2).device) == "cuda:1"
        with pytest.raises(DeviceMismatch, match="cuda:0, cuda:1"):
            a + b  # rank 1's tensor on rank 0's GPU: what a device="cuda" in per-rank code does
        assert str(torch.zeros(2, device=1).device) == "cuda:1" and str(b.to(a).device) == "cuda:0"


@pytest.mark.parametrize("index", [0, 1])  # 1: the second rank's GPU, so nothing may assume cuda:0
@pytest.mark.parametrize("faceless", ["interpolate", "hold", "model"])
def test_the_metric_fills_faceless_frames_on_the_device_as_on_the_cpu(faceless, index):
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(2, 10, 2)), rng.normal(size=(2, 10, 2))
    face = rng.random((2, 10)) > 0.4
    face[:, 0] = True  # and a faceless run at the end of each window, filled by hold/interpolate
    face[:, -3:] = False

    def scored(device) -> list[np.ndarray]:
        seq = SequenceConcordanceCC(2, faceless=faceless).to(device)
        seq.update(torch.tensor(pred).float().to(device), torch.tensor(target).float().to(device), ["a", "b"],
                   torch.arange(10).repeat(2, 1).to(device), torch.ones(2, 10, dtype=torch.bool).to(device),
                   torch.tensor(face).to(device))
        out = seq.summary()
        assert all(v.device == torch.device(device) for v in out.values())
        return [out[k].cpu().numpy() for k in ("pooled", "per_video", "face_pooled")]

    expected = scored("cpu")
    with fake_cuda():
        for got, want in zip(scored(f"cuda:{index}"), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("index", [0, 1])
def test_the_causal_stream_carries_its_state_on_the_device_over_many_chunks(tiny_causal_checkpoint, index):
    from fer_lightning.inference.settings import PredictConfig
    from fer_lightning.inference.stream import ModelStream, Timings
    from fer_lightning.models.checkpoint import load_checkpoint_model

    crops = torch.randint(0, 256, (40, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))

    def stream(device) -> np.ndarray:
        model, _ = load_checkpoint_model(tiny_causal_checkpoint)
        model.to(device)
        s = ModelStream(model, torch.device(device), 1, PredictConfig(chunk=6), 4, Timings(), encode_batch=4)
        assert s.causal
        got = {}
        for i in range(len(crops)):
            got.update(s.push(i, crops[i].numpy()))
        got.update(s.finish())
        return np.stack([got[i] for i in range(len(crops))])

    expected = stream("cpu")  # 40 frames in chunks of 6: the LSTM state crosses six chunk boundaries
    with fake_cuda():
        np.testing.assert_allclose(stream(f"cuda:{index}"), expected, rtol=1e-5, atol=1e-6)
