"""A run stopped after N steps and resumed from its last checkpoint ends exactly where an
uninterrupted run ends: same global step, same weights (CPU, deterministic)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from fer_lightning.data.datamodule import AffectDataModule
from fer_lightning.models import AffectModule


class StopAfterEpoch(L.Callback):
    """An interruption: the run ends after this epoch, with the schedule of the full run."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def run(root, tmp, max_epochs, ckpt_path=None, seed=0, stop_after=None, augment_on="loader"):
    L.seed_everything(seed, workers=True)
    model = AffectModule(lr=5e-3, warmup_steps=2, net=dict(backbone="test_resnet", hidden_size=8, num_layers=1, dropout=0.3))
    dm = AffectDataModule(root=str(root), clip_len=4, image_size=32, batch_size=2, num_workers=0, augment=True,
                          augment_on=augment_on)
    ckpt = ModelCheckpoint(dirpath=tmp / "ckpt", save_last=True, every_n_epochs=1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=max_epochs, limit_train_batches=3, limit_val_batches=0,
                        num_sanity_val_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        deterministic=True, default_root_dir=tmp,
                        callbacks=[ckpt] + ([StopAfterEpoch(stop_after)] if stop_after is not None else []))
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return trainer, model


@pytest.mark.parametrize("augment_on", ["loader", "device"])
def test_resumed_run_equals_uninterrupted_run(tiny_corpus, tmp_path, augment_on):
    whole_trainer, whole = run(tiny_corpus, tmp_path / "whole", max_epochs=3, augment_on=augment_on)
    cut_trainer, _ = run(tiny_corpus, tmp_path / "cut", max_epochs=3, stop_after=0, augment_on=augment_on)
    assert cut_trainer.global_step == 3  # stopped after 3 of 9 steps
    last = tmp_path / "cut" / "ckpt" / "last.ckpt"
    assert last.is_file()
    resumed_trainer, resumed = run(tiny_corpus, tmp_path / "cut", max_epochs=3, ckpt_path=str(last), seed=123,
                                   augment_on=augment_on)
    assert resumed_trainer.global_step == whole_trainer.global_step == 9
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    torch.load(last, weights_only=True)  # the checkpoint stays loadable without running code


def test_a_nan_loss_stops_with_a_message_and_the_last_good_weights(tiny_corpus, tmp_path):
    import pytest

    L.seed_everything(0)
    model = AffectModule(net=dict(backbone="test_resnet", hidden_size=8, num_layers=1))
    real_loss = model.loss
    calls = []

    def loss(*args):
        calls.append(1)
        value = real_loss(*args)
        return value * float("nan") if len(calls) == 3 else value

    model.loss = loss
    dm = AffectDataModule(root=str(tiny_corpus), clip_len=4, image_size=32, batch_size=2, num_workers=0)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=5, limit_val_batches=0, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(FloatingPointError, match=r"training loss is nan at step 2 .*last-good.ckpt"):
        trainer.fit(model, datamodule=dm)
    saved = torch.load(tmp_path / "checkpoints" / "last-good.ckpt", weights_only=True)
    assert saved["global_step"] == 2
    for name, value in saved["state_dict"].items():
        assert torch.equal(value, model.state_dict()[name]), name  # the weights as they were


def test_last_checkpoint_is_the_last_epoch_even_when_the_metric_stops_improving(tmp_path):
    from lightning.pytorch.demos.boring_classes import BoringModel

    from fer_lightning.training.callbacks import ModelCheckpoint

    class Worsening(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("val/score", float(self.current_epoch))  # best at epoch 0 with mode="min"
            return super().validation_step(batch, batch_idx)

    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val/score", mode="min", save_last=True, filename="best")
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[ckpt])
    trainer.fit(Worsening())
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    best = torch.load(tmp_path / "best.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 6)  # Lightning 2.6's own: (0, 2), a copy of best
    assert best["global_step"] == 2
