"""The released RandAugment policy: op set, magnitude tables, plan distribution, op behaviour."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from salgl.data.randaugment import (
    FILL,
    MAGNITUDE_LEVELS,
    NUM_OPS,
    OP_PROBABILITY,
    OPS,
    ReleasedRandAugment,
    apply_op,
    magnitude_table,
)
from salgl.errors import SalglError

DRAWS = 20000
COLOUR = (200, 30, 90)  # a uniform colour far from the grey fill


def uniform_image(w: int = 32, h: int = 24) -> Image.Image:
    return Image.new("RGB", (w, h), COLOUR)


def noise_image(w: int = 32, h: int = 24, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


def is_grey(array: np.ndarray) -> np.ndarray:
    return np.all(array == np.array(FILL), axis=-1)


def sample_plans(augment: ReleasedRandAugment, n: int = DRAWS, seed: int = 0) -> list[list]:
    torch.manual_seed(seed)
    return [augment.sample_plan() for _ in range(n)]


def identity_fraction_ok(plans: list[list], sigmas: float = 4.0) -> bool:
    """Whether the share of untouched images matches (1 - p) ** NUM_OPS = 0.25."""
    expected = (1 - OP_PROBABILITY) ** NUM_OPS
    observed = sum(not plan for plan in plans) / len(plans)
    return abs(observed - expected) <= sigmas * math.sqrt(expected * (1 - expected) / len(plans))


@pytest.fixture(scope="module")
def plans() -> list[list]:
    return sample_plans(ReleasedRandAugment())


def test_constants_and_op_set():
    assert OPS == ("Invert", "Cutout", "Sharpness", "AutoContrast", "Posterize", "ShearX",
                   "TranslateX", "TranslateY", "ShearY", "Rotate", "Equalize", "Contrast",
                   "Color", "Solarize", "Brightness")
    assert len(set(OPS)) == 15
    assert (NUM_OPS, OP_PROBABILITY, MAGNITUDE_LEVELS, FILL) == (2, 0.5, 10, (128, 128, 128))


def test_magnitude_tables_match_the_released_policy():
    for op in ("ShearX", "ShearY"):
        np.testing.assert_array_equal(magnitude_table(op), np.linspace(0, 0.3, 10))
        assert magnitude_table(op)[9] == 0.3
    for op in ("TranslateX", "TranslateY"):
        np.testing.assert_array_equal(magnitude_table(op), np.linspace(0, 150 / 331, 10))
        assert magnitude_table(op)[9] == 150 / 331
    np.testing.assert_array_equal(magnitude_table("Rotate"), np.linspace(0, 30, 10))
    for op in ("Color", "Contrast", "Sharpness", "Brightness"):
        np.testing.assert_array_equal(magnitude_table(op), np.linspace(0, 0.9, 10))
    posterize = magnitude_table("Posterize")
    assert posterize.tolist() == [8, 8, 7, 7, 6, 6, 5, 5, 4, 4]
    np.testing.assert_array_equal(posterize, np.round(np.linspace(8, 4, 10)).astype(int))
    solarize = magnitude_table("Solarize")
    np.testing.assert_array_equal(solarize, np.linspace(256, 0, 10))
    assert solarize[0] == 256 and solarize[9] == 0
    cutout = magnitude_table("Cutout")
    assert cutout.tolist() == [0, 2, 4, 7, 9, 11, 13, 16, 18, 20]
    assert all(len(magnitude_table(op)) == MAGNITUDE_LEVELS
               for op in OPS if op not in ("Invert", "AutoContrast", "Equalize"))


def test_magnitude_table_refuses_ops_without_magnitude_and_is_a_copy():
    for op in ("Invert", "AutoContrast", "Equalize", "Nonsense"):
        with pytest.raises(KeyError):
            magnitude_table(op)
    magnitude_table("Rotate")[9] = -1
    assert magnitude_table("Rotate")[9] == 30


def test_identity_plan_fraction_is_a_quarter(plans):
    assert identity_fraction_ok(plans)
    lengths = Counter(len(plan) for plan in plans)
    assert set(lengths) == {0, 1, 2}
    se = math.sqrt(0.25 / DRAWS)
    assert abs(lengths[1] / DRAWS - 0.5) <= 4 * se


def test_identity_check_would_catch_probability_one():
    always = sample_plans(ReleasedRandAugment(probability=1.0), n=2000)
    assert all(len(plan) == NUM_OPS for plan in always)
    assert not identity_fraction_ok(always)


def test_each_op_is_applied_with_frequency_one_in_fifteen(plans):
    counts = Counter(op for plan in plans for op, _, _ in plan)
    assert set(counts) == set(OPS)
    per_image = NUM_OPS * OP_PROBABILITY / len(OPS)
    # per image an op's count is Binomial(2, 1/15): variance 2 * (1/15) * (14/15)
    q = OP_PROBABILITY / len(OPS)
    se = math.sqrt(DRAWS * NUM_OPS * q * (1 - q))
    for op in OPS:
        assert abs(counts[op] - DRAWS * per_image) <= 5 * se, (op, counts[op])


def test_levels_are_one_to_nine_uniform_and_signs_balanced(plans):
    entries = [entry for plan in plans for entry in plan]
    levels = Counter(level for _, level, _ in entries)
    assert set(levels) == set(range(1, 10))
    n = len(entries)
    se = math.sqrt(n * (1 / 9) * (8 / 9))
    for level in range(1, 10):
        assert abs(levels[level] - n / 9) <= 5 * se, (level, levels[level])
    signs = Counter(sign for _, _, sign in entries)
    assert set(signs) == {1, -1}
    assert abs(signs[1] - n / 2) <= 5 * math.sqrt(n / 4)


def test_invert_posterize_solarize():
    image = noise_image()
    src = pixels(image)
    np.testing.assert_array_equal(pixels(apply_op(image, "Invert", 5, 1)), 255 - src)
    np.testing.assert_array_equal(pixels(apply_op(image, "Posterize", 9, 1)), src & 0xF0)
    np.testing.assert_array_equal(pixels(apply_op(image, "Posterize", 1, 1)), src)
    np.testing.assert_array_equal(pixels(apply_op(image, "Solarize", 0, 1)), src)
    threshold = magnitude_table("Solarize")[6]  # 85.33...
    expected = np.where(src >= threshold, 255 - src, src)
    np.testing.assert_array_equal(pixels(apply_op(image, "Solarize", 6, 1)), expected)


def test_ops_without_magnitude_ignore_level_and_sign():
    image = noise_image()
    for op in ("Invert", "AutoContrast", "Equalize"):
        np.testing.assert_array_equal(pixels(apply_op(image, op, 1, 1)),
                                      pixels(apply_op(image, op, 9, -1)))


def test_enhance_factor_is_one_plus_or_minus_magnitude():
    image = noise_image()
    mean = pixels(image).mean()
    np.testing.assert_array_equal(pixels(apply_op(image, "Brightness", 0, -1)), pixels(image))
    assert pixels(apply_op(image, "Brightness", 9, -1)).mean() < 0.2 * mean  # factor 0.1
    assert pixels(apply_op(image, "Brightness", 9, 1)).mean() > 1.2 * mean  # factor 1.9
    grey = pixels(apply_op(image, "Color", 9, -1))  # factor 0.1: nearly grey-scale
    assert np.abs(grey - grey.mean(axis=-1, keepdims=True)).mean() < 0.2 * np.abs(
        pixels(image) - pixels(image).mean(axis=-1, keepdims=True)).mean()


def test_geometric_ops_fill_new_pixels_with_grey():
    image = uniform_image()
    w, h = image.size
    rotated = pixels(apply_op(image, "Rotate", 9, 1))
    assert is_grey(rotated[[0, 0, -1, -1], [0, -1, 0, -1]]).all()
    assert tuple(rotated[h // 2, w // 2]) == COLOUR
    for sign, column in ((1, -1), (-1, 0)):
        moved = pixels(apply_op(image, "TranslateX", 9, sign))
        assert is_grey(moved[:, column]).all() and (moved[:, -1 - column] == COLOUR).all()
        assert is_grey(moved).sum() == h * round(w * 150 / 331)
    for sign, row in ((1, -1), (-1, 0)):
        moved = pixels(apply_op(image, "TranslateY", 9, sign))
        assert is_grey(moved[row]).all() and (moved[-1 - row] == COLOUR).all()
    sheared = pixels(apply_op(image, "ShearX", 9, 1))  # input x = x + 0.3 y
    assert is_grey(sheared[-1, -1]) and tuple(sheared[0, 0]) == COLOUR
    sheared = pixels(apply_op(image, "ShearY", 9, -1))  # input y = y - 0.3 x
    assert is_grey(sheared[0, -1]) and tuple(sheared[-1, 0]) == COLOUR
    for op in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"):
        np.testing.assert_array_equal(pixels(apply_op(image, op, 0, 1)), pixels(image))


def test_cutout_is_a_grey_square_of_the_table_side():
    image = uniform_image(48, 40)
    for level in (1, 3, 9):
        side = magnitude_table("Cutout")[level]
        grey = is_grey(pixels(apply_op(image, "Cutout", level, 1, centre=(20, 18))))
        rows, cols = np.nonzero(grey)
        assert grey.sum() == side * side
        assert rows.max() - rows.min() + 1 == side and cols.max() - cols.min() + 1 == side
        assert rows.min() <= 18 <= rows.max() and cols.min() <= 20 <= cols.max()
    corner = is_grey(pixels(apply_op(image, "Cutout", 9, 1, centre=(0, 0))))
    assert corner.sum() == 10 * 10 and corner[:10, :10].all()  # clipped at the border
    np.testing.assert_array_equal(pixels(apply_op(image, "Cutout", 0, 1)), pixels(image))


def test_every_op_keeps_size_and_mode_and_is_deterministic():
    image = noise_image(33, 21)
    state = torch.get_rng_state()
    for op in OPS:
        for level in (1, 9):
            for sign in (1, -1):
                out = apply_op(image, op, level, sign)
                assert out.size == image.size and out.mode == "RGB", op
                np.testing.assert_array_equal(pixels(out),
                                              pixels(apply_op(image, op, level, sign)))
    assert torch.equal(torch.get_rng_state(), state)  # apply_op draws no random number


def test_call_applies_the_sampled_plan():
    augment = ReleasedRandAugment()
    image = noise_image()
    checked = 0
    for seed in range(40):
        torch.manual_seed(seed)
        plan = augment.sample_plan()
        if any(op == "Cutout" for op, _, _ in plan):  # its centre is drawn after the plan
            continue
        expected = image
        for op, level, sign in plan:
            expected = apply_op(expected, op, level, sign)
        torch.manual_seed(seed)
        out = augment(image)
        assert out.size == image.size and out.mode == "RGB"
        np.testing.assert_array_equal(pixels(out), pixels(expected))
        checked += 1
    assert checked >= 30


def test_same_seed_gives_same_image():
    augment = ReleasedRandAugment()
    image = noise_image()
    outputs = []
    for seed in range(8):
        torch.manual_seed(seed)
        first = pixels(augment(image))
        torch.manual_seed(seed)
        np.testing.assert_array_equal(pixels(augment(image)), first)
        outputs.append(first.tobytes())
    assert len(set(outputs)) >= 5  # and different seeds give different augmentations


def test_bad_inputs_raise_salgl_error():
    image = noise_image()
    with pytest.raises(SalglError, match="unknown RandAugment op"):
        apply_op(image, "Blur", 3, 1)
    for level in (-1, 10, 2.0):
        with pytest.raises(SalglError, match="level"):
            apply_op(image, "Rotate", level, 1)
    with pytest.raises(SalglError, match="sign"):
        apply_op(image, "Rotate", 3, 0)
    with pytest.raises(SalglError, match="RGB"):
        ReleasedRandAugment()(image.convert("L"))
    with pytest.raises(SalglError, match="PIL image"):
        ReleasedRandAugment()(np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(SalglError, match="probability"):
        ReleasedRandAugment(probability=1.5)
    with pytest.raises(SalglError, match="num_ops"):
        ReleasedRandAugment(num_ops=-1)


def test_repr_names_the_policy():
    text = repr(ReleasedRandAugment())
    assert "ReleasedRandAugment" in text and "num_ops=2" in text and "probability=0.5" in text
