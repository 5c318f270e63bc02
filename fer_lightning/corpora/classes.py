"""Putting a corpus's own emotion classes onto a run's class list (``data.class_names``).

Corpora spell one emotion many ways (AffectNet ``Happy``, RAF-DB ``Happiness``, FER2013
``Happy``, ABAW ``Happiness``, FER+ ``happiness``); they are matched by name, case aside, through
the common synonyms below, so that one run can mix corpora. A corpus class that matches none of
the run's is an error naming it, unless the run leaves it out on purpose (``drop``): then its
images or frames are unlabelled and counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# spelling -> the name it stands for (adjective and noun forms of one emotion)
SYNONYMS: dict[str, str] = {
    "happy": "happiness", "joy": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "surprised": "surprise",
    "fearful": "fear", "afraid": "fear", "scared": "fear",
    "disgusted": "disgust",
    "contemptuous": "contempt",
    "neutrality": "neutral",
}


def canonical_class(name: str) -> str:
    """``name`` lower-cased, stripped, and its synonym's common form (``Happy`` -> ``happiness``)."""
    key = str(name).strip().lower()
    return SYNONYMS.get(key, key)


def class_index_map(native: Sequence[str], run: Sequence[str], corpus: str, drop: Sequence[str] = (),
                    rename: Mapping[str, str] | None = None) -> np.ndarray:
    """(len(native) + 1,) int64: the run's index of each of the corpus's classes, -1 for a
    dropped one; the last entry is -1 so that indexing with -1 (no label) stays -1.

    Args:
        native: the corpus's classes, in the order of its label indices.
        run: the run's classes, in logit order.
        corpus: its name, for the error message.
        drop: corpus classes to leave unlabelled (any spelling).
        rename: corpus class -> run class, for names the synonyms do not cover.

    Raises:
        ValueError: a corpus class that is neither among the run's classes nor dropped.
    """
    rename = {canonical_class(k): canonical_class(v) for k, v in (rename or {}).items()}
    wanted = {canonical_class(c): i for i, c in enumerate(run)}
    dropped = {canonical_class(c) for c in drop}
    out, unmapped = [], []
    for name in native:
        key = canonical_class(name)
        key = rename.get(key, key)
        if key in wanted:
            out.append(wanted[key])
        elif key in dropped:
            out.append(-1)
        else:
            unmapped.append(str(name))
    if unmapped:
        raise ValueError(f"{corpus}: classes {unmapped} are not among data.class_names {list(run)}: add them to "
                         f"data.class_names, leave them out with data.dataset_args.drop: {unmapped}, or map them "
                         "with data.dataset_args.rename: {corpus class: run class}")
    return np.array([*out, -1], np.int64)
