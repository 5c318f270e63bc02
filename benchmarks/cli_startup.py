"""How long ``fer-lightning ... --help`` takes: the command line's start-up cost.

Prints one JSON line. Each command runs ``--repeats`` times in a fresh interpreter
(``python -m fer_lightning.cli``, what the ``fer-lightning`` entry point runs); the median
seconds are reported per command, beside the time of a bare ``python -c pass`` and of
``import lightning``. The judged figure is ``ratio``: the slowest ``--help`` among the commands
that do not train (the root, synth, preprocess, data check, predict, evaluate, export, sweep,
ablation) over ``import lightning`` (below 1: those commands no longer pay for Lightning).
``--source DIR`` measures the package of another checkout (put first on PYTHONPATH) with
the same command lines, for a before/after comparison; a command that checkout lacks is null.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TOOLS = [[], ["synth"], ["preprocess"], ["data", "check"], ["predict"], ["evaluate"], ["export"], ["sweep"],
         ["ablation"]]


def seconds(cmd: list[str], repeats: int, env: dict | None = None) -> float | None:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        # from a neutral folder: `python -m` puts the working folder first on sys.path
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            return None  # this installation has no such command
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=None, help="a checkout whose fer_lightning package to measure")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    env = dict(os.environ)
    if args.source:
        env["PYTHONPATH"] = os.pathsep.join([args.source, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cli = [sys.executable, "-m", "fer_lightning.cli"]
    result = {"benchmark": "cli_startup", "source": args.source or "this checkout", "repeats": args.repeats,
              "python_s": seconds([sys.executable, "-c", "pass"], args.repeats),
              "import_lightning_s": seconds([sys.executable, "-c", "import lightning"], args.repeats), "help_s": {}}
    for tool in TOOLS:
        result["help_s"][" ".join(["fer-lightning", *tool, "--help"])] = seconds([*cli, *tool, "--help"], args.repeats,
                                                                                  env)
    result["fit_help_s"] = seconds([*cli, "fit", "--help"], args.repeats, env)
    measured = [s for s in result["help_s"].values() if s is not None]
    result["slowest_tool_help_s"] = max(measured)
    result["ratio"] = round(result["slowest_tool_help_s"] / result["import_lightning_s"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
