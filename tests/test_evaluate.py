"""evaluate: the same pooled CCC as Lightning's test loop, a known rater delay found by delay
compensation, reports written; bad checkpoints refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fer_lightning.cli.main import main

LAGS = (0.0, 1.2)  # synthetic raters' lags: none, and 30 frames at 25 fps


def run_evaluate(ckpt, out, *extra) -> dict:
    assert main(["evaluate", "--ckpt", str(ckpt), "--out", str(out), "--num_workers", "0", *extra]) == 0
    return json.loads((out / "evaluation.json").read_text())


def test_evaluate_writes_its_report_for_any_checkpoint(tiny_checkpoint, tmp_path, capsys):
    result = run_evaluate(tiny_checkpoint, tmp_path / "eval", "--search.max_delay_s", "0.4")
    printed = capsys.readouterr().out
    assert "| valence | raw |" in printed and "| arousal | postprocessed |" in printed
    assert result["split"] == "test" and result["dev_split"] == "val" and result["targets"] == ["valence", "arousal"]
    for kind in ("raw", "postprocessed"):
        for name in ("valence", "arousal"):
            s = result[kind]["test"][name]
            assert {"ccc", "pearson", "rmse", "seq_ccc_mean", "per_sequence", "per_subject", "frames"} <= set(s)
            assert s["frames"] > 0 and len(s["per_subject"]) >= 1
    assert set(result["postprocess"]["valence"]) >= {"delay_s", "smoothing", "window_s", "bias", "scale"}
    for f in ("json", "markdown", "search_plot", "subjects_plot", "traces_plot"):
        assert (tmp_path / "eval").joinpath(result["files"][f].split("/")[-1]).stat().st_size > 100
    # the final predictions in ABAW's format: one file per scored video, a row per frame
    abaw = sorted((tmp_path / "eval" / "predictions_abaw").glob("*.txt"))
    assert len(abaw) == result["videos"]["test"]
    from fer_lightning.corpora.adapters import load_dataset

    frames = {r.video_id: r.num_frames for r in load_dataset("synthetic", result["data"]["root"])}
    for path in abaw:
        lines = path.read_text().splitlines()
        assert lines[0] == "valence,arousal" and len(lines) == frames[path.stem] + 1


def test_evaluate_refuses_a_pretraining_checkpoint_and_a_missing_one(tiny_corpus, tmp_path, capsys):
    from conftest import train_tiny_checkpoint

    ckpt = train_tiny_checkpoint(tiny_corpus, tmp_path / "pre.ckpt", task="pretrain")
    with pytest.raises(SystemExit) as err:
        main(["evaluate", "--ckpt", str(ckpt)])
    assert err.value.code == 2 and "pretrain checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--ckpt", str(tmp_path / "nothing.ckpt")])
    assert "checkpoint not found" in capsys.readouterr().err


@pytest.mark.slow
def test_raw_scores_equal_lightnings_test_metrics(trained_affect_model, tmp_path):
    result = run_evaluate(trained_affect_model.ckpt, tmp_path / "eval")
    for name in ("valence", "arousal"):
        assert result["raw"]["test"][name]["ccc"] == pytest.approx(trained_affect_model.after[f"test/ccc_{name}"], abs=1e-4)
        assert result["raw"]["test"][name]["seq_ccc_mean"] == pytest.approx(
            trained_affect_model.after[f"test/seq_ccc_{name}"], abs=1e-4)


def test_a_raters_delay_shifts_only_the_labels_evaluate_scores(tiny_checkpoint, tiny_corpus):
    # the data side of delay compensation, independent of any model's quality: with a rater lag
    # of L frames evaluate pairs the same predictions with the labels of L frames earlier
    # (exact recovery of a known delay from such pairs: test_postprocess.py)
    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.inference.evaluate import data_settings, predict_split
    from fer_lightning.models.checkpoint import load_checkpoint_model

    model, data = load_checkpoint_model(tiny_checkpoint)
    lag = 6  # frames: 0.24 s at 25 fps
    seqs = {}
    for delay in (0.0, lag / 25.0):
        dm = AffectDataModule(**data_settings({**data, "root": str(tiny_corpus), "dataset_args": {"label_delay": delay}}))
        dm.setup("test")
        seqs[delay] = predict_split(model, dm, "test", torch.device("cpu"), progress=False)
    plain, late = seqs[0.0], seqs[lag / 25.0]
    assert plain.keys() == late.keys() and plain
    for vid, s in plain.items():
        np.testing.assert_allclose(late[vid].pred, s.pred, rtol=0, atol=1e-6)
        assert np.isnan(late[vid].true[:lag]).all()
        # frames without a face are not scored (NaN) in either: compare where both are scored
        shifted, earlier = late[vid].true[lag:], s.true[:-lag]
        both = np.isfinite(shifted) & np.isfinite(earlier)
        assert both.mean() > 0.5
        np.testing.assert_array_equal(shifted[both], earlier[both])


@pytest.mark.slow
def test_delay_compensation_follows_the_raters_delay(trained_affect_model, tmp_path):
    # a model trained for minutes has its own timing offset and accuracy, both of which differ
    # from one machine to another, and a 4-video development split scatters the fitted delay by
    # a few frames; what any model that learns shows: the delay fitted on the development split
    # grows with the raters' lag, and compensating a long lag raises the CCC on dev and on test
    fitted = {lag: run_evaluate(trained_affect_model.ckpt, tmp_path / f"eval{lag}", "--data.dataset_args",
                                json.dumps({"label_delay": lag}), "--search.max_delay_s", "2.0") for lag in LAGS}
    print(json.dumps({lag: {k: r[k] for k in ("postprocess", "steps")} for lag, r in fitted.items()}, indent=1))
    none, late = LAGS
    for name in ("valence", "arousal"):
        delays = {lag: fitted[lag]["postprocess"][name]["delay_s"] for lag in LAGS}
        # measured on three configurations (docs/reference.md, "Tests and benchmarks"): 0.00 -> 0.68 to 1.24 s
        assert delays[late] > delays[none] + 0.3, delays
        dev, test = fitted[late]["postprocess"][name]["dev_ccc"], fitted[late]["steps"]["test"]
        assert dev["delay"] > dev["raw"] + 0.05, dev
        assert test["delay"][name] > test["raw"][name] + 0.05, test  # measured: +0.09 to +0.25


def test_evaluate_scores_every_labelled_frame_and_fills_the_faceless_ones(tmp_path, capsys):
    # a corpus labelled where the face has left too (as RECOLA is): the official figure counts
    # those frames, predicted from the face frames around them; the face-only figure does not
    from conftest import train_tiny_checkpoint

    from fer_lightning.corpora.adapters import load_dataset
    from fer_lightning.corpora.synthetic.generator import SynthConfig, generate_corpus
    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.inference.evaluate import data_settings, predict_split
    from fer_lightning.models.checkpoint import load_checkpoint_model

    root = tmp_path / "corpus"
    generate_corpus(SynthConfig(videos=6, seconds=3.0, fps=25.0, seed=7, size=128, faceless_prob=1.0,
                                label_faceless=True), root, workers=2, progress=False)
    ckpt = train_tiny_checkpoint(root, tmp_path / "model.ckpt")
    result = run_evaluate(ckpt, tmp_path / "eval", "--search.max_delay_s", "0.2")
    test = [r for r in load_dataset("synthetic", root) if r.split == "test"]
    frames, faces = sum(r.num_frames for r in test), sum(int(r.has_face.sum()) for r in test)
    assert 0 < faces < frames
    for kind in ("raw", "postprocessed"):
        assert result[kind]["test"]["valence"]["frames"] == frames  # every labelled frame
        assert result["face_frames_only"][kind]["test"]["valence"]["frames"] == faces
    assert result["scoring"]["face_coverage"]["test"] == pytest.approx(faces / frames)
    assert result["scoring"]["faceless"] == "interpolate"
    printed = capsys.readouterr().out
    assert f"{faces / frames:.1%} of them show a face" in printed and "CCC (face frames only)" in printed

    # the faceless frames' predictions: the straight line between the face frames around them
    model, data = load_checkpoint_model(ckpt)
    dm = AffectDataModule(**data_settings(data))
    dm.setup("test")
    filled = predict_split(model, dm, "test", torch.device("cpu"), progress=False)
    raw = predict_split(model, dm, "test", torch.device("cpu"), progress=False, faceless="model")
    for vid, s in filled.items():
        face, idx = s.has_face, np.arange(len(s.mask))
        assert s.mask.all() and not face.all()
        np.testing.assert_allclose(s.pred[face], raw[vid].pred[face])
        for d in range(2):
            np.testing.assert_allclose(s.pred[~face, d], np.interp(idx[~face], idx[face], raw[vid].pred[face, d]),
                                       atol=1e-9)
