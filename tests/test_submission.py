"""What is reported is what is written: evaluate's files, read back by scorers written here the
way the challenges' own are (ABAW's pooled concordance_cc2 over label files with -5 markers,
AVEC's per-recording CCC over ARFF files), give the report's figures; every annotation is
scored, whatever the label delay, including those past the decoded video."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_lightning.cli.main import main


def field_ccc(x: np.ndarray, y: np.ndarray, ddof: int = 0) -> float:
    """The organisers' formula (ABAW ``concordance_cc2``, AVEC ``cccCalc``), written out."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = x.shape[0]
    sxy = np.sum((x - x.mean()) * (y - y.mean())) / (n - ddof)
    return float(2 * sxy / (np.var(x, ddof=ddof) + np.var(y, ddof=ddof) + (x.mean() - y.mean()) ** 2))


def read_arff_rows(path: Path) -> list[list[str]]:
    """The data rows of an ARFF file, split on commas (no quoting rules needed for ours)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().lower() == "@data")
    return [line.split(",") for line in lines[start + 1:] if line.strip() and not line.startswith("%")]


def evaluate(ckpt: Path, out: Path, *extra: str) -> dict:
    assert main(["evaluate", "--ckpt", str(ckpt), "--out", str(out), "--num_workers", "0",
                 "--search.max_delay_s", "0.4", *extra]) == 0
    return json.loads((out / "evaluation.json").read_text())


@pytest.fixture(scope="module")
def abaw_layout(tiny_corpus, tmp_path_factory) -> Path:
    """The synthetic face videos laid out as Aff-Wild2 ships: per-frame label files with -5 for
    a frame not annotated, one of them with a single valid dimension on some frames and 2 rows
    more than its video decodes."""
    index = pd.read_csv(tiny_corpus / "index.csv")
    root = tmp_path_factory.mktemp("abaw")
    ann = root / "annotations" / "VA_Estimation_Challenge"
    for row in index.itertuples():
        shutil.copy(tiny_corpus / row.path, root / f"{row.video_id}.mp4")
        labels = pd.read_csv(tiny_corpus / "annotations" / "VA" / f"{row.video_id}.txt")
        if row.split == "test":
            labels.loc[10:14, "valence"] = -5  # arousal alone is annotated: scored for arousal
            labels.loc[20:22] = -5
            labels = pd.concat([labels, pd.DataFrame({"valence": [0.3, 0.2], "arousal": [-0.1, 0.0]})])
        folder = ann / ("Validation_Set" if row.split == "test" else "Train_Set")
        folder.mkdir(parents=True, exist_ok=True)
        labels.to_csv(folder / f"{row.video_id}.txt", index=False, float_format="%.6f")
    return root


def test_abaw_files_scored_as_the_organisers_score_them_give_the_report(tiny_checkpoint, abaw_layout, tmp_path):
    result = evaluate(tiny_checkpoint, tmp_path / "eval", f"--data.root={abaw_layout}", "--data.dataset=affwild2",
                      "--data.dataset_args", json.dumps({"val_from_train": 0.5}))
    labels_dir = abaw_layout / "annotations" / "VA_Estimation_Challenge" / "Validation_Set"
    written = sorted((tmp_path / "eval" / "predictions_abaw").glob("*.txt"))
    assert [p.stem for p in written] == sorted(p.stem for p in labels_dir.glob("*.txt")) == ["synth_002"]
    assert result["scoring"]["annotations"]["test"]["after_last_frame"] == 2
    pooled: dict[str, list] = {"valence": [[], []], "arousal": [[], []]}
    for path in written:
        pred = pd.read_csv(path)
        true = pd.read_csv(labels_dir / path.name)
        assert list(pred.columns) == ["valence", "arousal"] and len(pred) == len(true) == 77  # every label row
        assert pred.notna().all().all() and (pred.abs() <= 1).all().all()
        assert ((true.valence == -5) & (true.arousal != -5)).sum() >= 5  # one valid dimension: still scored
        for name in pooled:
            keep = true[name] != -5
            pooled[name][0].append(pred[name][keep].to_numpy())
            pooled[name][1].append(true[name][keep].to_numpy())
    report = result["postprocessed"]["test"]
    for name, (p, t) in pooled.items():
        p, t = np.concatenate(p), np.concatenate(t)
        assert report[name]["frames"] == len(t) and len(t) > 40
        assert report[name]["ccc"] == pytest.approx(field_ccc(p, t), abs=1e-6)


@pytest.fixture(scope="module")
def timed_layout(tiny_corpus, tmp_path_factory) -> Path:
    """The synthetic videos (3 s at 25 fps) as a user's corpus annotated in time: 50 Hz
    annotations (denser than the frames) running 0.8 s past each video's end, arousal missing on
    some rows."""
    index = pd.read_csv(tiny_corpus / "index.csv")
    root = tmp_path_factory.mktemp("timed")
    rows = []
    for k, row in enumerate(index.itertuples()):
        t = np.round(np.arange(0, 3.8, 0.02), 2)
        labels = pd.DataFrame({"time": t, "valence": np.sin(1.7 * t + k), "arousal": 0.8 * np.cos(2.3 * t - k)})
        labels.loc[30:39, "arousal"] = np.nan
        labels.to_csv(root / f"{row.video_id}.csv", index=False, float_format="%.6f")
        shutil.copy(tiny_corpus / row.path, root / f"{row.video_id}.mp4")
        rows.append({"video": f"{row.video_id}.mp4", "subject": row.subject, "labels": f"{row.video_id}.csv",
                     "split": row.split})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def test_avec_files_hold_every_annotation_whatever_the_delay_and_score_as_reported(tiny_checkpoint, timed_layout,
                                                                                tmp_path):
    results = {}
    for delay in (0.0, 0.5):
        out = tmp_path / f"eval{delay}"
        ddof = 1 if delay else 0  # the delayed run reports AVEC 2018 CES's n-1 moments
        results[delay] = result = evaluate(tiny_checkpoint, out, f"--data.root={timed_layout}",
                                           "--data.dataset=manifest", "--data.dataset_args",
                                           json.dumps({"delay": delay}), "--moments",
                                           "sample" if ddof else "population")
        (recording,) = [p.stem for p in (out / "predictions_avec" / "valence").glob("*.arff")]
        true = pd.read_csv(timed_layout / f"{recording}.csv")
        facts = result["scoring"]["annotations"]["test"]
        # 25 fps, 75 frames: annotation t describes t - delay; half a frame beyond the edges is outside
        assert facts["before_first_frame"] == int((true.time - delay < -0.02 - 1e-9).sum())
        assert facts["after_last_frame"] == int((true.time - delay > 2.96 + 0.02 + 1e-9).sum()) > 0
        for name in ("valence", "arousal"):
            rows = read_arff_rows(out / "predictions_avec" / name / f"{recording}.arff")
            assert len(rows) == len(true)  # every annotation, those outside the video too
            np.testing.assert_allclose([float(r[1]) for r in rows], true.time, atol=1e-6)
            assert {r[0] for r in rows} == {f"'{recording}'"}
            pred = np.array([float(r[2]) for r in rows])
            keep = true[name].notna().to_numpy()
            s = result["postprocessed"]["test"][name]
            assert s["frames"] == keep.sum()
            assert s["ccc"] == pytest.approx(field_ccc(pred[keep], true[name][keep], ddof), abs=1e-6)
            assert s["per_sequence"][recording] == pytest.approx(field_ccc(pred[keep], true[name][keep], ddof),
                                                                 abs=1e-6)
            csv = pd.read_csv(out / "predictions_label_rate" / f"{recording}.csv")
            np.testing.assert_allclose(csv[name], pred, atol=1e-6)
    # a delay sweep compares runs scored on the same annotations
    for name in ("valence", "arousal"):
        assert results[0.0]["raw"]["test"][name]["frames"] == results[0.5]["raw"]["test"][name]["frames"]
    assert results[0.5]["scoring"]["annotations"]["test"]["before_first_frame"] > 0
    assert results[0.5]["scoring"]["moments"] == "sample"


def test_the_final_predictions_are_clipped_before_they_are_scored(tmp_path):
    # a scale correction fitted far above 1 pushes predictions past the label range: the file
    # holds the clipped values, and the reported CCC is theirs
    from fer_lightning.evaluation.final import Annotations, FramePredictions, final_predictions
    from fer_lightning.evaluation.formats import write_abaw_va
    from fer_lightning.evaluation.postprocess import DimensionSteps, PostProcessor, scores

    rng = np.random.default_rng(0)
    n = 200
    true = np.clip(np.cumsum(rng.normal(0, 0.1, (n, 2)), axis=0) / 3, -1, 1)
    frames = {"v": FramePredictions(np.arange(n), 0.03 * true + 0.001 * rng.normal(size=(n, 2)), np.ones(n, bool))}
    annotations = {"v": Annotations(true, np.arange(n, dtype=float), np.arange(n) / 25.0, 25.0)}
    post = PostProcessor(["valence", "arousal"], [DimensionSteps(scale=59.0), DimensionSteps(scale=59.0)])
    final = final_predictions(frames, annotations, "interpolate", post)
    assert np.abs(final["v"].pred).max() == 1.0 and (np.abs(final["v"].pred) == 1.0).sum() > 10
    (path,) = write_abaw_va(tmp_path, {v: t.pred for v, t in final.items()}, ["valence", "arousal"])
    written = pd.read_csv(path).to_numpy()
    reported = scores(final, ["valence", "arousal"])
    gaps = []
    for d, name in enumerate(("valence", "arousal")):
        assert reported[name]["ccc"] == pytest.approx(field_ccc(written[:, d], true[:, d]), abs=1e-6)
        unclipped = 59.0 * frames["v"].pred[:, d]  # what a report of the unclipped outputs gave
        gaps.append(abs(field_ccc(unclipped, true[:, d]) - reported[name]["ccc"]))
    assert max(gaps) > 1e-3, gaps


def test_sample_moments_are_avec_2018_ces(tmp_path):
    from fer_lightning.evaluation.postprocess import ccc

    rng = np.random.default_rng(1)
    t = rng.normal(size=10)
    p = t + 0.5 * rng.normal(size=10)
    assert ccc(p, t, ddof=1) == pytest.approx(field_ccc(p, t, ddof=1), abs=1e-12)
    assert ccc(p, t) == pytest.approx(field_ccc(p, t), abs=1e-12)
    assert abs(ccc(p, t, ddof=1) - ccc(p, t)) > 1e-4  # a short recording: the two conventions differ


@pytest.fixture(scope="module")
def abaw_test_set(tiny_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """The ABAW test set as the organisers ship it: cropped_aligned/<video>/00001.jpg (no image
    where their detector found no face; _left/_right folders for the two persons of a video) and
    the sample file listing every frame of every video, in their order, with an empty value."""
    import cv2

    from fer_lightning.media.video import iter_frames

    index = pd.read_csv(tiny_corpus / "index.csv").set_index("video_id")
    root = tmp_path_factory.mktemp("abaw_test")
    crops = root / "cropped_aligned"
    faceless = set(range(30, 40))
    for folder, source in (("synth_002", "synth_002"), ("synth_005_left", "synth_005"), ("synth_005_right", "synth_005")):
        (crops / folder).mkdir(parents=True)
        for i, frame in enumerate(iter_frames(tiny_corpus / index.loc[source, "path"])):
            if i not in faceless:
                half = frame[:, : frame.shape[1] // 2] if folder.endswith("_left") else frame
                cv2.imwrite(str(crops / folder / f"{i + 1:05d}.jpg"), cv2.cvtColor(
                    cv2.resize(half, (112, 112)), cv2.COLOR_RGB2BGR))
    rows = ["image_location,valence,arousal"]
    for video, count in (("synth_005_left", 75), ("synth_002", 75), ("synth_005_right", 75), ("synth_009", 20)):
        rows += [f"{video}/{i:05d}.jpg," for i in range(1, count + 1)]
    (root / "CVPR_6th_ABAW_VA_test_set_sample.txt").write_text("\n".join(rows) + "\n")
    return root / "CVPR_6th_ABAW_VA_test_set_sample.txt", crops


def test_submit_fills_the_organisers_sample_row_for_row(tiny_checkpoint, abaw_test_set, tmp_path, capsys):
    sample, crops = abaw_test_set
    out = tmp_path / "va.txt"
    assert main(["submit", "--ckpt", str(tiny_checkpoint), "--sample", str(sample), "--faces", str(crops),
                 "--out", str(out), "--device", "cpu"]) == 0
    assert "1 videos absent from --faces" in capsys.readouterr().err
    given = sample.read_text().splitlines()
    written = out.read_text().splitlines()
    assert written[0] == given[0] == "image_location,valence,arousal" and len(written) == len(given) == 1 + 245
    values = []
    for g, w in zip(given[1:], written[1:], strict=True):
        location, v, a = w.split(",")
        assert location + "," == g  # the sample's rows, in its order
        values.append((float(v), float(a)))
    values = np.array(values)
    assert np.isfinite(values).all() and np.abs(values).max() <= 1  # every row valued, on the label range
    report = json.loads(out.with_name("va.txt.json").read_text())
    assert report["rows"] == 245 and report["videos"] == 4
    assert report["videos_not_in_faces"] == ["synth_009"] and report["videos_without_face"] == ["synth_009"]
    assert report["rows_with_face"] == 3 * (75 - 10)
    # the two persons of one video are predicted apart (they are different crops)
    left, right = values[0:75], values[150:225]
    assert np.abs(left - right).max() > 1e-4
    # the faceless frames of a video: between its face frames' predictions (interpolate)
    synth_002 = values[75:150]
    for d in range(2):
        np.testing.assert_allclose(synth_002[30:40, d], np.interp(np.arange(30, 40), [29, 40], synth_002[[29, 40], d]),
                                   atol=2e-6)


def test_submit_applies_the_post_processing_evaluate_fitted(tiny_checkpoint, abaw_test_set, tmp_path):
    from fer_lightning.evaluation.postprocess import DimensionSteps, PostProcessor

    sample, crops = abaw_test_set
    fitted = PostProcessor(["valence", "arousal"], [DimensionSteps(bias=0.25), DimensionSteps(scale=3.0, scale_centre=0.1)])
    (tmp_path / "evaluation.json").write_text(json.dumps({"postprocess": fitted.as_dict()}))
    raw, post = tmp_path / "raw.txt", tmp_path / "post.txt"
    for out, extra in ((raw, []), (post, ["--postprocess", str(tmp_path / "evaluation.json")])):
        assert main(["submit", "--ckpt", str(tiny_checkpoint), "--sample", str(sample), "--faces", str(crops),
                     "--out", str(out), "--device", "cpu", *extra]) == 0
    r = pd.read_csv(raw)[["valence", "arousal"]].to_numpy()
    p = pd.read_csv(post)[["valence", "arousal"]].to_numpy()
    np.testing.assert_allclose(p[:, 0], np.clip(r[:, 0] + 0.25, -1, 1), atol=2e-6)  # hand-computed steps
    np.testing.assert_allclose(p[:, 1], np.clip((r[:, 1] - 0.1) * 3.0 + 0.1, -1, 1), atol=1e-5)


@pytest.mark.parametrize("text, says", [
    ("location,valence,arousal\nsynth_002/00001.jpg,\n", "not image_location,valence,arousal"),
    ("image_location,valence,arousal\nsynth_002/00001.jpg,\nsynth_002.jpg,\n", "line 3: 'synth_002.jpg' is not"),
    ("image_location,valence,arousal\nsynth_002/00001.jpg,\nsynth_002/00001.jpg,\n", "line 3: synth_002/00001.jpg is listed twice"),
])
def test_submit_names_the_line_of_a_sample_it_cannot_read(tiny_checkpoint, abaw_test_set, tmp_path, capsys, text, says):
    (tmp_path / "sample.txt").write_text(text)
    with pytest.raises(SystemExit) as err:
        main(["submit", "--ckpt", str(tiny_checkpoint), "--sample", str(tmp_path / "sample.txt"),
              "--faces", str(abaw_test_set[1]), "--out", str(tmp_path / "out.txt")])
    assert err.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "out.txt").exists()


def test_submit_from_raw_videos_writes_the_store_first(tiny_checkpoint, tiny_corpus, tmp_path):
    # an unlabelled test set as raw videos: preprocess runs into --faces, then the same file
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("synth_002", "synth_005"):
        shutil.copy(tiny_corpus / "videos" / f"{name}.mp4", videos)
    sample = tmp_path / "sample.txt"
    sample.write_text("image_location,valence,arousal\n" + "".join(
        f"{v}/{i:05d}.jpg,\n" for v in ("synth_005", "synth_002") for i in range(1, 76)) + "synth_002/00077.jpg,\n")
    out = tmp_path / "va.txt"
    assert main(["submit", "--ckpt", str(tiny_checkpoint), "--sample", str(sample), "--faces", str(tmp_path / "faces"),
                 "--videos", str(videos), "--out", str(out), "--device", "cpu", "--workers", "1"]) == 0
    assert (tmp_path / "faces" / "index.csv").is_file()
    table = pd.read_csv(out)
    assert len(table) == 151 and table[["valence", "arousal"]].notna().all().all()
    report = json.loads(out.with_name("va.txt.json").read_text())
    assert report["rows_past_the_last_frame"] == {"synth_002": 1}  # frame 77 of a 75-frame video: held, counted
    assert report["rows_with_face"] > 0  # what the detector found on the drawn faces


def test_validation_during_training_scores_the_annotations_evaluate_scores(tiny_checkpoint, timed_layout, tmp_path):
    # what a delay sweep ranks runs by (val/ccc_mean) counts the same annotations whatever the
    # delay: the first `delay` seconds and the rows past the video, predicted at the edge frames
    import lightning as L

    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.inference.evaluate import data_settings
    from fer_lightning.models.checkpoint import load_checkpoint_model

    model, data = load_checkpoint_model(tiny_checkpoint)
    settings = {**data, "root": str(timed_layout), "dataset": "manifest", "dataset_args": {"delay": 0.5}}
    result = evaluate(tiny_checkpoint, tmp_path / "eval", f"--data.root={timed_layout}", "--data.dataset=manifest",
                      "--data.dataset_args", json.dumps({"delay": 0.5}), "--split", "val")
    assert result["scoring"]["annotations"]["val"]["before_first_frame"] > 0
    dm = AffectDataModule(**data_settings(settings))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (logged,) = trainer.validate(model, datamodule=dm, verbose=False)
    for name in ("valence", "arousal"):
        assert logged[f"val/ccc_{name}"] == pytest.approx(result["raw"]["val"][name]["ccc"], abs=1e-5)


def test_two_annotation_files_of_one_grid_stay_one_grid_and_other_grids_keep_their_rows(tmp_path):
    from fer_lightning.corpora.annotations import annotations_of
    from fer_lightning.corpora.labels import TimedLabels
    from fer_lightning.corpora.records import VideoRecord
    from fer_lightning.evaluation.formats import write_avec_arff

    def record(columns) -> VideoRecord:
        n = 50
        rec = VideoRecord("rec", tmp_path / "rec.mp4", "s", "test", 25.0, n, np.ones(n, bool), np.zeros((n, 4)),
                          values=np.zeros((n, 2)), extra={"value_names": ["arousal", "valence"]})
        rec.extra["timed_labels"] = TimedLabels(columns)
        return rec

    t = np.arange(0, 2, 0.04)
    same = annotations_of(record([(t, np.sin(t)), (t + 1e-9, np.cos(t))]), ["arousal", "valence"])
    assert len(same.time) == len(t) and np.isfinite(same.values).all() and same.rate == pytest.approx(25.0)
    slow = np.arange(0, 2, 0.1)
    mixed = annotations_of(record([(t, np.sin(t)), (slow, np.cos(slow))]), ["arousal", "valence"])
    assert [int(mixed.rows_of(d).sum()) for d in range(2)] == [len(t), len(slow)]
    a, v = write_avec_arff(tmp_path / "avec", {"rec": (mixed.time, np.nan_to_num(mixed.values))},
                           ["arousal", "valence"], {"rec": mixed.annotated})
    assert len(read_arff_rows(a)) == len(t) and len(read_arff_rows(v)) == len(slow)  # each its own gold standard


def test_a_model_output_that_is_not_a_number_stops_before_anything_is_scored():
    from fer_lightning.evaluation.final import Annotations, FramePredictions, final_predictions

    pred = np.zeros((5, 2))
    pred[3, 1] = np.nan
    frames = {"v": FramePredictions(np.arange(5), pred, np.ones(5, bool))}
    with pytest.raises(ValueError, match="v: the model's output is not a number on 1 frames .first: frame 3"):
        final_predictions(frames, {"v": Annotations(np.zeros((5, 2)), np.arange(5.0), np.arange(5) / 25, 25.0)},
                          "interpolate")


def test_submit_takes_sample_rows_in_any_order_and_refuses_a_report_without_post_processing(
        tiny_checkpoint, abaw_test_set, tmp_path, capsys):
    sample, crops = abaw_test_set
    order = [5, 1, 3, 2, 9, 7]  # out of order and with gaps: each row still gets its own frame's value
    shuffled = tmp_path / "sample.txt"
    shuffled.write_text("image_location,valence,arousal\n" + "".join(f"synth_002/{i:05d}.jpg,\n" for i in order))
    full = tmp_path / "full.txt"
    full.write_text("image_location,valence,arousal\n" + "".join(f"synth_002/{i:05d}.jpg,\n" for i in range(1, 10)))
    for path in (shuffled, full):
        assert main(["submit", "--ckpt", str(tiny_checkpoint), "--sample", str(path), "--faces", str(crops),
                     "--out", str(path.with_suffix(".out")), "--device", "cpu"]) == 0
    got = pd.read_csv(shuffled.with_suffix(".out")).set_index("image_location")
    want = pd.read_csv(full.with_suffix(".out")).set_index("image_location")
    assert list(got.index) == [f"synth_002/{i:05d}.jpg" for i in order]
    pd.testing.assert_frame_equal(got, want.loc[got.index])
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:  # submit's own report has no fitted steps
        main(["submit", "--ckpt", str(tiny_checkpoint), "--sample", str(full), "--faces", str(crops),
              "--out", str(tmp_path / "x.txt"), "--postprocess", str(full.with_suffix(".out.json"))])
    assert err.value.code == 2 and "holds no fitted post-processing" in capsys.readouterr().err


def test_a_video_without_any_face_is_scored_from_its_black_frames_and_named_in_the_report():
    from fer_lightning.evaluation.final import Annotations, FramePredictions, final_predictions
    from fer_lightning.inference.evaluate import _annotation_lines, annotation_facts

    rng = np.random.default_rng(2)
    frames = {"seen": FramePredictions(np.arange(6), rng.normal(size=(6, 2)) / 3, np.ones(6, bool)),
              "dark": FramePredictions(np.arange(6), np.full((6, 2), 0.2), np.zeros(6, bool))}
    annotations = {v: Annotations(rng.uniform(-1, 1, (8, 2)), np.arange(8.0), np.arange(8) / 25, 25.0) for v in frames}
    final = final_predictions(frames, annotations, "interpolate")
    np.testing.assert_allclose(final["dark"].pred, 0.2)  # the model's outputs as made: never zeros
    facts = annotation_facts(frames, annotations, final, ["valence", "arousal"])
    assert facts["videos_without_face"] == ["dark"] and facts["after_last_frame"] == 4 and facts["annotations"] == 16
    assert "1 videos show no face at all" in _annotation_lines(facts, "population")[0]
