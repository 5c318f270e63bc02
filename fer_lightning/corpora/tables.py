"""Reading annotation and manifest tables with every row checked against the header.

``pandas.read_csv`` takes a file whose rows hold one value more than the header names as a
file with an index column: under ``valence,arousal`` the rows ``0.1,0.2,0.0`` become valence
0.2 and arousal 0.0, with no warning. A row with a value too few is filled with NaN, which
looks like an unannotated frame. Every corpus reader goes through :func:`read_table`, which
counts each row's values first and names the file and line of the first that does not fit.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from fer_lightning.errors import UserInputError


class TableRowError(UserInputError):
    """A row of a label or manifest file has more or fewer values than its header names."""


def check_rows(path: str | Path, sep: str = ",", names: Sequence[str] | None = None) -> int:
    """Raise :class:`TableRowError` at the first non-blank row of ``path`` whose number of
    values differs from the header's (the first row), or from ``names`` for a file without a
    header; return the number of columns."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        rows = csv.reader(fh, delimiter=sep)
        expected = list(names) if names is not None else next((r for r in rows if r), None)
        if expected is None:
            raise TableRowError(f"{path}: the file is empty (no header row)")
        width = len(expected)
        what = f"the header names {width} ({sep.join(expected)})" if names is None else \
            f"{width} are expected ({sep.join(expected)})"
        for row in rows:
            if row and len(row) != width:
                raise TableRowError(f"{path}, line {rows.line_num}: {len(row)} values where {what}: "
                                    f"{sep.join(row)[:200]!r}; fix or remove that row")
    return width


def read_table(path: str | Path, sep: str = ",", names: Sequence[str] | None = None, **read_csv_args) -> pd.DataFrame:
    """``pandas.read_csv(path)`` after :func:`check_rows`: the first row is the header (or
    ``names`` for a file without one), every column is a column (never an index), and a file
    whose rows do not fit it raises :class:`TableRowError` with its name and line."""
    check_rows(path, sep, names)
    if names is not None:
        read_csv_args.update(header=None, names=list(names))
    return pd.read_csv(path, sep=sep, index_col=False, **read_csv_args)
