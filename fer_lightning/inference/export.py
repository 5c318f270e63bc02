"""Export a trained model for shipping: ONNX (dynamic batch and time axes) or TorchScript.

    fer-lightning export --ckpt runs/.../best.ckpt --format onnx [--out model.onnx]

The exported graph is the whole network, uint8 face crops in: ``frames`` (B, T, 3, S, S) ->
``outputs`` (B, T, D): valence/arousal per frame, or class logits for a pretraining model.
Normalisation is inside, as in training. The ONNX file carries the task, output names, crop
size and face margin as metadata, so that a consumer needs nothing else. After writing, the
export is checked against PyTorch on random clips of other batch and time sizes (onnxruntime,
an optional extra: ``pip install 'fer-lightning[onnx]'``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from fer_lightning.io import atomic_path
from fer_lightning.models.checkpoint import load_checkpoint_model

FORMATS = ("onnx", "torchscript")


def export(ckpt: str | Path, fmt: str = "onnx", out: str | Path | None = None, opset: int = 17,
           image_size: int | None = None, check: bool = True) -> dict:
    """Write the model of ``ckpt`` as ``fmt``; return a report (path, metadata, parity)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    model, data_hp = load_checkpoint_model(ckpt)
    net = model.net.eval()
    size = int(image_size or data_hp.get("image_size") or 112)
    out = Path(out or Path(ckpt).with_suffix(".onnx" if fmt == "onnx" else ".pt"))
    meta = {
        "task": model.task,
        "outputs": list(model.output_names),
        "image_size": size,
        "face_margin": data_hp.get("face_margin"),
        "frame_step": data_hp.get("frame_step"),
        "backbone": model.hparams.net["backbone"],
        "bidirectional": model.hparams.net["bidirectional"],
        "checkpoint": str(ckpt),
    }
    example = torch.randint(0, 256, (1, 4, 3, size, size), dtype=torch.uint8)
    with torch.no_grad(), atomic_path(out, keep_suffix=True) as tmp:
        if fmt == "onnx":
            _onnx(net, example, tmp, opset, meta)
        else:
            traced = torch.jit.trace(net, example, check_trace=False)
            # saved to memory, then written by Python: torch.jit.save to a full disk aborts the process
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files={"fer_lightning.json": json.dumps(meta)})
            tmp.write_bytes(buffer.getvalue())
    report = {"path": str(out), "format": fmt, **meta}
    if check:
        report["max_abs_diff"] = parity(net, out, fmt, size)
    return report


def _onnx(net, example, path: Path, opset: int, meta: dict) -> None:
    import onnx

    # the TorchScript-based exporter keeps time dynamic through the LSTM; torch.export
    # (dynamo=True) specialised the output's time axis to the example's length
    buffer = io.BytesIO()  # in memory, then written by Python: a full disk is an OSError, not an abort
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the transformer's fused eval kernel has no ONNX form
    try:
        torch.onnx.export(net, (example,), buffer, input_names=["frames"], output_names=["outputs"],
                          dynamic_axes={"frames": {0: "batch", 1: "time"}, "outputs": {0: "batch", 1: "time"}},
                          opset_version=opset, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())


def parity(net, path: str | Path, fmt: str, size: int, shapes=((1, 1), (2, 7), (3, 16)), seed: int = 0) -> float:
    """Largest |exported - PyTorch| over random uint8 clips of several (batch, time) sizes."""
    gen = torch.Generator().manual_seed(seed)
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError("the parity check needs onnxruntime: pip install 'fer-lightning[onnx]' "
                              "(or export with --check false)") from err
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(x):
            return session.run(None, {"frames": x.numpy()})[0]
    else:
        loaded = torch.jit.load(str(path))

        def run(x):
            return loaded(x).numpy()
    worst = 0.0
    with torch.no_grad():
        for b, t in shapes:
            x = torch.randint(0, 256, (b, t, 3, size, size), dtype=torch.uint8, generator=gen)
            ref = net(x).numpy()
            got = run(x)
            if got.shape != ref.shape:
                raise AssertionError(f"exported model gave shape {got.shape} for input {tuple(x.shape)}, expected {ref.shape}")
            worst = max(worst, float(np.abs(got - ref).max()))
    return worst
