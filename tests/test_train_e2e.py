"""End to end: synth -> decord clips -> AffectModule -> held-out CCC rises well above untrained."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_training_learns_affect_of_held_out_subjects(trained_affect_model):
    before, after = trained_affect_model.before, trained_affect_model.after
    print("held-out CCC before", before, "after", after)
    for name in ("valence", "arousal"):
        assert after[f"test/ccc_{name}"] > before[f"test/ccc_{name}"] + 0.3, (before, after)
        assert after[f"test/ccc_{name}"] > 0.4, after
