"""CCC metric and loss against independent numpy references, torchmetrics, and DDP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics.regression import ConcordanceCorrCoef

from fer_lightning.metrics import ConcordanceCC, SequenceConcordanceCC, ccc_loss


def np_ccc(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Reference: Lin's CCC with population moments, column by column, in float64."""
    p, t = np.asarray(p, np.float64), np.asarray(t, np.float64)
    mp_, mt = p.mean(0), t.mean(0)
    vp, vt = p.var(0), t.var(0)
    cov = ((p - mp_) * (t - mt)).mean(0)
    return 2 * cov / (vp + vt + (mp_ - mt) ** 2)


def random_data(seed=0, b=6, t=40, d=2):
    rng = np.random.default_rng(seed)
    target = rng.uniform(-1, 1, (b, t, d))
    preds = 0.7 * target + 0.3 * rng.normal(size=(b, t, d)) + 0.1
    mask = rng.random((b, t)) > 0.3
    return preds, target, mask


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-5), (torch.bfloat16, 1e-5)])
def test_masked_ccc_matches_numpy(dtype, tol):
    preds, target, mask = random_data()
    p, t = torch.tensor(preds).to(dtype), torch.tensor(target).to(dtype)
    metric = ConcordanceCC(2)
    for i in range(3):  # several updates accumulate like one
        sl = slice(2 * i, 2 * i + 2)
        metric.update(p[sl], t[sl], torch.tensor(mask[sl]))
    got = metric.compute()
    # the reference sees the same (rounded) input values, upcast to float64
    ref = np_ccc(p.double().numpy()[mask], t.double().numpy()[mask])
    assert got.dtype == torch.float64 and got.shape == (2,)
    np.testing.assert_allclose(got.numpy(), ref, rtol=tol)


def test_flat_and_one_dimensional_inputs():
    preds, target, mask = random_data(1)
    flat_p, flat_t = torch.tensor(preds.reshape(-1, 2)), torch.tensor(target.reshape(-1, 2))
    m = ConcordanceCC(2)
    m.update(flat_p, flat_t, torch.tensor(mask.reshape(-1)))
    np.testing.assert_allclose(m.compute().numpy(), np_ccc(preds[mask], target[mask]), rtol=1e-12)
    one = ConcordanceCC(1)
    one.update(flat_p[:, 0], flat_t[:, 0])
    assert one.compute().numel() == 1
    np.testing.assert_allclose(one.compute().numpy(), np_ccc(preds[..., :1].reshape(-1, 1), target[..., :1].reshape(-1, 1)))


def test_agrees_with_torchmetrics_after_n_minus_1_correction():
    """torchmetrics uses n-1 variances and covariance; rescaled, the two definitions coincide."""
    preds, target, _ = random_data(2)
    p, t = torch.tensor(preds.reshape(-1, 2)), torch.tensor(target.reshape(-1, 2))
    ours = ConcordanceCC(2)
    ours.update(p, t)
    tm = ConcordanceCorrCoef(num_outputs=2)
    tm.update(p, t)
    n = p.shape[0]
    pn, tn = p.numpy(), t.numpy()
    k = n / (n - 1)
    cov = ((pn - pn.mean(0)) * (tn - tn.mean(0))).mean(0)
    expected_tm = 2 * cov * k / ((pn.var(0) + tn.var(0)) * k + (pn.mean(0) - tn.mean(0)) ** 2)
    np.testing.assert_allclose(tm.compute().double().numpy(), expected_tm, rtol=1e-5)
    np.testing.assert_allclose(ours.compute().numpy(), np_ccc(pn, tn), rtol=1e-12)
    assert not np.allclose(ours.compute().numpy(), tm.compute().double().numpy(), rtol=1e-6, atol=0)


def test_zero_variance_and_empty_cases_return_documented_value():
    m = ConcordanceCC(1)
    m.update(torch.full((10,), 0.5), torch.full((10,), 0.5))  # both constant and equal: 0/0
    assert m.compute().item() == 0.0
    m = ConcordanceCC(1, zero_division=1.0)
    m.update(torch.full((10,), 0.5), torch.full((10,), 0.5))
    assert m.compute().item() == 1.0
    m = ConcordanceCC(1)
    m.update(torch.full((10,), 0.3), torch.linspace(-1, 1, 10))  # constant preds: defined, 0
    assert m.compute().item() == 0.0
    m = ConcordanceCC(2)  # nothing seen
    m.update(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, dtype=torch.bool))
    assert m.compute().tolist() == [0.0, 0.0]


def test_sequence_ccc_deduplicates_and_averages_videos():
    rng = np.random.default_rng(3)
    vids = {"a": 30, "b": 50}
    truth = {v: rng.uniform(-1, 1, (n, 2)) for v, n in vids.items()}
    pred = {v: 0.5 * x + 0.2 * rng.normal(size=x.shape) for v, x in truth.items()}
    m = SequenceConcordanceCC(2)
    # overlapping windows of 10 frames with stride 5: most frames are seen twice
    for v, n in vids.items():
        for s in range(0, n - 9, 5):
            sl = slice(s, s + 10)
            m.update(torch.tensor(pred[v][sl])[None], torch.tensor(truth[v][sl])[None], [v],
                     torch.arange(s, s + 10)[None], torch.ones(1, 10, dtype=torch.bool))
    expected = np.mean([np_ccc(pred[v], truth[v]) for v in vids], axis=0)
    np.testing.assert_allclose(m.compute().numpy(), expected, rtol=1e-12)


def test_ccc_loss_value_gradient_and_mask():
    preds, target, mask = random_data(4)
    p = torch.tensor(preds, requires_grad=True)
    loss = ccc_loss(p, torch.tensor(target), torch.tensor(mask))
    expected = 1 - np_ccc(preds[mask], target[mask]).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.isfinite(p.grad).all()
    assert (p.grad[torch.tensor(~mask)] == 0).all()  # masked frames get no gradient
    # perfect prediction has zero loss; all-masked batch gives a zero that still backpropagates
    assert ccc_loss(torch.tensor(target), torch.tensor(target)).item() == pytest.approx(0, abs=1e-7)
    q = torch.zeros(2, 3, 2, requires_grad=True)
    z = ccc_loss(q, torch.ones(2, 3, 2), torch.zeros(2, 3, dtype=torch.bool))
    z.backward()
    assert z.item() == 0.0


def _ddp_worker(rank, world, port, preds, target, mask, queue):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        m = ConcordanceCC(2)
        s = SequenceConcordanceCC(2)
        for i in range(rank, preds.shape[0], world):  # rank r takes every world-th sequence
            m.update(torch.tensor(preds[i : i + 1]), torch.tensor(target[i : i + 1]), torch.tensor(mask[i : i + 1]))
            s.update(torch.tensor(preds[i : i + 1]), torch.tensor(target[i : i + 1]), [f"v{i}"],
                     torch.arange(preds.shape[1])[None], torch.tensor(mask[i : i + 1]))
        if rank == 1:  # what a DistributedSampler's padding does: rank 1 sees sequence 0 again
            s.update(torch.tensor(preds[:1]), torch.tensor(target[:1]), ["v0"], torch.arange(preds.shape[1])[None],
                     torch.tensor(mask[:1]))
        queue.put((rank, m.compute().numpy(), s.compute().numpy(), s.compute_pooled().numpy()))
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_two_process_gloo_equals_single_process():
    import socket

    preds, target, mask = random_data(5, b=7)
    single, single_seq = ConcordanceCC(2), SequenceConcordanceCC(2)
    single.update(torch.tensor(preds), torch.tensor(target), torch.tensor(mask))
    single_seq.update(torch.tensor(preds), torch.tensor(target), [f"v{i}" for i in range(7)],
                      torch.arange(preds.shape[1]).expand(7, -1), torch.tensor(mask))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, preds, target, mask, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for _, pooled, per_seq, pooled_unique in results:
        np.testing.assert_allclose(pooled, single.compute().numpy(), rtol=1e-12)
        np.testing.assert_allclose(per_seq, single_seq.compute().numpy(), rtol=1e-12)
        np.testing.assert_allclose(pooled_unique, single.compute().numpy(), rtol=1e-10)


def test_overlapping_windows_are_stitched_by_their_mean():
    """Two windows predict frames 4..7 of one video differently; the metric scores each frame
    once with the mean of its predictions (numpy reference on the stitched trace)."""
    rng = np.random.default_rng(4)
    target = rng.normal(size=(12, 2))
    pred_a, pred_b = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))  # frames 0..7 and 4..11
    m = SequenceConcordanceCC(2)
    m.update(torch.tensor(pred_a)[None], torch.tensor(target[:8])[None], ["v"], torch.arange(8)[None])
    m.update(torch.tensor(pred_b)[None], torch.tensor(target[4:])[None], ["v"], torch.arange(4, 12)[None])
    stitched = np.concatenate([pred_a[:4], (pred_a[4:] + pred_b[:4]) / 2, pred_b[4:]])
    np.testing.assert_allclose(m.compute_pooled().numpy(), np_ccc(stitched, target), rtol=1e-10)
    np.testing.assert_allclose(m.compute().numpy(), np_ccc(stitched, target), rtol=1e-10)


def test_a_window_seen_twice_counts_once_where_windows_overlap():
    """DistributedSampler pads with whole copies of windows: with overlap, a copy of window A must
    not outvote window B on their shared frames (numpy reference: the stitched trace without it);
    stitch_windows (prediction files, evaluate) follows the same rule."""
    from fer_lightning.data.clips import stitch_windows

    rng = np.random.default_rng(5)
    target = rng.normal(size=(12, 2))
    pred_a, pred_b = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))  # frames 0..7 and 4..11
    m = SequenceConcordanceCC(2)
    for pred, lo in ((pred_a, 0), (pred_b, 4), (pred_a, 0)):  # the last: a padded copy of window A
        m.update(torch.tensor(pred)[None], torch.tensor(target[lo : lo + 8])[None], ["v"], torch.arange(lo, lo + 8)[None])
    stitched = np.concatenate([pred_a[:4], (pred_a[4:] + pred_b[:4]) / 2, pred_b[4:]])
    np.testing.assert_allclose(m.compute_pooled().numpy(), np_ccc(stitched, target), rtol=1e-10)
    np.testing.assert_allclose(m.compute().numpy(), np_ccc(stitched, target), rtol=1e-10)
    mask = np.ones(8, bool)
    parts = [(np.arange(lo, lo + 8), mask, pred, target[lo : lo + 8]) for pred, lo in ((pred_a, 0), (pred_b, 4), (pred_a, 0))]
    idx, _, mean, true = stitch_windows(parts)
    np.testing.assert_array_equal(idx, np.arange(12))
    np.testing.assert_allclose(mean, stitched, rtol=1e-12)
    np.testing.assert_array_equal(true, target)
