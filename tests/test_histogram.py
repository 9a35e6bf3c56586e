"""Tests for helpers.histogram: HU histograms with tissue bands, padding excluded."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from helpers.histogram import BANDS, hu_histogram, padding_mask, tissue_histograms
from helpers.volume import Volume


@pytest.fixture(scope="module")
def vol():
    hu = np.full((4, 20, 20), -3024, np.int16)  # FOV padding
    hu[:, 2:18, 2:18] = -1000  # air inside the FOV
    hu[:, 4:16, 4:10] = -800  # lung
    hu[:, 4:16, 10:16] = 40  # soft tissue
    hu[:, 8:10, 8:10] = 700  # bone
    return Volume(hu, spacing=(2.5, 0.7, 0.7))


def _bars(fig):
    """Heights of the filled histogram (the StepPatch artist)."""
    from matplotlib.patches import StepPatch

    (patch,) = [p for p in fig.axes[0].patches if isinstance(p, StepPatch)]
    data = patch.get_data()
    return data.values, data.edges


class TestBands:
    def test_ordered_and_disjoint(self):
        spans = sorted((lo, hi) for lo, hi, _ in BANDS.values())
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
        assert {"air", "lung", "fat", "bone"} <= set(BANDS)


class TestPaddingMask:
    def test_below_threshold_and_explicit_value(self, vol):
        assert padding_mask(vol).sum() == 4 * (400 - 256)
        assert padding_mask(vol, padding_value=-1000).sum() == 4 * 400 - 4 * (12 * 12)


class TestHuHistogram:
    def test_padding_excluded_and_reported(self, vol):
        fig = hu_histogram(vol)
        values, edges = _bars(fig)
        assert values.sum() == pytest.approx(100.0)
        text = fig.axes[0].texts[-1].get_text()
        assert text.startswith("1,024 voxels counted; 576 padding voxels (< -1100 HU) excluded")
        assert edges[0] == -1100 and edges[-1] == 1500

    def test_loader_replaced_padding_is_reported(self, vol):
        v = vol.with_array(np.where(vol.hu < -1100, -1024, vol.hu).astype(np.int16))
        v.meta.update(padding_voxels=576, padding_hu=-1024)
        text = hu_histogram(v).axes[0].texts[-1].get_text()
        assert "0 padding voxels" in text and "the loader had set 576 padding voxels to -1024 HU" in text

    def test_no_padding_note_inside_a_mask(self, vol):
        """Padding is outside the field of view, so a masked histogram never counts it."""
        v = vol.with_array(np.where(vol.hu < -1100, -1024, vol.hu).astype(np.int16))
        v.meta.update(padding_voxels=576, padding_hu=-1024)
        text = hu_histogram(v, mask=v.hu > 0).axes[0].texts[-1].get_text()
        assert text == "304 voxels counted; 0 padding voxels (< -1100 HU) excluded; 0 outside -1100..1500 HU"

    def test_peaks_in_the_right_bins(self, vol):
        values, edges = _bars(hu_histogram(vol, bins=26))  # 100 HU bins
        peak_hu = {edges[i] for i in np.argsort(values)[-3:]}
        assert peak_hu == {-1000, -800, 0}

    def test_mask(self, vol):
        mask = vol.hu > 0
        fig = hu_histogram(vol, mask=mask)
        assert fig.axes[0].texts[-1].get_text().startswith("304 voxels counted; 0 padding")
        assert "inside mask" in fig.axes[0].get_title()

    def test_band_legend(self, vol):
        names = [t.get_text() for t in hu_histogram(vol).axes[0].get_legend().get_texts()]
        assert "lung: -950 to -500 HU" in names
        assert hu_histogram(vol, bands=None).axes[0].get_legend() is None

    def test_into_given_axes_and_log(self, vol):
        from matplotlib.figure import Figure

        fig = Figure()
        ax = fig.subplots()
        assert hu_histogram(vol, ax=ax, log=True) is fig and ax.get_yscale() == "log"

    def test_errors(self, vol):
        with pytest.raises(ValueError, match="mask shape"):
            hu_histogram(vol, mask=np.ones((2, 2, 2), bool))
        with pytest.raises(ValueError, match="no voxel left to count.*is the mask empty"):
            hu_histogram(vol, mask=np.zeros(vol.shape, bool))
        with pytest.raises(ValueError, match="low < high"):
            hu_histogram(vol, range_hu=(100, 0))


class TestTissueHistograms:
    def test_one_curve_per_tissue_either_legend_direction(self, vol):
        labels = np.zeros(vol.shape, np.uint8)
        labels[vol.hu == -800] = 1
        labels[vol.hu == 40] = 2
        for legend in ({1: "lung", 2: "muscle", 3: "absent"}, {"lung": 1, "muscle": 2}):
            fig = tissue_histograms(vol, labels, legend)
            texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
            assert texts == ["lung (272 voxels, median -800 HU)", "muscle (288 voxels, median 40 HU)"]

    def test_errors(self, vol):
        labels = np.zeros(vol.shape, np.uint8)
        with pytest.raises(ValueError, match=r"none of the legend's labels \[5\] is present; labels found: \[0\]"):
            tissue_histograms(vol, labels, {5: "x"})
        with pytest.raises(ValueError, match="labels shape"):
            tissue_histograms(vol, labels[:2], {1: "x"})


class TestCheckLaaPercent:
    """Chapter 4 exercise checker (helpers.book.checks)."""

    def test_right_wrong_missing(self, vol):
        from helpers.book.checks import check_laa_percent

        lungs = (vol.hu == -800) | (vol.hu == -1000)
        expected = 100 * np.count_nonzero(vol.hu[lungs] < -950) / np.count_nonzero(lungs)
        assert check_laa_percent(expected, vol, lungs).ok
        assert check_laa_percent(expected + 5, vol, lungs).ok is False
        assert check_laa_percent(..., vol, lungs).ok is None


class TestCheckBandPercent:
    def test_right_and_wrong(self, vol):
        from helpers.book.checks import check_band_percent

        body = vol.hu > -1100
        expected = 100 * np.count_nonzero((vol.hu[body] >= -29) & (vol.hu[body] <= 150)) / body.sum()
        assert check_band_percent(expected, vol, body, band=(-29, 150)).ok
        assert "the expected value" in check_band_percent(1.0, vol, body, band=(-29, 150)).message
