"""W&B sweeps: the command a W&B agent runs for a suggested configuration, and a local runner
that drives W&B's own open-source sweep engine (PyPI ``sweeps``, the code behind wandb.ai's
Bayesian, random and grid search) without an account or network.

Online (``make sweep``): ``wandb sweep FILE`` on wandb.ai, then ``wandb agent`` processes, each
running the sweep's ``command:`` with the suggested ``${args}``; the server stops weak runs
(``early_terminate``). Offline (``make sweep-local``)::

    fer-lightning sweep experiments/sweeps/finetune_synthetic.yaml --runs 4 [-- fit overrides]

asks the engine for a configuration, runs the same command line the agent would run (W&B
offline), reads the target metric from the run's W&B file, feeds it back for the next
suggestion, and writes ``runs/sweeps/<sweep>/results.csv`` and ``results.png``. Runs go one
after another, each to its end: early termination needs a live agent and server. Several such
agents may run at once on one sweep (``sbatch --array=0-7 experiments/slurm/sweep_agents.sbatch
experiments/sweeps/<sweep>.yaml``): they share ``runs/sweeps/<sweep>/`` on the shared file
system, taking suggestions under a lock, the way wandb.ai's agents share its server. Each run
gets its own run folder, ``runs/<experiment>/sweep-<sweep>/<run id>``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from fer_lightning.io import atomic_path, write_text_atomic


def load_sweep(path: str | Path) -> dict:
    """Read a sweep file and check it against W&B's sweep schema (a clear error if it is off)."""
    import sweeps

    config = yaml.safe_load(Path(path).read_text())
    problems = sweeps.schema_violations_from_proposed_config(config)
    if problems:
        raise ValueError(f"{path} is not a valid W&B sweep: " + "; ".join(problems))
    if "command" not in config or "${args}" not in config["command"]:
        raise ValueError(f"{path}: the sweep's command must pass the suggested values with ${{args}}")
    return config


def agent_command(sweep: dict, params: dict[str, dict[str, Any]], run_params_file: str = "") -> list[str]:
    """The command line ``wandb agent`` builds for a run with ``params`` ({name: {"value": v}}):
    the sweep's ``command:`` with its macros (``${env}``, ``${args}``, ``${envvar:NAME}``, ...)
    filled in by wandb's own functions, in the agent's way."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    command = sweep_utils.create_sweep_command(list(sweep["command"]))
    macros = sweep_utils.create_sweep_command_args({"args": params})
    macros.update(interpreter=["python"], program=[str(sweep.get("program", ""))], env=["/usr/bin/env"],
                  args_json_file=[run_params_file])
    out: list[str] = []
    for chunk in map(str, command):
        out += (macros.get(chunk[2:-1]) or []) if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    return out


def find_run_file(search_root: Path, run_id: str) -> Path | None:
    """The offline W&B run file of ``run_id`` under ``search_root`` (newest if resumed)."""
    found = sorted(search_root.rglob(f"offline-run-*-{run_id}/run-{run_id}.wandb"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (``flock``), held by one agent at a time, across processes
    and nodes that share the file system."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_runs(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(state.glob("run-*.json"))]


def _as_sweep_run(record: dict):
    import sweeps

    return sweeps.SweepRun(name=record["run_id"], state=sweeps.RunState(record["state"]),
                           config={k: {"value": v} for k, v in record["params"].items()},
                           summaryMetrics=record.get("summary") or {}, sampledHistory=record.get("history") or [])


def run_local(path: str | Path, runs: int, extra: Sequence[str] = (), out: str | Path | None = None,
              cwd: str | Path = ".") -> list[dict]:
    """One agent of the sweep at ``path``: ``runs`` configurations, one after another (see the
    module docs). Agents started side by side (SLURM array tasks, several shells) share the
    sweep's folder: each takes the next suggestion under a file lock, so that the engine sees
    every run already finished or running and no two agents run the same configuration.

    ``extra`` CLI overrides go after the agent's command (for a quick check: fewer epochs);
    they may not set a swept parameter. Returns one dict per run of this agent: id, params,
    metric, exit code; ``results.csv``/``results.png`` in the folder cover every agent's runs."""
    import sweeps
    from wandb.sdk.lib.runid import generate_id

    sweep = load_sweep(path)
    metric, goal = sweep["metric"]["name"], sweep["metric"].get("goal", "minimize")
    swept = set(sweep["parameters"])
    clash = [a for a in extra if a.lstrip("-").split("=")[0] in swept]
    if clash:
        raise ValueError(f"extra overrides may not set swept parameters: {clash}")
    name = Path(path).stem
    out = Path(out or Path(cwd) / "runs" / "sweeps" / name)
    state = out / "runs"
    state.mkdir(parents=True, exist_ok=True)
    lock = out / ".lock"
    results: list[dict] = []
    for i in range(runs):
        with _locked(lock):
            history = [_as_sweep_run(r) for r in _load_runs(state)]
            suggestion = sweeps.next_run(sweep, history, validate=True)
            if suggestion is None:  # a grid that is done
                break
            run_id = generate_id()
            params = {k: _plain(v["value"]) for k, v in suggestion.config.items()}
            record = {"run_id": run_id, "state": "running", "params": params,
                      "agent": f"{socket.gethostname()}:{os.getpid()}"}
            write_text_atomic(state / f"run-{run_id}.json", json.dumps(record, indent=1) + "\n")
        params_file = out / f"config-{run_id}.yaml"
        write_text_atomic(params_file, yaml.safe_dump({k: {"value": v} for k, v in params.items()}))
        cmd = [*agent_command(sweep, suggestion.config, str(params_file)), *extra]
        print(f"[sweep {name}] run {i + 1}/{runs} ({run_id}): {' '.join(cmd)}", flush=True)
        # the run's own folder comes from these (fer-lightning fit: runs/<experiment>/sweep-<name>/<run id>)
        env = dict(os.environ, WANDB_RUN_ID=run_id, WANDB_SWEEP_PARAM_PATH=str(params_file), FER_SWEEP_ID=name)
        env.setdefault("WANDB_MODE", "offline")
        code = subprocess.run(cmd, cwd=cwd, env=env).returncode
        run_file = find_run_file(Path(cwd) / "runs", run_id)
        from fer_lightning.training.loggers import (
            read_run,  # wandb and Lightning: only once a run ended
        )

        run = read_run(run_file) if run_file else {"summary": {}, "history": []}
        value = run["summary"].get(metric)
        record |= {"state": "finished" if code == 0 else "failed", "exit_code": code, "run_file": str(run_file or ""),
                   "summary": {k: v for k, v in run["summary"].items() if isinstance(v, int | float | str | bool)},
                   "history": [{k: v for k, v in row.items() if isinstance(v, int | float)}
                               for row in run["history"] if metric in row]}
        with _locked(lock):
            write_text_atomic(state / f"run-{run_id}.json", json.dumps(record, indent=1, default=float) + "\n")
        results.append({"run_id": run_id, "exit_code": code, metric: value, "run_file": str(run_file or ""), **params})
        print(f"[sweep {name}] run {run_id}: exit {code}, {metric} = {value}", flush=True)
    with _locked(lock):
        every = [{"run_id": r["run_id"], "exit_code": r.get("exit_code"), metric: (r.get("summary") or {}).get(metric),
                  "run_file": r.get("run_file", ""), **r["params"]}
                 for r in _load_runs(state) if r["state"] != "running"]
        _write_results(every, out, metric, goal)
    return results


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _write_results(results: list[dict], out: Path, metric: str, goal: str) -> None:
    if not results:
        return
    keys = list(dict.fromkeys(k for r in results for k in r))
    with atomic_path(out / "results.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(results)
    from fer_lightning.evaluation.plots import plot_sweep_results

    plot_sweep_results(results, keys, metric, goal, out / "results.png", out.name)
    print(f"[sweep] results: {out / 'results.csv'}, {out / 'results.png'}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``fer-lightning sweep``: see the module docs."""
    from fer_lightning.cli.parsing import fail, tool_parser

    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = tool_parser("fer-lightning sweep", __doc__)
    p.add_argument("sweep", help="sweep file, e.g. experiments/sweeps/finetune_synthetic.yaml")
    p.add_argument("--runs", type=int, default=4, help="configurations to try, one after another")
    p.add_argument("--out", type=str | None, default=None, help="results folder (null: runs/sweeps/<sweep file name>)")
    a = p.parse_args(argv)
    try:
        results = run_local(a.sweep, a.runs, extra, a.out)
    except ValueError as err:
        fail(p, str(err))
    return 0 if results and all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
