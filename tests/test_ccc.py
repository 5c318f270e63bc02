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
    # the loss is 1 - the project's one CCC (the metrics' and evaluate's), not a formula of its own
    from fer_lightning.metrics import concordance_cc

    shared = concordance_cc(torch.tensor(preds), torch.tensor(target), torch.tensor(mask))
    assert loss.item() == pytest.approx(1 - shared.mean().item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(p.grad).all()
    assert (p.grad[torch.tensor(~mask)] == 0).all()  # masked frames get no gradient
    # perfect prediction has zero loss; all-masked batch gives a zero that still backpropagates
    assert ccc_loss(torch.tensor(target), torch.tensor(target)).item() == pytest.approx(0, abs=1e-7)
    q = torch.zeros(2, 3, 2, requires_grad=True)
    z = ccc_loss(q, torch.ones(2, 3, 2), torch.zeros(2, 3, dtype=torch.bool))
    z.backward()
    assert z.item() == 0.0


def _ddp_worker(rank, world, port, preds, target, mask, face, queue):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        m = ConcordanceCC(2)
        s = SequenceConcordanceCC(2)
        f = SequenceConcordanceCC(2)  # with frames without a face: filled after the gather
        for i in range(rank, preds.shape[0], world):  # rank r takes every world-th sequence
            m.update(torch.tensor(preds[i : i + 1]), torch.tensor(target[i : i + 1]), torch.tensor(mask[i : i + 1]))
            s.update(torch.tensor(preds[i : i + 1]), torch.tensor(target[i : i + 1]), [f"v{i}"],
                     torch.arange(preds.shape[1])[None], torch.tensor(mask[i : i + 1]))
            f.update(torch.tensor(preds[i : i + 1]), torch.tensor(target[i : i + 1]), [f"v{i}"],
                     torch.arange(preds.shape[1])[None], torch.tensor(mask[i : i + 1]), torch.tensor(face[i : i + 1]))
        if rank == 1:  # what a DistributedSampler's padding does: rank 1 sees sequence 0 again
            s.update(torch.tensor(preds[:1]), torch.tensor(target[:1]), ["v0"], torch.arange(preds.shape[1])[None],
                     torch.tensor(mask[:1]))
        queue.put((rank, m.compute().numpy(), s.compute().numpy(), s.compute_pooled().numpy(),
                   (f.compute_pooled().numpy(), f.compute_pooled(face_only=True).numpy(), f.face_coverage().item())))
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_two_process_gloo_equals_single_process():
    import socket

    preds, target, mask = random_data(5, b=7)
    face = np.random.default_rng(6).random(mask.shape) > 0.3
    single, single_seq, single_face = ConcordanceCC(2), SequenceConcordanceCC(2), SequenceConcordanceCC(2)
    single.update(torch.tensor(preds), torch.tensor(target), torch.tensor(mask))
    single_seq.update(torch.tensor(preds), torch.tensor(target), [f"v{i}" for i in range(7)],
                      torch.arange(preds.shape[1]).expand(7, -1), torch.tensor(mask))
    single_face.update(torch.tensor(preds), torch.tensor(target), [f"v{i}" for i in range(7)],
                       torch.arange(preds.shape[1]).expand(7, -1), torch.tensor(mask), torch.tensor(face))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, preds, target, mask, face, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for _, pooled, per_seq, pooled_unique, (every, faces_only, coverage) in results:
        np.testing.assert_allclose(every, single_face.compute_pooled().numpy(), rtol=1e-10)
        np.testing.assert_allclose(faces_only, single_face.compute_pooled(face_only=True).numpy(), rtol=1e-10)
        assert coverage == pytest.approx(single_face.face_coverage().item())
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
    from fer_lightning.metrics.stitch import stitch_windows

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


def test_functional_ccc_matches_numpy_whole_and_per_group():
    from fer_lightning.metrics import concordance_cc

    preds, target, mask = random_data(7)
    got = concordance_cc(torch.tensor(preds), torch.tensor(target), torch.tensor(mask))
    np.testing.assert_allclose(got.numpy(), np_ccc(preds[mask], target[mask]), rtol=1e-12)
    groups = np.repeat(np.arange(preds.shape[0]), preds.shape[1]).reshape(mask.shape)  # one group per row
    per = concordance_cc(preds, target, mask, groups=groups)
    assert per.shape == (preds.shape[0], 2)
    for b in range(preds.shape[0]):
        np.testing.assert_allclose(per[b].numpy(), np_ccc(preds[b][mask[b]], target[b][mask[b]]), rtol=1e-12)


def test_one_rule_for_short_and_constant_videos_in_every_ccc():
    """Fewer than 2 frames: undefined (nan), and a per-video mean leaves the video out; predictions
    and targets constant and equal: zero_division. The functional core, the Lightning metric and
    evaluate's scores say the same (hand-computed cases)."""
    from fer_lightning.evaluation.postprocess import VideoTrace, scores
    from fer_lightning.metrics import concordance_cc
    from fer_lightning.metrics.functional import ccc

    assert np.isnan(ccc(np.array([0.3]), np.array([0.1])))
    assert np.isnan(ccc(np.zeros(0), np.zeros(0)))
    assert ccc(np.full(5, 0.2), np.full(5, 0.2)) == 0.0
    assert ccc(np.array([1.0, -1.0]), np.array([1.0, -1.0])) == pytest.approx(1.0)
    assert torch.isnan(concordance_cc(torch.ones(1, 2), torch.ones(1, 2))).all()

    rng = np.random.default_rng(3)
    long_t = rng.normal(size=(20, 1))
    long_p = long_t + 0.5 * rng.normal(size=(20, 1))
    short_t, short_p = np.array([[0.9]]), np.array([[-0.9]])  # one scored frame
    m = SequenceConcordanceCC(1)
    m.update(torch.tensor(long_p)[None], torch.tensor(long_t)[None], ["long"], torch.arange(20)[None])
    m.update(torch.tensor(short_p)[None], torch.tensor(short_t)[None], ["short"], torch.arange(1)[None])
    expected_mean = np_ccc(long_p, long_t)  # the short video has no CCC: the mean is the long one's
    np.testing.assert_allclose(m.compute().numpy(), expected_mean, rtol=1e-12)
    pooled = np_ccc(np.concatenate([long_p, short_p]), np.concatenate([long_t, short_t]))
    np.testing.assert_allclose(m.compute_pooled().numpy(), pooled, rtol=1e-12)
    videos = {"long": VideoTrace(long_p, long_t, np.ones(20, bool), 25.0, "a"),
              "short": VideoTrace(short_p, short_t, np.ones(1, bool), 25.0, "b")}
    s = scores(videos, ["valence"])["valence"]
    assert s["seq_ccc_mean"] == pytest.approx(float(expected_mean[0]), rel=1e-12)
    assert s["ccc"] == pytest.approx(float(pooled[0]), rel=1e-12)
    assert set(s["per_sequence"]) == {"long"}
    empty = SequenceConcordanceCC(1, zero_division=0.0)  # nothing seen: logged as zero_division
    assert empty.compute().item() == 0.0 and empty.compute_pooled().item() == 0.0


def test_stitch_frames_averages_overlaps_and_drops_repeated_windows_across_videos():
    """Hand-made rows of two videos: overlapping windows averaged per (video, frame), a repeated
    window counted once, other values from the first window holding the frame."""
    from fer_lightning.metrics import stitch_frames

    #            video window frame  pred  target
    rows = [(1, 0, 0, 1.0, 10.0), (1, 0, 1, 2.0, 11.0),      # video 1, window at 0
            (1, 1, 1, 4.0, 99.0), (1, 1, 2, 6.0, 12.0),      # video 1, window at 1 (frame 1 overlaps)
            (1, 0, 0, 7.0, 10.0), (1, 0, 1, 7.0, 11.0),      # a padded copy of window 0: ignored
            (0, 5, 5, 3.0, 20.0)]                             # video 0
    v, w, f, p, t = (torch.tensor([r[i] for r in rows]) for i in range(5))
    out_rows, mean, target = stitch_frames(v, w, f, p[:, None], t)
    assert out_rows.tolist() == [[0, 5], [1, 0], [1, 1], [1, 2]]
    assert mean[:, 0].tolist() == [3.0, 1.0, 3.0, 6.0]
    assert target.tolist() == [20.0, 10.0, 11.0, 12.0]


def np_fill(frames: np.ndarray, preds: np.ndarray, face: np.ndarray, method: str) -> np.ndarray:
    """Reference fill of one video's faceless frames: numpy's interp (linear, held at the ends)
    or a loop carrying the last face frame's prediction forward."""
    out = preds.astype(np.float64).copy()
    if method == "model" or not face.any():
        return out
    for d in range(preds.shape[1]):
        if method == "interpolate":
            out[~face, d] = np.interp(frames[~face], frames[face], preds[face, d])
        else:
            first = preds[np.flatnonzero(face)[0], d]
            last = None
            for i in range(len(frames)):
                last = preds[i, d] if face[i] else last
                if not face[i]:
                    out[i, d] = first if last is None else last
    return out


@pytest.mark.parametrize("method", ["interpolate", "hold", "model"])
def test_frames_without_a_face_are_filled_from_their_own_videos_face_frames(method):
    from fer_lightning.metrics import fill_faceless

    rng = np.random.default_rng(3)
    videos, frames, preds, face = [], [], [], []
    for v, n in enumerate((30, 12, 9)):
        f = np.sort(rng.choice(40, n, replace=False))  # gaps in the frame numbers too
        has = rng.random(n) > 0.4
        has[:2] = v == 0  # video 0 starts with faces, video 1 without: held from the first face frame
        if v == 2:
            has[:] = False  # no face at all: the model's output stays
        videos.append(np.full(n, v)), frames.append(f), preds.append(rng.normal(size=(n, 2))), face.append(has)
    got = fill_faceless(torch.tensor(np.concatenate(videos)), torch.tensor(np.concatenate(frames)),
                        torch.tensor(np.concatenate(preds)), torch.tensor(np.concatenate(face)), method).numpy()
    expected = np.concatenate([np_fill(f, p, h, method) for f, p, h in zip(frames, preds, face, strict=True)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="faceless must be one of"):
        fill_faceless(torch.zeros(1), torch.zeros(1), torch.zeros(1, 1), torch.ones(1), "zero")


def test_sequence_ccc_scores_every_labelled_frame_and_the_face_frames_apart():
    """The challenges' rule: every labelled frame counts, a frame without a face predicted from
    the face frames around it; the face-only figure and the face coverage beside it."""
    preds, target, labelled = random_data(8, b=4, t=30)
    rng = np.random.default_rng(9)
    face = rng.random(labelled.shape) > 0.25
    preds[~face] = 5.0  # the model's output on a black frame: far off, and never scored as such
    m = SequenceConcordanceCC(2)
    m.update(torch.tensor(preds), torch.tensor(target), [f"v{i}" for i in range(4)],
             torch.arange(30).expand(4, -1), torch.tensor(labelled), torch.tensor(face))
    filled = np.stack([np_fill(np.arange(30), preds[b], face[b], "interpolate") for b in range(4)])
    np.testing.assert_allclose(m.compute_pooled().numpy(), np_ccc(filled[labelled], target[labelled]), rtol=1e-10)
    np.testing.assert_allclose(m.compute().numpy(),
                               np.mean([np_ccc(filled[b][labelled[b]], target[b][labelled[b]]) for b in range(4)], 0),
                               rtol=1e-10)
    both = labelled & face
    np.testing.assert_allclose(m.compute_pooled(face_only=True).numpy(), np_ccc(preds[both], target[both]), rtol=1e-10)
    assert m.face_coverage().item() == pytest.approx(both.sum() / labelled.sum())
    figures = m.summary()  # what an epoch logs, from one stitch: the same numbers
    np.testing.assert_allclose(figures["pooled"].numpy(), m.compute_pooled().numpy(), rtol=1e-12)
    np.testing.assert_allclose(figures["per_video"].numpy(), m.compute().numpy(), rtol=1e-12)
    np.testing.assert_allclose(figures["face_pooled"].numpy(), m.compute_pooled(face_only=True).numpy(), rtol=1e-12)
    raw = SequenceConcordanceCC(2, faceless="model")
    raw.update(torch.tensor(preds), torch.tensor(target), [f"v{i}" for i in range(4)],
               torch.arange(30).expand(4, -1), torch.tensor(labelled), torch.tensor(face))
    np.testing.assert_allclose(raw.compute_pooled().numpy(), np_ccc(preds[labelled], target[labelled]), rtol=1e-10)


def test_sequence_ccc_scores_annotations_where_a_table_is_set():
    # each annotation at the frame position it describes: between frames (denser than the
    # frames), before the first frame (a label delay) and past the last one (held there), each
    # dimension where it is valid; a video seen in part keeps its frames
    rng = np.random.default_rng(3)
    n, windows = 12, 4
    preds = torch.tensor(rng.normal(size=(1, n, 2)))
    metric = SequenceConcordanceCC(2, faceless="model")
    for start in range(0, n, windows):
        sl = slice(start, start + windows)
        metric.update(preds[:, sl], torch.zeros(1, windows, 2, dtype=torch.float64), ["a"],
                      torch.arange(start, start + windows)[None], torch.ones(1, windows, dtype=torch.bool))
    partial = torch.tensor(rng.normal(size=(1, 4, 2)))
    partial_true = torch.tensor(rng.normal(size=(1, 4, 2)))
    metric.update(partial, partial_true, ["b"], torch.arange(4)[None], torch.ones(1, 4, dtype=torch.bool))
    position = np.array([-3.0, -0.2, 0.0, 0.5, 1.25, 4.0, 7.5, 11.0, 11.4, 14.0])
    values = rng.normal(size=(len(position), 2))
    values[3, 0] = np.nan  # arousal alone
    metric.set_annotations({"a": (n, position, values), "b": (10, np.zeros(1), np.zeros((1, 2)))})
    got = metric.summary()["pooled"].numpy()
    p = preds[0].numpy()
    at = np.stack([np.interp(np.clip(position, 0, n - 1), np.arange(n), p[:, d]) for d in range(2)], axis=1)
    at = np.clip(at, -1, 1)  # the label range, as the written files hold them
    for d in range(2):
        keep = np.isfinite(values[:, d])
        pred = np.concatenate([at[keep, d], partial[0, :, d].numpy()])  # b: 4 of 10 frames seen, scored on them
        true = np.concatenate([values[keep, d], partial_true[0, :, d].numpy()])
        assert got[d] == pytest.approx(float(np_ccc(pred, true)), abs=1e-12)
