"""Names every stage shares: the training tasks and the default emotion classes.

It sits below everything else, so that corpora, training data and the model agree on these
names without importing each other (or the synthetic corpus generator).
"""

from __future__ import annotations

TASKS: tuple[str, ...] = ("finetune", "pretrain", "selfsup")
"""``finetune``: continuous targets (valence, arousal), 1 - CCC; ``pretrain``: emotion classes;
``selfsup``: the face feature extractor alone, from frames without labels."""

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "surprised", "angry", "sad", "calm")
"""The default emotion classes of pretraining (the synthetic corpus draws these)."""
