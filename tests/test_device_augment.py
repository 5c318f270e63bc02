"""Batch augmentation on the device: geometry against OpenCV, colour against hand formulas,
one draw per clip, the DataModule hook (training batches only)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fer_lightning.data.device_augment import DeviceClipAugment, build_device_augment

RGB_TO_Y = np.array([0.299, 0.587, 0.114])


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB float image in 0..255 (bilinear interpolation is then nearly exact)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255)


def params(b: int, **kw) -> dict[str, torch.Tensor]:
    base = dict(flip=0.0, scale=1.0, rotate=0.0, tx=0.0, ty=0.0, brightness=0.0, contrast=1.0, saturation=1.0, hue=0.0)
    base.update(kw)
    out = {k: torch.full((b,), float(v), dtype=torch.float64) for k, v in base.items()}
    out["flip"] = out["flip"].bool()
    return out


def as_clip(img: np.ndarray, t: int = 2) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).repeat(t, 1, 1, 1).unsqueeze(0)


@pytest.mark.parametrize("flip,scale,rotate,tx,ty", [(0, 1.0, 0.0, 0.0, 0.0), (1, 1.07, 7.5, 0.04, -0.05),
                                                     (0, 0.93, -6.0, -0.03, 0.02), (1, 1.0, 0.0, 0.0, 0.0)])
def test_geometry_equals_opencv_warp_affine(flip, scale, rotate, tx, ty):
    h, w = 48, 64  # not square: the normalised-coordinate algebra must keep pixels square
    img = smooth_image(h, w)
    out = DeviceClipAugment()(as_clip(img), params(1, flip=flip, scale=scale, rotate=rotate, tx=tx, ty=ty))[0, 0]
    # the reference: OpenCV's forward map dst = A (src - c) + c + t, built here by hand
    rad = np.deg2rad(rotate)
    a = scale * np.array([[np.cos(rad), -np.sin(rad)], [np.sin(rad), np.cos(rad)]]) @ np.diag([-1.0 if flip else 1.0, 1.0])
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    m = np.hstack([a, (c + [tx * w, ty * h] - a @ c)[:, None]])
    ref = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # compare where the source point lies well inside the image (borders blend with the black fill)
    ys, xs = np.mgrid[0:h, 0:w]
    src = np.linalg.solve(a, np.stack([xs.ravel(), ys.ravel()]) - (c + [tx * w, ty * h])[:, None]) + c[:, None]
    inside = ((src[0] > 1) & (src[0] < w - 2) & (src[1] > 1) & (src[1] < h - 2)).reshape(h, w)
    assert inside.mean() > 0.7
    diff = np.abs(out.permute(1, 2, 0).numpy() - ref)[inside]
    assert diff.max() < 1.0, diff.max()  # OpenCV quantises coordinates to 1/32 pixel
    if scale == 1.0 and rotate == 0.0:  # a pure flip or identity samples pixel centres: exact
        expect = img[:, ::-1] if flip else img
        np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), expect, atol=1e-3)


def test_colour_follows_the_hand_formulas():
    rng = np.random.default_rng(1)
    img = rng.uniform(20, 230, (16, 16, 3)).astype(np.float32)
    aug = DeviceClipAugment()
    luma = img @ RGB_TO_Y

    # saturation 0: every pixel becomes its luminance, grey
    grey = aug(as_clip(img), params(1, saturation=0.0))[0, 0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(grey, np.repeat(luma[..., None], 3, -1), atol=1e-3)

    # brightness and contrast: c x + (1 - c) mean(Y of the clip) + 255 b, clipped to 0..255
    b, c = 0.1, 1.15
    out = aug(as_clip(img), params(1, brightness=b, contrast=c))[0, 0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, np.clip(c * img + (1 - c) * luma.mean() + 255 * b, 0, 255), atol=1e-3)

    # hue: the luminance stays, the chroma (I, Q) keeps its length and turns by the angle
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    turned = aug(as_clip(img), params(1, hue=12.0))[0, 0].permute(1, 2, 0).numpy()
    before, after = img.reshape(-1, 3) @ yiq.T, turned.reshape(-1, 3) @ yiq.T
    keep = (turned.reshape(-1, 3) > 0.5).all(1) & (turned.reshape(-1, 3) < 254.5).all(1)  # unclipped pixels
    np.testing.assert_allclose(after[keep, 0], before[keep, 0], atol=1e-3)
    np.testing.assert_allclose(np.hypot(after[keep, 1], after[keep, 2]), np.hypot(before[keep, 1], before[keep, 2]),
                               atol=1e-3)
    angle = np.rad2deg(np.arctan2(after[keep, 2], after[keep, 1]) - np.arctan2(before[keep, 2], before[keep, 1]))
    np.testing.assert_allclose((angle + 180) % 360 - 180, 12.0, atol=1e-2)
    # grey stays grey whatever the hue and saturation
    flat = np.full((8, 8, 3), 90.0, np.float32)
    np.testing.assert_allclose(aug(as_clip(flat), params(1, hue=15.0, saturation=1.15)).numpy(), 90.0, atol=1e-3)


def test_one_draw_per_clip_and_clips_differ():
    img = smooth_image(32, 32, seed=3)
    clips = as_clip(img, t=6).repeat(8, 1, 1, 1, 1).round().to(torch.uint8)
    aug = DeviceClipAugment(flip=0.5, affine=1.0, photometric=1.0)
    out = aug(clips)
    assert out.shape == clips.shape and out.dtype == torch.float32
    assert (out >= 0).all() and (out <= 255).all()
    for clip in out:  # identical frames stay identical inside a clip
        assert torch.equal(clip, clip[:1].expand_as(clip))
    assert len({clip[0].numpy().tobytes() for clip in out}) == len(out)
    # the seed repeats the draws
    aug.seed(5)
    first = aug(clips)
    aug.seed(5)
    assert torch.equal(first, aug(clips))


def test_draws_follow_the_probabilities_and_ranges():
    aug = DeviceClipAugment(flip=0.5, affine=0.3, photometric=0.8)
    p = aug.draw(20_000)
    assert abs(p["flip"].double().mean() - 0.5) < 0.02
    assert abs((p["rotate"] != 0).double().mean() - 0.3) < 0.02
    assert abs((p["contrast"] != 1).double().mean() - 0.8) < 0.02
    assert abs((p["hue"] != 0).double().mean() - 0.4) < 0.02
    assert p["scale"].min() >= 0.92 and p["scale"].max() <= 1.08 and p["rotate"].abs().max() <= 8
    assert p["tx"].abs().max() <= 0.05 and p["brightness"].abs().max() <= 0.2
    off = DeviceClipAugment(flip=0.0, affine=0.0, photometric=0.0)
    clips = torch.randint(0, 256, (3, 4, 3, 24, 24), dtype=torch.uint8)
    torch.testing.assert_close(off(clips), clips.float(), atol=1e-3, rtol=0)  # identity up to float rounding


def test_build_refuses_an_albumentations_pipeline():
    assert build_device_augment(False) is None
    assert isinstance(build_device_augment(True), DeviceClipAugment)
    assert build_device_augment({"flip": 0.0}).p_flip == 0.0
    with pytest.raises(ValueError, match="augment_on: loader"):
        build_device_augment({"transform": {"__class_fullname__": "Compose"}})
    with pytest.raises(ValueError, match="probability"):
        DeviceClipAugment(flip=1.5)


def test_datamodule_augments_training_batches_on_the_device_only(tiny_corpus):
    from types import SimpleNamespace

    from fer_lightning.data.datamodule import AffectDataModule

    common = dict(root=str(tiny_corpus), clip_len=4, image_size=32, batch_size=4, num_workers=0, train_reader="random")
    plain = AffectDataModule(augment=False, **common)
    on_device = AffectDataModule(augment={"flip": 1.0, "affine": 0.0, "photometric": 0.0}, augment_on="device", **common)
    plain.setup()
    on_device.setup()
    torch.manual_seed(0)
    a = next(iter(plain.train_dataloader()))
    torch.manual_seed(0)
    b = next(iter(on_device.train_dataloader()))
    assert torch.equal(a["frames"], b["frames"])  # the workers no longer augment
    on_device.trainer = SimpleNamespace(training=True, global_rank=0)
    flipped = on_device.on_after_batch_transfer(dict(b), 0)["frames"]
    torch.testing.assert_close(flipped, a["frames"].flip(-1).float())
    on_device.trainer = SimpleNamespace(training=False, global_rank=0)  # validation, test, predict: untouched
    assert torch.equal(on_device.on_after_batch_transfer(dict(b), 0)["frames"], b["frames"])
    with pytest.raises(ValueError, match="augment_on"):
        AffectDataModule(augment_on="gpu", **common)


def test_lightning_fit_sees_augmented_training_batches_and_plain_validation(tiny_corpus):
    """Lightning calls the DataModule's hook: training steps get float augmented frames,
    validation steps the loader's uint8 frames."""
    import lightning as L

    from fer_lightning.data.datamodule import AffectDataModule
    from fer_lightning.models import AffectModule

    seen: dict[str, set] = {"train": set(), "val": set()}

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen["train"].add(batch["frames"].dtype)

        def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
            seen["val"].add(batch["frames"].dtype)

    dm = AffectDataModule(root=str(tiny_corpus), clip_len=4, image_size=32, batch_size=4, num_workers=0,
                          augment_on="device")
    model = AffectModule(warmup_steps=1, net=dict(backbone="test_resnet", hidden_size=8, num_layers=1))
    trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, num_sanity_val_steps=0,
                        val_check_interval=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[Record()])
    trainer.fit(model, dm)
    assert seen == {"train": {torch.float32}, "val": {torch.uint8}}
