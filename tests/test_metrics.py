"""Tests for helpers.metrics: dice and hausdorff95 (mm), cross-checked with SimpleITK."""
import numpy as np
import pytest

from helpers.metrics import dice, hausdorff95, surface_distances
from helpers.volume import Volume


def _box(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


class TestDice:
    def test_values(self):
        a = _box((4, 10, 10), (0, 0, 0), (4, 5, 10))
        assert dice(a, a) == 1.0
        assert dice(a, ~a) == 0.0
        b = _box((4, 10, 10), (0, 0, 0), (4, 10, 10))
        assert dice(a, b) == pytest.approx(2 * 200 / (200 + 400))

    def test_label_and_volume_inputs(self):
        a = np.array([[0, 1, 2, 2]], np.uint8)[None]
        b = np.array([[0, 2, 2, 1]], np.uint8)[None]
        assert dice(a, b, label=2) == pytest.approx(2 * 1 / 4)
        assert dice(a, b) == 1.0  # non-zero vs non-zero
        v = Volume(a, spacing=(1.0, 1.0, 1.0))
        assert dice(v, b, label=1) == 0.0

    def test_both_empty_agree(self):
        z = np.zeros((2, 2, 2), bool)
        assert dice(z, z) == 1.0

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="differ in shape"):
            dice(np.zeros((2, 2)), np.zeros((3, 3)))


class TestHausdorff95:
    def test_shift_in_mm_with_anisotropic_spacing(self):
        a = _box((10, 30, 30), (2, 5, 5), (8, 20, 20))
        b = np.roll(a, 3, axis=2)  # 3 columns of 0.5 mm
        assert hausdorff95(a, b, spacing=(4.0, 1.0, 0.5)) == pytest.approx(1.5)
        b = np.roll(a, 1, axis=0)  # one 4 mm slice
        assert hausdorff95(a, b, spacing=(4.0, 1.0, 0.5)) == pytest.approx(4.0)

    def test_identical_empty_and_one_empty(self):
        a = _box((5, 10, 10), (1, 2, 2), (4, 8, 8))
        sp = (1.0, 1.0, 1.0)
        assert hausdorff95(a, a, spacing=sp) == 0.0
        z = np.zeros_like(a)
        assert hausdorff95(z, z, spacing=sp) == 0.0
        assert hausdorff95(a, z, spacing=sp) == float("inf")

    def test_bare_arrays_need_a_spacing(self):
        """No silent 1 mm: two bare arrays without spacing= are refused, and the message says what to pass."""
        a = _box((5, 10, 10), (1, 2, 2), (4, 8, 8))
        with pytest.raises(ValueError, match=r"bare arrays .* pass spacing=vol.spacing"):
            hausdorff95(a, a)

    def test_spacing_from_volume(self):
        a = _box((6, 12, 12), (1, 2, 2), (5, 10, 10))
        b = np.roll(a, 2, axis=1)
        assert hausdorff95(Volume(a.astype(np.uint8), spacing=(3.0, 0.7, 0.7)), b) == pytest.approx(1.4)

    def test_robust_to_one_stray_voxel(self):
        a = _box((20, 40, 40), (2, 2, 2), (18, 30, 30))
        b = a.copy()
        b[19, 39, 39] = True  # far-away speck
        assert hausdorff95(a, b, spacing=(1, 1, 1)) < 1.0
        assert hausdorff95(a, b, spacing=(1, 1, 1), percentile=100) > 10

    def test_max_matches_simpleitk_hausdorff(self):
        sitk = pytest.importorskip("SimpleITK")
        a = _box((12, 24, 24), (2, 4, 4), (10, 18, 16))
        b = _box((12, 24, 24), (3, 6, 7), (11, 20, 19))
        sp = (2.5, 0.8, 0.6)

        def img(m):
            i = sitk.GetImageFromArray(m.astype(np.uint8))
            i.SetSpacing(sp[::-1])
            return i

        f = sitk.HausdorffDistanceImageFilter()
        f.Execute(img(a), img(b))
        assert hausdorff95(a, b, spacing=sp, percentile=100) == pytest.approx(f.GetHausdorffDistance(), abs=1e-6)

    def test_surface_distances_directions(self):
        a = _box((10, 10), (2, 2), (8, 8))
        b = _box((10, 10), (3, 3), (7, 7))  # inside a, 1 pixel smaller all round (2-D works too)
        da, db = surface_distances(a, b, spacing=(1.0, 1.0))
        assert da.max() == pytest.approx(np.sqrt(2)) and db.max() == pytest.approx(1.0)

    def test_surface_distances_match_a_distance_transform(self):
        """The k-d tree search gives the distances of an exact EDT of the box (the earlier method)."""
        from scipy import ndimage

        rng = np.random.default_rng(0)
        a = ndimage.binary_opening(rng.random((18, 30, 26)) > 0.55, iterations=1)
        b = ndimage.binary_closing(rng.random((18, 30, 26)) > 0.5, iterations=1)
        spacing = (2.5, 0.7, 0.9)
        da, db = surface_distances(a, b, spacing=spacing)
        ero = ndimage.generate_binary_structure(3, 1)
        sa = a & ~ndimage.binary_erosion(a, ero, border_value=0)
        sb = b & ~ndimage.binary_erosion(b, ero, border_value=0)
        np.testing.assert_allclose(da, ndimage.distance_transform_edt(~sb, sampling=spacing)[sa], rtol=1e-12)
        np.testing.assert_allclose(db, ndimage.distance_transform_edt(~sa, sampling=spacing)[sb], rtol=1e-12)
        assert da.size == np.count_nonzero(sa) and db.size == np.count_nonzero(sb)


class TestSlicesMissingLungs:
    def _ref(self):
        ref = np.zeros((5, 20, 20), np.uint8)
        ref[:, 5:15, 1:9] = 1
        ref[:, 5:15, 11:19] = 2
        ref[4, :, :] = 0
        ref[4, 10, 3] = 1  # a one-pixel sliver: not counted as lung on that slice
        return ref

    def test_no_lung_and_one_lung(self):
        from helpers.metrics import slices_missing_lungs

        ref = self._ref()
        other = ref > 0
        other[1] = False                         # slice 1: nothing
        other[2][ref[2] == 2] = False            # slice 2: right lung only
        other[3][(ref[3] == 1) & (np.arange(20)[None, :] < 5)] = False  # slice 3: half of the right lung
        r = slices_missing_lungs(ref, other, spacing=(5.0, 2.0, 2.0))
        assert r["no_lung"] == [1] and r["one_lung"] == [2] and r["with_lung"] == 4
        assert r["found"][3].tolist() == [True, True]  # half covered = found at found_share 0.5
        r = slices_missing_lungs(ref, other, spacing=(5.0, 2.0, 2.0), found_share=0.6)
        assert r["one_lung"] == [2, 3]

    def test_shape_mismatch(self):
        from helpers.metrics import slices_missing_lungs

        with pytest.raises(ValueError, match="differ in shape"):
            slices_missing_lungs(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)), spacing=(1, 1, 1))

    def test_bare_array_needs_spacing(self):
        from helpers.metrics import slices_missing_lungs

        with pytest.raises(ValueError, match="no voxel size"):
            slices_missing_lungs(np.zeros((2, 3, 3), np.uint8), np.zeros((2, 3, 3)))

    @pytest.mark.realdata
    def test_real_case_2017_mask(self, real_case):
        """The 2017 mask loses slices near the diaphragm of the real case and keeps one lung on
        slice 5; the robust mask has lung on 29 of 30 slices.  (The B70f reconstruction gives the
        same one-lung slice and loses slices 1 and 3; one series is enough here.)"""
        import warnings

        from helpers.io import load_series
        from helpers.legacy import segment_lungs_2017
        from helpers.metrics import slices_missing_lungs
        from helpers.segment import segment_lungs

        for series in ("ct-b40f",):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vol = load_series(real_case / series)
                r = slices_missing_lungs(segment_lungs(vol), segment_lungs_2017(vol), spacing=vol.spacing)
            assert {1, 3} <= set(r["no_lung"]) and r["one_lung"] == [5] and r["with_lung"] == 29, (series, r)
