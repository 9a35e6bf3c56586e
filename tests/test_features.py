"""Tests for helpers.features: per-case lung numbers for table learners."""
import numpy as np
import pytest

from helpers.features import LUNG_BANDS_HU, cohort_features, lung_features


def case():
    image = np.full((4, 10, 10), 40, np.int16)
    mask = np.zeros((4, 10, 10), np.uint8)
    mask[:, :, :5] = 1          # right: 200 voxels
    mask[:2, :, 5:] = 2         # left: 100 voxels
    image[mask == 1] = -870     # aerated lung
    image[0, :, :5] = -980      # 50 right-lung voxels below -950
    image[mask == 2] = -600
    return image, mask


class TestLungFeatures:
    def test_values(self):
        image, mask = case()
        f = lung_features(image, mask, (2.0, 1.0, 1.0))
        assert f["right_ml"] == pytest.approx(0.4) and f["left_ml"] == pytest.approx(0.2)
        assert f["lung_ml"] == pytest.approx(0.6)
        assert f["laa_pct"] == pytest.approx(100 * 50 / 300)
        assert f["mean_hu"] == pytest.approx((50 * -980 + 150 * -870 + 100 * -600) / 300)
        assert f["hu_-1024_-950_pct"] == pytest.approx(100 * 50 / 300)
        assert f["hu_-950_-850_pct"] == pytest.approx(100 * 150 / 300)
        assert f["hu_-700_-500_pct"] == pytest.approx(100 * 100 / 300)
        bands = [k for k in f if k.startswith("hu_")]
        assert len(bands) == len(LUNG_BANDS_HU) - 1
        assert sum(f[k] for k in bands) == pytest.approx(100.0)

    def test_threshold_is_a_parameter_and_outliers_go_to_the_end_bands(self):
        image, mask = case()
        image[1, 0, 0] = -2000
        image[1, 0, 1] = 4000
        f = lung_features(image, mask, (1, 1, 1), laa_hu=-990)
        assert f["laa_pct"] == pytest.approx(100 / 300)  # only the -2000 voxel is below -990
        assert f["hu_-1024_-950_pct"] == pytest.approx(100 * 51 / 300)
        assert f["hu_-100_3072_pct"] == pytest.approx(100 / 300)

    def test_empty_mask_and_wrong_shape(self):
        image, mask = case()
        f = lung_features(image, np.zeros_like(mask), (1, 1, 1))
        assert f["lung_ml"] == 0 and np.isnan(f["laa_pct"]) and np.isnan(f["mean_hu"])
        with pytest.raises(ValueError, match="differ in shape"):
            lung_features(image, mask[:2], (1, 1, 1))


class TestCohortFeatures:
    def test_one_row_per_case(self):
        image, mask = case()

        class FakeDataset:
            def __len__(self):
                return 2

            def __getitem__(self, i):
                return image - 10 * i, mask, {"case_id": f"c{i}", "spacing": [2.0, 1.0, 1.0]}

        table = cohort_features(FakeDataset())
        assert list(table.index) == ["c0", "c1"] and table.index.name == "case_id"
        assert table.loc["c1", "mean_hu"] == pytest.approx(table.loc["c0", "mean_hu"] - 10)
        assert table.loc["c0", "lung_ml"] == pytest.approx(0.6)
