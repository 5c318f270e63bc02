"""End to end: synth -> decord clips -> AffectModule -> held-out CCC rises well above untrained."""

from __future__ import annotations

import lightning as L
import pytest

from fer_lightning.data.datamodule import AffectDataModule
from fer_lightning.data.synthetic import SynthConfig, generate_corpus
from fer_lightning.models import AffectModule


@pytest.mark.slow
def test_training_learns_affect_of_held_out_subjects(tmp_path):
    root = tmp_path / "corpus"
    generate_corpus(SynthConfig(videos=40, seconds=6.0, fps=25.0, seed=11, size=128, split=(0.6, 0.1, 0.3)),
                    root, workers=2, progress=False)
    L.seed_everything(0, workers=True)
    dm = AffectDataModule(root=str(root), clip_len=16, image_size=48, batch_size=16, num_workers=1, augment=False)
    model = AffectModule(backbone="resnet10t", hidden_size=32, num_layers=1, lr=2e-3, warmup_steps=20, dropout=0.0)
    trainer = L.Trainer(accelerator="cpu", max_epochs=12, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, default_root_dir=tmp_path)
    before = trainer.test(model, datamodule=dm, verbose=False)[0]
    trainer.fit(model, datamodule=dm)
    after = trainer.test(model, datamodule=dm, verbose=False)[0]
    print("held-out CCC before", before, "after", after)
    for name in ("valence", "arousal"):
        assert after[f"test/ccc_{name}"] > before[f"test/ccc_{name}"] + 0.3, (before, after)
        assert after[f"test/ccc_{name}"] > 0.4, after
