"""Temporal models by name (model.net.temporal): each has its causal form, streams chunk by
chunk exactly as it runs over the whole clip, never looks ahead when causal, and trains inside
the network; predict's causal runner streams any of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_lightning.inference.stream import CausalRunner
from fer_lightning.models import AffectModule
from fer_lightning.models.net_config import NetworkConfig
from fer_lightning.models.temporal import create_temporal, list_temporal

NAMES = ["gru", "lstm", "tcn", "transformer"]


def test_every_temporal_model_is_registered_by_name():
    assert list_temporal() == NAMES
    with pytest.raises(ValueError, match="model.net.temporal: unknown 'mamba'; known: gru, lstm, tcn, transformer"):
        create_temporal("mamba", 8, 8, 1, True, 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_a_causal_model_streams_in_chunks_as_over_the_whole_and_never_looks_ahead(name):
    torch.manual_seed(0)
    model = create_temporal(name, 6, 8, 2, bidirectional=False, dropout=0.0).eval()
    assert model.is_causal
    x = torch.randn(2, 23, 6)
    with torch.no_grad():
        whole, _ = model(x)
        assert whole.shape == (2, 23, model.output_size)
        state, parts = None, []
        for start in range(0, 23, 5):  # chunks of 5, the last one shorter
            out, state = model(x[:, start:start + 5], state)
            parts.append(out)
        torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-5, rtol=1e-5)
        future = x.clone()
        future[:, 15:] = torch.randn(2, 8, 6)
        torch.testing.assert_close(model(future)[0][:, :15], whole[:, :15], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_a_bidirectional_model_sees_the_frames_after_each_frame(name):
    torch.manual_seed(0)
    model = create_temporal(name, 6, 8, 2, bidirectional=True, dropout=0.0).eval()
    assert not model.is_causal
    x = torch.randn(1, 12, 6)
    with torch.no_grad():
        before = model(x)[0]
        later = x.clone()
        later[:, 6] += 1.0
        after = model(later)[0]
    assert not torch.allclose(before[:, 5], after[:, 5])  # frame 5 sees frame 6


@pytest.mark.parametrize("name", NAMES)
def test_each_temporal_model_trains_in_the_network_and_predict_streams_its_causal_form(name):
    """One optimizer step of the whole network lowers nothing to NaN and moves the temporal
    model's weights; with ``bidirectional: false`` predict's CausalRunner (chunks of 4 frames)
    gives the network's whole-clip outputs."""
    torch.manual_seed(0)
    module = AffectModule(net=NetworkConfig(backbone="test_resnet", temporal=name, hidden_size=8, num_layers=2,
                                            bidirectional=False, dropout=0.0))
    assert module.hparams.net["temporal"] == name and module.net.is_causal
    frames = torch.randint(0, 256, (2, 9, 3, 32, 32), dtype=torch.uint8)
    targets, mask = torch.rand(2, 9, 2) * 2 - 1, torch.ones(2, 9, dtype=torch.bool)
    before = {k: v.clone() for k, v in module.net.temporal.state_dict().items()}
    opt = torch.optim.AdamW(module.parameters(), lr=1e-2)
    loss = module.loss(module(frames), targets, mask)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in module.net.temporal.state_dict().items())
    net = module.net.eval()
    with torch.no_grad():
        whole = net(frames[:1])[0].numpy()

    def run(clip, state):
        with torch.no_grad():
            feats, state = net.forward_temporal(net.forward_features(torch.from_numpy(clip)), state)
            return net.forward_head(feats).numpy(), state

    runner, out = CausalRunner(run, chunk=4), {}
    for i in range(frames.shape[1]):
        out.update(runner.push(i, frames[0, i].numpy()))
    out.update(runner.finish())
    np.testing.assert_allclose(np.stack([out[i] for i in range(frames.shape[1])]), whole, atol=1e-5)
