"""Experiment files that compose others: ``compose: [recipe.yaml, data/corpus.yaml]``.

A file with a top-level ``compose:`` list stands for those files layered in order (paths
relative to the file itself; a listed file may compose others), then its own remaining keys on
top, exactly as ``--config A --config B --config REST`` would layer them. So
``experiments/finetune_recola.yaml`` is the fine-tuning recipe plus RECOLA's data file, and
every command line that names it keeps working (``fit``, ``validate``, ``test``, ``evaluate``,
``data check``, the sweeps and the SLURM templates).

jsonargparse's own ``config:`` key inside a file cannot do this: a group the file sets again
(``model:``) replaces the included group, defaults and all, instead of layering on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from fer_lightning.errors import UserInputError

KEY = "compose"


def expand_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> list[str]:
    """The ``--config`` values that ``path`` stands for: itself when it composes nothing, else
    the files it lists (each expanded in turn) and then its remaining keys as a YAML string."""
    path = Path(path)
    if not path.is_file():
        return [str(path)]  # not a file (a YAML string, or a missing file the parser names)
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return [str(path)]  # the parser reports the syntax error with its own message
    if not isinstance(content, dict) or KEY not in content:
        return [str(path)]
    listed = content.pop(KEY)
    if isinstance(listed, str):
        listed = [listed]
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise UserInputError(f"{path}: {KEY}: must list experiment files, e.g. [finetune.yaml, data/recola.yaml]")
    me = path.resolve()
    if me in _seen:
        raise UserInputError(f"{path}: {KEY}: the files compose each other in a loop: "
                         + " -> ".join(map(str, (*_seen, me))))
    out: list[str] = []
    for item in listed:
        part = (path.parent / item) if not Path(item).is_absolute() else Path(item)
        if not part.is_file():
            raise UserInputError(f"{path}: {KEY}: no such file {item} (paths are relative to {path.parent})")
        out += expand_config(part, (*_seen, me))
    if content:
        out.append(yaml.safe_dump(content, sort_keys=False))
    return out


def expand_args(args: Sequence[str]) -> list[str]:
    """``args`` with every ``--config FILE`` (or ``--config=FILE``) that composes others
    replaced by the ``--config`` values it stands for (:func:`expand_config`)."""
    out: list[str] = []
    i = 0
    args = list(args)
    while i < len(args):
        arg = args[i]
        if arg == "--config" and i + 1 < len(args):
            out += [a for value in expand_config(args[i + 1]) for a in ("--config", value)]
            i += 2
            continue
        if arg.startswith("--config="):
            out += [a for value in expand_config(arg.split("=", 1)[1]) for a in ("--config", value)]
        else:
            out.append(arg)
        i += 1
    return out
