"""Tests for helpers.intensity: window presets, window/level and ML scaling."""
import numpy as np
import pytest

from helpers.intensity import (
    KAGGLE_2017_PIXEL_MEAN,
    WINDOWS,
    clip_hu,
    to_unit_range,
    window,
    window_bounds,
    zero_center,
)
from helpers.volume import Volume


class TestWindows:
    def test_presets_are_level_width_pairs_with_positive_width(self):
        for name, (_level, width) in WINDOWS.items():
            assert width > 0, name
        assert WINDOWS["lung"] == (-600.0, 1500.0)
        assert {"lung", "mediastinum", "bone", "soft_tissue"} <= set(WINDOWS)


class TestWindowBounds:
    def test_named_and_pair(self):
        assert window_bounds("bone") == (-500.0, 1300.0)
        assert window_bounds((0, 100)) == (-50.0, 50.0)

    def test_unknown_name_lists_presets(self):
        with pytest.raises(ValueError, match="unknown window preset 'lungs'.*'lung'"):
            window_bounds("lungs")

    def test_bad_width(self):
        with pytest.raises(ValueError, match="width must be positive"):
            window_bounds((40, 0))

    def test_not_a_pair(self):
        with pytest.raises(ValueError, match="preset name or a \\(level, width\\) pair"):
            window_bounds(40)


class TestWindow:
    def test_unit_range_and_dtype(self):
        hu = np.linspace(-2000, 2000, 101).astype(np.int16)
        w = window(hu, "mediastinum")
        assert w.dtype == np.float32 and w.shape == hu.shape
        assert w.min() == 0.0 and w.max() == 1.0
        assert np.all(np.diff(w) >= 0)  # monotonic

    def test_level_maps_to_middle_grey(self):
        assert window(np.array([40.0]), "mediastinum")[0] == pytest.approx(0.5)
        assert window(np.array([40.0]), "mediastinum", out="uint8")[0] in (127, 128)

    def test_uint8_extremes(self):
        w = window(np.array([-5000, 5000]), "lung", out="uint8")
        assert w.dtype == np.uint8 and w.tolist() == [0, 255]

    def test_input_not_modified_and_volume_accepted(self):
        hu = np.array([[[-1000.0, 0.0]]], dtype=np.float32)
        keep = hu.copy()
        v = Volume(hu, spacing=(1, 1, 1))
        out = window(v, "lung")
        np.testing.assert_array_equal(hu, keep)
        assert out.shape == (1, 1, 2) and out is not hu

    def test_bad_out(self):
        with pytest.raises(ValueError, match="out must be 'unit' or 'uint8'"):
            window(np.zeros(3), "lung", out="png")


class TestClipHu:
    def test_defaults_are_kaggle_bounds(self):
        np.testing.assert_array_equal(clip_hu(np.array([-3024, 0, 3000])), [-1000, 0, 400])

    def test_dtype_and_copy(self):
        a = np.array([5000], dtype=np.int16)
        out = clip_hu(a, low=-100, high=100)
        assert out.dtype == np.float32 and a[0] == 5000

    def test_bad_bounds(self):
        with pytest.raises(ValueError, match="low < high"):
            clip_hu(np.zeros(2), low=10, high=10)


class TestToUnitRange:
    def test_scaling(self):
        out = to_unit_range(np.array([-1000, -300, 400]))
        np.testing.assert_allclose(out, [0, 0.5, 1])
        assert out.dtype == np.float32

    def test_custom_bounds(self):
        np.testing.assert_allclose(to_unit_range(np.array([0, 50, 100, 200]), low=0, high=100), [0, 0.5, 1, 1])

    def test_bad_bounds(self):
        with pytest.raises(ValueError, match="low < high"):
            to_unit_range(np.zeros(2), low=1, high=0)


class TestZeroCenter:
    def test_fixed_mean(self):
        out = zero_center(np.array([0.25, 1.25]), mean=KAGGLE_2017_PIXEL_MEAN)
        np.testing.assert_allclose(out, [0.0, 1.0])
        assert out.dtype == np.float32

    def test_own_mean(self):
        out = zero_center(np.array([1.0, 2.0, 3.0]))
        assert out.mean() == pytest.approx(0.0)

    def test_input_not_modified(self):
        a = np.ones(4, dtype=np.float32)
        zero_center(a, mean=0.5)
        assert a[0] == 1.0
