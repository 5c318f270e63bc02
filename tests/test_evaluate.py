"""evaluate: the same pooled CCC as Lightning's test loop, a known rater delay found by delay
compensation, reports written; bad checkpoints refused."""

from __future__ import annotations

import json

import pytest

from fer_lightning.cli import main

DELAY_S = 0.6  # the synthetic rater's lag: 15 frames at 25 fps


def run_evaluate(ckpt, out, *extra) -> dict:
    assert main(["evaluate", "--ckpt", str(ckpt), "--out", str(out), "--num-workers", "0", *extra]) == 0
    return json.loads((out / "evaluation.json").read_text())


def test_evaluate_writes_its_report_for_any_checkpoint(tiny_checkpoint, tmp_path, capsys):
    result = run_evaluate(tiny_checkpoint, tmp_path / "eval", "--max-delay", "0.4")
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


@pytest.mark.slow
def test_delay_compensation_finds_the_raters_delay(trained_affect_model, tmp_path):
    # the model learnt undelayed labels; scored against labels that lag 0.6 s behind the face,
    # the delay fitted on the development split must be that lag, and it must pay on test
    result = run_evaluate(trained_affect_model.ckpt, tmp_path / "eval", "--dataset-args",
                          json.dumps({"label_delay": DELAY_S}), "--max-delay", "2.0")
    print(json.dumps({k: result[k] for k in ("postprocess", "steps")}, indent=1))
    for name in ("valence", "arousal"):
        assert result["postprocess"][name]["delay_s"] == pytest.approx(DELAY_S, abs=0.16)
        steps = result["steps"]["test"]
        assert steps["delay"][name] > steps["raw"][name] + 0.05
