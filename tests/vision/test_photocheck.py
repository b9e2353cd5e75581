"""The photo check's measured part, perceptual hash and learned heads (torch-free)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from vision.photocheck import (
    PhotoCheckConfig,
    RejectReason,
    SideHeads,
    SideScores,
    blend_cracked,
    check,
    duplicate,
    hamming,
    measure,
    noise_level,
    perceptual_hash,
)

CFG = PhotoCheckConfig()


def phone_like(w: int = 600, h: int = 800, seed: int = 0) -> Image.Image:
    """A dark rounded slab with an icon grid on a lit, textured table: sharp edges."""
    rng = np.random.default_rng(seed)
    table = (rng.uniform(120, 200, (h, w, 3)) * np.linspace(0.8, 1.0, w)[None, :, None])
    im = Image.fromarray(table.astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((w * 0.2, h * 0.1, w * 0.8, h * 0.9), radius=30, fill=(15, 15, 20))
    for i in range(12):
        x, y = w * 0.27 + (i % 3) * w * 0.16, h * 0.2 + (i // 3) * h * 0.15
        d.rectangle((x, y, x + w * 0.1, y + w * 0.1), fill=tuple(int(v) for v in
                                                                 rng.integers(60, 255, 3)))
    return im


def reencoded(im: Image.Image, scale: float, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.resize((int(im.width * scale), int(im.height * scale))).save(buf, "JPEG",
                                                                      quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def reason(im: Image.Image, scores: SideScores | None = None, slot: str = "front"):
    r = check(measure(im), scores, slot, CFG)  # type: ignore[arg-type]
    return None if r is None else r.reason


def test_a_sharp_well_lit_photo_passes():
    assert reason(phone_like()) is None


@pytest.mark.parametrize(("make", "expected"), [
    (lambda im: im.resize((90, 120)), RejectReason.TOO_SMALL),
    (lambda im: Image.new("RGB", im.size), RejectReason.TOO_DARK),
    (lambda im: Image.eval(im, lambda v: v // 20), RejectReason.TOO_DARK),
    (lambda im: Image.new("RGB", im.size, (255, 255, 255)), RejectReason.OVEREXPOSED),
    (lambda im: Image.eval(im, lambda v: min(255, v * 20)), RejectReason.OVEREXPOSED),
    (lambda im: im.filter(ImageFilter.GaussianBlur(0.015 * max(im.size))), RejectReason.BLURRY),
])
def test_measured_reasons(make, expected):
    assert reason(make(phone_like())) == expected


def noisy(im: Image.Image, std: float, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    a = np.asarray(im, np.float32)
    a = a + rng.normal(0, std * 255, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("std", [0.02, 0.05, 0.1])
def test_the_noise_level_is_the_noise_std_whatever_the_edges(std):
    flat = Image.new("L", (256, 192), 128)
    assert noise_level(np.asarray(flat)) == 0.0
    assert noise_level(np.asarray(noisy(flat, std))) == pytest.approx(std, rel=0.15)
    # a sharp photo's edges do not read as noise; the same photo with noise added does
    sharp = Image.new("L", (256, 192), 170)
    d = ImageDraw.Draw(sharp)
    d.rounded_rectangle((50, 20, 206, 172), radius=12, fill=15)
    for i in range(12):
        d.rectangle((70 + (i % 3) * 40, 35 + (i // 3) * 34, 94 + (i % 3) * 40,
                     59 + (i // 3) * 34), fill=60 + 15 * i)
    assert noise_level(np.asarray(sharp)) == 0.0
    assert noise_level(np.asarray(noisy(sharp, std, seed=1))) == pytest.approx(std, rel=0.25)


def test_a_grainy_photo_is_noisy_and_a_hard_compressed_one_compressed():
    from vision.preprocess import open_image_sized

    # measured at the working size (256 px), where a larger photo's noise is averaged down
    assert reason(noisy(phone_like(192, 256), 0.15)) == RejectReason.NOISY
    assert reason(noisy(phone_like(), 0.15)) is None
    assert reason(noisy(phone_like(192, 256), 0.02)) is None
    for quality, expected in ((90, None), (31, None), (25, RejectReason.COMPRESSED)):
        buf = io.BytesIO()
        phone_like().save(buf, "JPEG", quality=quality)
        image, _ = open_image_sized(buf.getvalue(), draft_size=224)
        assert measure(image).jpeg_quality == quality
        assert reason(image) == expected, quality
    png = io.BytesIO()
    phone_like().save(png, "PNG")
    assert measure(open_image_sized(png.getvalue())[0]).jpeg_quality is None
    advice = check(measure(noisy(phone_like(192, 256), 0.15)), None, "front", CFG)
    assert advice is not None and "brighter light" in advice.detail


def test_the_retake_advice_names_the_threshold_and_the_side():
    r = check(measure(phone_like().resize((60, 80))), None, "back", CFG)
    assert r is not None and f"{CFG.min_side_px} pixels" in r.detail
    r = check(measure(phone_like()), SideScores(phone=0.9, back=0.95), "front", CFG)
    assert r is not None and r.reason == RejectReason.WRONG_SIDE
    assert "back of the phone" in r.detail and r.slot == "front"
    assert duplicate("back", CFG).reason == RejectReason.DUPLICATE


@pytest.mark.parametrize(("scores", "slot", "expected"), [
    (SideScores(phone=0.2, back=0.1), "front", RejectReason.NOT_A_PHONE),
    (SideScores(phone=0.01, back=0.1), "back", RejectReason.NOT_A_PHONE),
    (SideScores(phone=0.9, back=0.1), "front", None),
    (SideScores(phone=0.9, back=0.1), "back", RejectReason.WRONG_SIDE),
    (SideScores(phone=0.9, back=0.8), "back", None),
])
def test_learned_reasons(scores, slot, expected):
    assert reason(phone_like(), scores, slot) == expected


def test_measured_reasons_come_before_learned_ones():
    dark = Image.new("RGB", (400, 300))
    assert reason(dark, SideScores(phone=0.0, back=1.0)) == RejectReason.TOO_DARK


def test_perceptual_hash_survives_reencoding_and_resizing_but_tells_photos_apart():
    a, b = phone_like(seed=1), phone_like(seed=2).rotate(90, expand=True)
    ha = perceptual_hash(a)
    assert len(ha) == 16
    for scale, quality in ((0.5, 60), (0.25, 40), (1.5, 95)):
        assert hamming(ha, perceptual_hash(reencoded(a, scale, quality))) \
            <= CFG.duplicate_max_distance
    assert hamming(ha, perceptual_hash(b)) > CFG.duplicate_max_distance
    assert measure(a).phash == ha


def test_side_heads_round_trip_and_score(tmp_path):
    rng = np.random.default_rng(0)
    c = 8
    heads = SideHeads({"mean": np.zeros(c), "scale": np.ones(c),
                       "phone_coef": np.eye(c)[0] * 10, "phone_intercept": np.zeros(1),
                       "back_coef": np.eye(c)[1] * 10, "back_intercept": np.zeros(1)})
    heads.save(tmp_path / "h.npz")
    loaded = SideHeads.load(tmp_path / "h.npz")
    x = rng.normal(size=(3, c))
    x[0, :2] = (1, -1)  # a phone, front
    x[1, :2] = (-1, 1)  # no phone
    got = loaded.scores(x)
    assert got[0].phone > 0.99 and got[0].back < 0.01 and got[0].side("front") > 0.99
    assert got[1].phone < 0.01
    with pytest.raises(ValueError, match="back_coef"):
        SideHeads({k: v for k, v in heads.arrays.items() if k != "back_coef"})
    assert not loaded.has_cracked and got[0].cracked is None


def test_the_cracked_probe_is_an_optional_third_head(tmp_path):
    c = 4
    arrays = {"mean": np.zeros(c), "scale": np.ones(c), "phone_coef": np.zeros(c),
              "phone_intercept": np.zeros(1), "back_coef": np.zeros(c),
              "back_intercept": np.zeros(1), "cracked_coef": np.eye(c)[2] * 10,
              "cracked_intercept": np.zeros(1)}
    SideHeads(arrays).save(tmp_path / "h.npz")
    heads = SideHeads.load(tmp_path / "h.npz")
    assert heads.has_cracked
    got = heads.scores(np.array([[0, 0, 1, 0], [0, 0, -1, 0]], float))
    assert got[0].cracked is not None and got[0].cracked > 0.99
    assert got[1].cracked is not None and got[1].cracked < 0.01


def test_blend_cracked_mixes_p_cracked_and_keeps_the_other_proportions():
    p = np.array([0.5, 0.2, 0.1, 0.2])
    got = blend_cracked(p, 0.8, 0.3)
    assert got[-1] == pytest.approx(0.7 * 0.2 + 0.3 * 0.8)
    assert got.sum() == pytest.approx(1.0)
    assert got[:3] / got[:3].sum() == pytest.approx(p[:3] / p[:3].sum())
    assert blend_cracked(p, 0.9, 0.0) == pytest.approx(p)  # weight 0: the model's own
    # the model sure of a crack, the probe not: the rest is shared evenly
    sure = blend_cracked(np.array([0.0, 0.0, 0.0, 1.0]), 0.0, 0.5)
    assert sure == pytest.approx([1 / 6, 1 / 6, 1 / 6, 0.5])


def test_a_sure_not_a_phone_comes_before_blur_a_doubtful_one_after():
    flat = Image.new("RGB", (600, 800), (120, 100, 80))  # an empty table: no edges at all
    assert reason(flat) == RejectReason.BLURRY
    assert reason(flat, SideScores(phone=0.01, back=0.5)) == RejectReason.NOT_A_PHONE
    blurred = phone_like().filter(ImageFilter.GaussianBlur(12))
    assert reason(blurred, SideScores(phone=0.3, back=0.1)) == RejectReason.BLURRY
