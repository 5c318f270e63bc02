"""Every pretraining route, compared on identities never seen in fine-tuning
(``make compare-pretraining``).

A comparison file (``experiments/compare_pretraining.yaml``) names the fine-tuning experiment,
the seeds, the temporal models and the routes. A route is a chain of pretraining stages (each an
experiment file and overrides, run once, starting from the stage before: ``model.init_from``),
and may add fine-tuning overrides of its own (ImageNet weights from a local file). Then every
(route, temporal model, seed) fine-tunes from the route's checkpoint, its best checkpoint (by
validation CCC) is tested on the held-out split, and the figures go to ``results.csv`` (one row
per run), ``summary.md`` (mean and sd per route and temporal model) and ``compare_pretraining.png``.
Run again into the same folder, it reuses each stage that ran with the same settings (from the
same weights) and each row whose route started from the same weights (a hash of the checkpoint):
an interrupted comparison picks up where it stopped.

Fair by construction where the tool can see it: before anything trains, every corpus a stage
reads (its own, its ``data.mix`` entries) that shares the fine-tuning corpus's folder or face store
(through any adapter) is read whole and matched by name against the held-out identities, and the
stage reads it without them (``data.exclude_subjects``, reported);
an image corpus made from the fine-tuning corpus (``export_images``) holds its training and
validation subjects only. Stages shared by routes (self-supervision alone and chained) run once.

    fer-lightning compare-pretraining [--config experiments/compare_pretraining.yaml]
        [--seeds 0 1] [--temporal lstm tcn] [--routes scratch video] [--out DIR] [-- fit overrides]
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import yaml

from fer_lightning.errors import UserInputError
from fer_lightning.io import write_text_atomic

METRICS = ("ccc_valence", "ccc_arousal", "ccc_mean")
KNOWN_KEYS = {"finetune", "seeds", "temporal", "routes", "stage_args", "finetune_args", "export_images"}
ROUTE_KEYS = {"stages", "finetune_args", "needs"}


def read_comparison(path: str | Path) -> dict:
    """The comparison file, checked, with experiment file names resolved against its folder and
    ``${VAR}`` environment references expanded (an unset one leaves the route to be skipped)."""
    path = Path(path)
    spec = yaml.safe_load(path.read_text()) or {}
    if unknown := sorted(set(spec) - KNOWN_KEYS):
        raise UserInputError(f"{path}: unknown keys {unknown}; known: {sorted(KNOWN_KEYS)}")
    if not spec.get("finetune") or not spec.get("routes"):
        raise UserInputError(f"{path}: needs finetune (the fine-tuning experiment files) and routes")
    base = path.parent

    def resolve(items, where: str) -> list[str]:
        if not isinstance(items, list) or not all(isinstance(i, str | int | float) for i in items):
            raise UserInputError(f"{path}: {where} must be a list of experiment files and --overrides, got {items!r}")
        out = []
        for item in items:
            item = os.path.expandvars(str(item))
            out.append(item if item.startswith("--") else str(base / item))
        return out

    routes = {}
    for name, route in spec["routes"].items():
        route = route or {}
        if not isinstance(route, dict) or (unknown := sorted(set(route) - ROUTE_KEYS)):
            raise UserInputError(f"{path}: route {name}: a mapping of {sorted(ROUTE_KEYS)}, got {route!r}")
        stages = route.get("stages") or []
        if not isinstance(stages, list) or not all(isinstance(stage, list) for stage in stages):
            raise UserInputError(f"{path}: route {name}: stages is a list of stages, each a list of experiment files "
                                 f"and --overrides ([[a.yaml], [b.yaml, --data.root=...]]), got {stages!r}")
        routes[name] = {"stages": [resolve(stage, f"route {name} stage {k + 1}") for k, stage in enumerate(stages)],
                        "finetune_args": resolve(route.get("finetune_args") or [], f"route {name} finetune_args"),
                        "needs": [os.path.expandvars(str(p)) for p in route.get("needs") or []]}
    return {"finetune": resolve(spec["finetune"], "finetune"), "seeds": list(spec.get("seeds", [0])),
            "temporal": list(spec.get("temporal", ["lstm"])), "routes": routes,
            "stage_args": [str(a) for a in spec.get("stage_args", [])],
            "finetune_args": [str(a) for a in spec.get("finetune_args", [])],
            "export_images": spec.get("export_images")}


def _configs_and_overrides(items: list[str], out: Path) -> tuple[list[str], list[str]]:
    items = [i.replace("{out}", str(out)) for i in items]
    return [i for i in items if not i.startswith("--")], [i for i in items if i.startswith("--")]


def _data_of(items: list[str], out: Path) -> dict:
    from fer_lightning.cli.main import experiment_data

    configs, overrides = _configs_and_overrides(items, out)
    return experiment_data({}, configs, overrides)


def _names(r) -> set[str]:
    """What can name a record's person across adapters of one corpus: its subject, its video, and
    the stem of its source video (kept in ``extra["source"]`` where a face store stands in)."""
    return {str(r.subject), r.video_id, Path(str(r.subject)).stem,
            Path(str(r.extra.get("source", r.path))).stem}


def held_out_identities(finetune_items: list[str], out: Path) -> tuple[dict, set[str], set[str]]:
    """The fine-tuning data settings, the subjects of its test split and every name of their
    videos (:func:`_names`)."""
    from fer_lightning.corpora.load import corpus_settings, load_corpus

    data = _data_of(finetune_items, out)
    corpus = load_corpus(**corpus_settings(data))
    test = corpus.splits["test"]
    return data, {r.subject for r in test}, {n for r in test for n in _names(r)}


def _same_folder(a: object, b: object) -> bool:
    return a is not None and b is not None and Path(str(a)).resolve() == Path(str(b)).resolve()


def check_disjoint(stage_items: list[str], finetune_data: dict, held_out: set[str], out: Path,
                   held_out_videos: set[str] = frozenset(), made_here: Path | None = None) -> tuple[str, list[str]]:
    """What a stage reads of the fine-tuning corpus's held-out people. Each corpus the stage reads
    (its own and its ``data.mix`` entries) that shares the fine-tuning corpus's folder or face
    store (any adapter: Aff-Wild2's expression track beside its valence-arousal one, a face
    store's frames without labels) is loaded whole (every split, none carved, as many subjects
    as it has: a carve would move with the exclusion), and its records matched by subject, video
    or source video name (:func:`_names`) against the held-out ones. Returns (the corpora it reads
    that the tool cannot match by name, joined; "" if none) and the subjects to exclude (sorted,
    with any the stage already excludes). ``made_here``: a folder the tool wrote from the
    fine-tuning corpus's training and validation people (checked by construction)."""
    from fer_lightning.corpora.load import corpus_settings, load_corpus

    data = _data_of(stage_items, out)
    mine = (finetune_data.get("root"), finetune_data.get("face_store"))
    given = set(data.get("exclude_subjects") or ())
    others, leaking = [], set()
    parts = [data] + [{**data, "dataset": e.get("dataset"), "root": e.get("root"), "face_store": e.get("face_store"),
                       "dataset_args": e.get("dataset_args")} for e in data.get("mix") or ()]
    for part in parts:
        if made_here is not None and _same_folder(part.get("root"), made_here):
            continue
        if not any(_same_folder(a, b) for a in (part.get("root"), part.get("face_store")) for b in mine):
            others.append(f"{part.get('dataset')} at {part.get('root')}")
            continue
        settings = corpus_settings(part) | {"held_out_from_train": 0.0, "train_subjects": None,
                                           "exclude_subjects": sorted(given)}
        leaking |= {r.subject for r in load_corpus(**settings).records
                    if r.subject in held_out or _names(r) & held_out_videos}
    return "; ".join(others), sorted(leaking | given) if leaking else []


def fit(items: list[str], extra: list[str], run_root: Path, test: bool) -> tuple[str, dict]:
    """One ``fit`` of ``items`` (experiment files and overrides) with ``extra`` (the command
    line's overrides, layered between the files and the items' own overrides) in ``run_root``;
    returns its best checkpoint (else its last) and, with ``test``, the test figures of that
    checkpoint."""
    from fer_lightning.cli.main import lightning_main

    configs, overrides = [i for i in items if not i.startswith("--")], [i for i in items if i.startswith("--")]
    # the command line's overrides go under the stage's own (an image stage keeps its data.root)
    args = [*(a for c in configs for a in ("--config", c)), *extra, *overrides, f"--run_root={run_root}"]
    cli = lightning_main(args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    callback = cli.trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") or ""
    if not best:
        found = sorted(run_root.rglob("last.ckpt"))
        best = str(found[-1]) if found else ""
    if not best:
        raise RuntimeError(f"the fit in {run_root} saved no checkpoint")
    result = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False)[0] if test else {}
    return best, result


def slug(name: str) -> str:
    """A route's name as a folder name."""
    import re

    return re.sub(r"[^A-Za-z0-9+._-]+", "_", name).strip("_")


def finished_stage(root: Path, items: list[str]) -> str | None:
    """The checkpoint of a stage this results folder already ran with the same settings."""
    record = root / "stage.json"
    if not record.is_file():
        return None
    done = json.loads(record.read_text())
    return done["checkpoint"] if done.get("items") == items and Path(done["checkpoint"]).is_file() else None


def start_id(checkpoint: str) -> str:
    """A checkpoint as a starting point: its path and a hash of its bytes (a stage retrained into
    the same folder writes the same path, not the same weights)."""
    import hashlib

    with open(checkpoint, "rb") as fh:
        return f"{checkpoint}@{hashlib.file_digest(fh, 'sha256').hexdigest()[:16]}"


def previous_rows(path: Path, start_of: dict[str, str | None]) -> dict[tuple, dict]:
    """Rows of an earlier run of this comparison whose route started from the same weights
    (:func:`start_id`; "" from none)."""
    if not path.is_file():
        return {}
    import csv

    out = {}
    for row in csv.DictReader(path.open()):
        if row.get("route") in start_of and row.get("start", "") == (start_of[row["route"]] or ""):
            out[(row["route"], row["temporal"], row["seed"])] = {
                "route": row["route"], "temporal": row["temporal"], "seed": int(row["seed"]),
                **{m: float(row[m]) for m in METRICS}, "start": row.get("start", "")}
    return out


def summarize(rows: list[dict], skipped: dict[str, str]) -> str:
    """Markdown: mean ± sd of the test CCC per route and temporal model, over seeds."""
    lines = ["| route | temporal | runs | CCC valence | CCC arousal | CCC mean |", "|---|---|---|---|---|---|"]
    for route in dict.fromkeys(r["route"] for r in rows):
        for temporal in dict.fromkeys(r["temporal"] for r in rows if r["route"] == route):
            sel = [r for r in rows if r["route"] == route and r["temporal"] == temporal]
            cells = []
            for m in METRICS:
                v = np.array([r[m] for r in sel])
                cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}")
            lines.append(f"| {route} | {temporal} | {len(sel)} | " + " | ".join(cells) + " |")
    for route, why in skipped.items():
        lines.append(f"| {route} | - | 0 | skipped: {why} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``fer-lightning compare-pretraining``: see the module docs."""
    import sys

    from fer_lightning.cli.parsing import tool_parser
    from fer_lightning.cli.tools import split_experiment_args

    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    configs, overrides, own = split_experiment_args(argv[:argv.index("--")] if "--" in argv else argv)
    p = tool_parser("fer-lightning compare-pretraining", __doc__,
                    config_help="the comparison file (default: experiments/compare_pretraining.yaml); "
                                "--data./--model./--trainer. overrides (or any after --) go to every fit")
    p.add_argument("--seeds", type=int, nargs="+", help="fine-tuning seeds (default: the file's)")
    p.add_argument("--temporal", nargs="+", help="temporal models (default: the file's)")
    p.add_argument("--routes", nargs="+", help="the routes to run (default: all of the file's)")
    p.add_argument("--out", default=None, help="results folder (default: runs/<the comparison file's name>)")
    a = p.parse_args(own)
    config = configs[0] if configs else "experiments/compare_pretraining.yaml"
    spec = read_comparison(config)
    seeds, temporals = a.seeds or spec["seeds"], a.temporal or spec["temporal"]
    routes = {k: v for k, v in spec["routes"].items() if not a.routes or k in a.routes}
    if a.routes and (unknown := sorted(set(a.routes) - set(spec["routes"]))):
        raise UserInputError(f"--routes: unknown {unknown}; the file has {sorted(spec['routes'])}")
    out = Path(a.out or Path("runs") / Path(config).stem).resolve()
    out.mkdir(parents=True, exist_ok=True)
    every = [*overrides, *extra]

    # each seed may hold out other people (a corpus whose test split is carved with data.seed):
    # no stage may read any of them
    held_out: set[str] = set()
    held_out_videos: set[str] = set()
    # a route's own fine-tuning data settings may hold out others again
    variants = sorted({tuple(a for a in r["finetune_args"] if a.startswith("--data.")) for r in routes.values()})
    finetune_data: dict = {}
    for seed in seeds:
        for variant in variants or [()]:
            # layered as fit layers them: the command line's overrides under the files' own
            data, people, videos = held_out_identities([*every, *spec["finetune"], *spec["finetune_args"], *variant,
                                                        f"--data.seed={seed}"], out)
            finetune_data = finetune_data or data
            held_out |= people
            held_out_videos |= videos
    print(f"fine-tuning on {finetune_data['dataset']} at {finetune_data['root']}; tested on {len(held_out)} held-out "
          f"identities: {', '.join(sorted(held_out))}", flush=True)
    if spec["export_images"] and any("{out}/images" in i for r in routes.values() for s in r["stages"] for i in s):
        from fer_lightning.corpora.export import export_faces_by_class
        from fer_lightning.corpora.load import corpus_settings, load_corpus

        settings = corpus_settings(finetune_data) | {"held_out_from_train": finetune_data.get("held_out_from_train",
                                                                                             0.0)}
        corpus = load_corpus(**settings)
        names = list(finetune_data.get("class_names") or [])
        if not names:
            from fer_lightning.tasks import EMOTIONS

            names = list(EMOTIONS)
        kept = [r for split in ("train", "val") for r in corpus.splits[split] if r.subject not in held_out]
        shutil.rmtree(out / "images", ignore_errors=True)  # never another comparison's images
        written = export_faces_by_class(kept, names, out / "images", every=int(spec["export_images"].get("every", 5)))
        print(f"image corpus from the fine-tuning corpus's training and validation subjects: {written}", flush=True)

    skipped: dict[str, str] = {}
    unchecked: list[str] = []
    excluded: list[str] = []
    for name, route in list(routes.items()):
        missing = [p for p in route["needs"] if not p or "$" in p or not Path(p).exists()]
        if missing:
            skipped[name] = f"needs {', '.join(missing) or 'a file'}"
            del routes[name]
            continue
        made_here = out / "images" if spec["export_images"] else None  # the training and validation people only
        for k, stage in enumerate(route["stages"]):
            stage = route["stages"][k] = [*stage, *spec["stage_args"]]
            other, leaking = check_disjoint([*every, *stage], finetune_data, held_out, out, held_out_videos,
                                            made_here)
            if other:
                unchecked.append(f"route {name}, stage {k + 1}: {other} (another corpus: make sure it holds none of "
                                 "the held-out people)")
            if leaking:  # the stage would learn the test people's faces: it reads its corpus without them
                route["stages"][k] = stage = [*stage, f"--data.exclude_subjects={json.dumps(leaking)}"]
                if check_disjoint([*every, *stage], finetune_data, held_out, out, held_out_videos, made_here)[1]:
                    raise UserInputError(f"route {name}, stage {k + 1}: still reads held-out people with "
                                         "data.exclude_subjects set")
                excluded.append(f"route {name}, stage {k + 1}: {len(leaking)} held-out subjects left out of its "
                                f"corpus (data.exclude_subjects: {', '.join(leaking[:5])}"
                                f"{' ...' if len(leaking) > 5 else ''})")
                print(excluded[-1], flush=True)

    stage_ckpts: dict[tuple, str] = {}
    start_of: dict[str, str | None] = {}
    for name, route in routes.items():
        previous: str | None = None
        for k, stage in enumerate(route["stages"]):
            key = (tuple(stage), previous)
            if key not in stage_ckpts:
                init = [f"--model.init_from={previous}"] if previous else []
                root = out / "stages" / f"{slug(name)}_{k}"
                items = [i.replace("{out}", str(out)) for i in [*stage, *init]]
                # a stage after another starts from that one's weights, whatever its path: a rerun
                # that retrained the first into the same folder retrains this one too
                record = [*items, *every, *([f"# starts from {start_id(previous)}"] if previous else [])]
                done = finished_stage(root, record)
                if done:  # this results folder already ran it (an interrupted comparison, rerun)
                    print(f"route {name}, stage {k + 1}/{len(route['stages'])}: done before, {done}", flush=True)
                    stage_ckpts[key] = done
                else:
                    print(f"route {name}, stage {k + 1}/{len(route['stages'])}: {' '.join(stage)}", flush=True)
                    shutil.rmtree(root, ignore_errors=True)
                    stage_ckpts[key] = fit(items, every, root, test=False)[0]
                    write_text_atomic(root / "stage.json", json.dumps({"items": record,
                                                                       "checkpoint": stage_ckpts[key]}, indent=1))
            previous = stage_ckpts[key]
        start_of[name] = previous

    starts = {name: start_id(path) if path else "" for name, path in start_of.items()}
    rows, earlier = [], previous_rows(out / "results.csv", starts)
    for name, route in routes.items():
        for temporal in temporals:
            for seed in seeds:
                if (name, temporal, str(seed)) in earlier:  # measured before from the same starting point
                    rows.append(earlier[(name, temporal, str(seed))])
                else:
                    run = out / "runs" / f"{slug(name)}_{temporal}_seed{seed}"
                    args = [*spec["finetune"], *spec["finetune_args"], *route["finetune_args"],
                            f"--seed_everything={seed}", f"--data.seed={seed}", f"--model.net.temporal={temporal}",
                            f"--model.init_from={start_of[name] or 'null'}"]
                    _, result = fit([i.replace("{out}", str(out)) for i in args], every, run, test=True)
                    rows.append({"route": name, "temporal": temporal, "seed": seed,
                                 **{m: float(result[f"test/{m}"]) for m in METRICS}, "start": starts[name]})
                    print(rows[-1], flush=True)
                header = list(rows[0])
                write_text_atomic(out / "results.csv", ",".join(header) + "\n" + "".join(
                    ",".join(str(r[h]) for h in header) + "\n" for r in rows))  # after each run: nothing lost
    summary = summarize(rows, skipped)
    sources = "\n".join(f"- {name}: " + (" -> ".join(Path(s[0]).name if s else "?" for s in r["stages"]) or
                                        ("fine-tuning overrides " + " ".join(r["finetune_args"]) if r["finetune_args"]
                                         else "random weights")) for name, r in routes.items())
    caveat = ("\n\nHeld-out people left out of pretraining stages that read the fine-tuning corpus:\n"
              + "\n".join(f"- {e}" for e in excluded)) if excluded else ""
    caveat += ("\n\nNot checked for the held-out people (matched by name only where a stage reads the fine-tuning "
               "corpus's folder or face store):\n" + "\n".join(f"- {u}" for u in unchecked)) if unchecked else ""
    write_text_atomic(out / "summary.md", f"Test CCC on {len(held_out)} identities never seen in fine-tuning "
                                          f"({finetune_data['dataset']}); routes:\n{sources}\n\n{summary}{caveat}\n")
    if rows:
        from fer_lightning.evaluation.plots import plot_route_comparison

        plot_route_comparison(rows, out / "compare_pretraining.png")
    if unchecked:
        print("\n".join(["not checked for the held-out people:", *unchecked]))
    print(f"\n{summary}\n\nresults: {out / 'results.csv'}\nsummary: {out / 'summary.md'}\n"
          f"plot:    {out / 'compare_pretraining.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
