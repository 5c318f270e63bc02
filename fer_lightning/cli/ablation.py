"""Pretrained vs from-scratch fine-tuning on few subjects, several seeds (``make ablation``).

Runs ``experiments/ablation_pretrain.yaml`` once per (condition, seed): ``pretrained`` loads the
face feature extractor of a pretraining checkpoint (``model.init_from``), ``scratch`` starts
from random weights; the training subjects (``data.train_subjects``) are drawn with the seed.
Each run's best checkpoint (by validation CCC) is tested on the held-out subjects. Writes
``results.csv`` (one row per run), ``summary.md`` (mean +- sd per condition) and
``ablation.png`` beside them, and prints the summary.

    fer-lightning ablation [--config experiments/ablation_pretrain.yaml] [--seeds 0 1 2]
                           [--init_from latest] [--out runs/ablation_pretrain] [--trainer.max_epochs=4]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_lightning.io import write_text_atomic

METRICS = ("test/ccc_valence", "test/ccc_arousal", "test/ccc_mean")


def run_one(configs: list[str], condition: str, seed: int, init_from: str | None, extra: list[str]) -> dict:
    from fer_lightning.cli.main import lightning_main

    args = [*(a for c in configs for a in ("--config", c)), f"--seed_everything={seed}", f"--data.seed={seed}",
            f"--model.init_from={init_from if condition == 'pretrained' else 'null'}",
            f"--trainer.logger.init_args.name={condition}_seed{seed}", *extra]
    cli = lightning_main(args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    best = getattr(cli.trainer.checkpoint_callback, "best_model_path", "")
    result = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best or None, verbose=False)[0]
    return {"condition": condition, "seed": seed, **{m.split("/")[1]: float(result[m]) for m in METRICS}}


def summarize(rows: list[dict]) -> str:
    lines = ["| condition | runs | CCC valence | CCC arousal | CCC mean |", "|---|---|---|---|---|"]
    for cond in ("pretrained", "scratch"):
        sel = [r for r in rows if r["condition"] == cond]
        if not sel:
            continue
        cells = []
        for m in ("ccc_valence", "ccc_arousal", "ccc_mean"):
            v = np.array([r[m] for r in sel])
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}")
        lines.append(f"| {cond} | {len(sel)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``fer-lightning ablation``: see the module docs."""
    import sys

    from fer_lightning.cli.parsing import tool_parser
    from fer_lightning.cli.tools import split_experiment_args

    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    configs, overrides, own = split_experiment_args(argv[:argv.index("--")] if "--" in argv else argv)
    p = tool_parser("fer-lightning ablation", __doc__,
                    config_help="the experiment file (and presets) every run fits, layered as `fit --config` "
                                "(default: experiments/ablation_pretrain.yaml); --data./--model./--trainer. "
                                "overrides (or any after --) go to every run")
    p.add_argument("--init_from", default="latest", help="pretraining checkpoint (latest: the newest run's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds: training subjects and weights")
    p.add_argument("--out", default="runs/ablation_pretrain", help="results folder")
    a = p.parse_args(own)
    from fer_lightning.checkpoints import latest_checkpoint

    configs = configs or ["experiments/ablation_pretrain.yaml"]
    init_from = str(latest_checkpoint()) if a.init_from == "latest" else a.init_from
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in a.seeds:
        for condition in ("pretrained", "scratch"):
            rows.append(run_one(configs, condition, seed, init_from, [*overrides, *extra]))
            print(rows[-1], flush=True)
    header = list(rows[0])
    text = ",".join(header) + "\n" + "".join(",".join(str(r[h]) for h in header) + "\n" for r in rows)
    write_text_atomic(out / "results.csv", text)
    summary = summarize(rows)
    write_text_atomic(out / "summary.md", f"Pretrained from: {init_from}\n\n{summary}\n")
    from fer_lightning.evaluation.plots import plot_ablation

    plot_ablation(rows, out / "ablation.png")
    print(f"\n{summary}\n\nresults: {out / 'results.csv'}\nplot:    {out / 'ablation.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
