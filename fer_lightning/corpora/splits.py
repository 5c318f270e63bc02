"""Subject-disjoint splits for corpora without an official one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


def subject_splits(subjects: Iterable[str], fractions: Sequence[float] = (0.7, 0.15, 0.15),
                   seed: int = 0) -> dict[str, str]:
    """Assign each subject to train/val/test so that no subject is in two splits.

    Subjects are shuffled with ``seed`` and cut by ``fractions`` (normalised); every split
    with a positive fraction gets at least one subject when there are enough of them. The
    same subjects and seed always give the same assignment.
    """
    unique = sorted(set(subjects))
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"split fractions must be three non-negative numbers, got {tuple(fractions)}")
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    frac = np.asarray(fractions, np.float64) / sum(fractions)
    counts = np.floor(frac * len(unique)).astype(int)
    for k in np.argsort(-(frac * len(unique) - counts)):  # largest remainders first
        if counts.sum() < len(unique):
            counts[k] += 1
    for k in range(3):  # a wanted split never ends up empty if another can spare a subject
        if frac[k] > 0 and counts[k] == 0:
            donor = int(np.argmax(counts))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[k] += 1
    out, start = {}, 0
    for name, c in zip(SPLIT_NAMES, counts, strict=True):
        for s in order[start:start + c]:
            out[s] = name
        start += c
    return out


def carve_held_out(records: list, fraction: float, seed: int = 0) -> tuple[list, list[str]]:
    """A test split for a corpus that has no labelled one (RECOLA, SEWA and Aff-Wild2 publish no
    test labels): when no record is in ``test``, a subject-disjoint ``fraction`` of the training
    subjects (at least one, drawn with ``seed``) moves there, so that the final figures come from
    subjects that neither training, model selection nor post-processing saw. Returns the
    records (unchanged when a test split exists or ``fraction`` is 0) and the subjects moved."""
    import dataclasses

    if fraction <= 0 or any(r.split == "test" for r in records):
        return records, []
    if not 0 < fraction < 1:
        raise ValueError(f"data.held_out_from_train must lie in [0, 1), got {fraction}")
    subjects = sorted({r.subject for r in records if r.split == "train"})
    if len(subjects) < 2:
        return records, []  # nothing to spare: training keeps its only subject
    k = min(len(subjects) - 1, max(1, round(fraction * len(subjects))))
    moved = sorted(np.random.default_rng(seed).permutation(subjects)[:k].tolist())
    out = [dataclasses.replace(r, split="test") if r.split == "train" and r.subject in moved else r
           for r in records]
    return out, moved
