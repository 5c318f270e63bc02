"""Export: the ONNX graph (dynamic batch and time) and the TorchScript module give what the
trained PyTorch model gives, on random clips of other sizes than the export example."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from fer_lightning.inference.export import export
from fer_lightning.models import AffectModule


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


def reference(ckpt, x: torch.Tensor) -> np.ndarray:
    model = AffectModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    with torch.no_grad():
        return model.net(x).numpy()


def test_onnx_matches_pytorch_on_other_batch_and_time_sizes(checkpoint, tmp_path):
    import onnx
    import onnxruntime as ort

    report = export(checkpoint, "onnx", tmp_path / "m.onnx")
    assert report["max_abs_diff"] < 1e-4
    proto = onnx.load(str(tmp_path / "m.onnx"))
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:2] == ["batch", "time"]  # dynamic axes; channels and crop size fixed
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["outputs"] == ["valence", "arousal"] and meta["image_size"] == 32 and meta["task"] == "finetune"
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    for batch, time in ((1, 3), (4, 25)):
        x = torch.randint(0, 256, (batch, time, 3, 32, 32), dtype=torch.uint8, generator=gen)
        got = session.run(None, {"frames": x.numpy()})[0]
        want = reference(checkpoint, x)
        assert got.shape == (batch, time, 2) and np.abs(got - want).max() < 1e-4


def test_torchscript_matches_pytorch(checkpoint, tmp_path):
    export(checkpoint, "torchscript", tmp_path / "m.pt")
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    x = torch.randint(0, 256, (2, 9, 3, 32, 32), dtype=torch.uint8)
    np.testing.assert_allclose(loaded(x).detach().numpy(), reference(checkpoint, x), atol=1e-5)


@pytest.mark.cli
def test_a_missing_or_foreign_checkpoint_is_refused_clearly(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path, says in ((tmp_path / "absent.ckpt", "checkpoint not found"),
                       (foreign, "not a fer-lightning training checkpoint")):
        proc = subprocess.run([sys.executable, "-m", "fer_lightning.cli", "export", "--ckpt", str(path)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr


@pytest.mark.parametrize("temporal", ["gru", "tcn", "transformer"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_every_temporal_model_exports_to_onnx_with_a_dynamic_time_axis(temporal, bidirectional, tmp_path):
    """model.net.temporal other than the LSTM: the ONNX graph gives PyTorch's outputs on clips of
    another length than the export example's."""
    import onnxruntime as ort

    torch.manual_seed(0)
    model = AffectModule(net=dict(backbone="test_resnet", temporal=temporal, hidden_size=8, num_layers=2,
                                  bidirectional=bidirectional, dropout=0.0)).eval()
    ckpt = tmp_path / f"{temporal}.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "datamodule_hyper_parameters": {"image_size": 32, "clip_len": 8, "face_margin": 0.2}}, ckpt)
    report = export(ckpt, "onnx", tmp_path / "m.onnx")
    assert report["max_abs_diff"] < 1e-4
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randint(0, 256, (2, 19, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model.net(x).numpy()
    got = session.run(None, {"frames": x.numpy()})[0]
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4
