"""Tests for helpers.resample: exact geometry, exact linear ramps, labels, uneven slices, memory."""

import tracemalloc

import numpy as np
import pytest
from scipy import ndimage

from helpers.resample import crop_or_pad, estimate_memory, resample, resize_to_shape
from helpers.volume import Volume

# An oblique-ish but valid direction: array z -> LPS -z (feet-first numbering), y -> A-P, x -> R-L.
FLIPPED = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
RAMP = np.array([3.0, -2.0, 5.0])  # HU per mm along LPS x, y, z


def ramp_volume(shape=(12, 20, 24), spacing=(2.5, 0.7, 0.9), direction=None, origin=(-10.0, 5.0, 30.0)):
    """A volume whose value is a linear function of the LPS position of each voxel centre."""
    v = Volume(np.zeros(shape, np.float32), spacing=spacing, origin=origin, direction=direction)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    v.hu = (v.index_to_lps(idx) @ RAMP + 100.0).astype(np.float32)
    return v


def smooth_volume(shape=(24, 48, 40), seed=0, scale=400.0, sigma=2.0):
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (a / a.std() * scale - 500).astype(np.float32)


def extent(v: Volume):
    """LPS positions of the outer faces of the first and last voxel along each array axis."""
    first = v.index_to_lps([-0.5, -0.5, -0.5])
    last = v.index_to_lps(np.asarray(v.shape) - 0.5)
    return first, last


def interior(r: Volume, v: Volume):
    """Boolean mask of output voxels whose centre lies between the input's first and last centres."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in r.shape], indexing="ij"), -1)
    u = v.lps_to_index(r.index_to_lps(idx))
    return np.all((u >= -1e-6) & (u <= np.asarray(v.shape) - 1 + 1e-6), axis=-1)


class TestResample:
    @pytest.mark.parametrize("direction", [None, FLIPPED])
    @pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.3, 0.45, 1.7)])
    def test_linear_ramp_is_reproduced_exactly(self, direction, spacing):
        v = ramp_volume(direction=direction)
        r = resample(v, spacing=spacing)
        idx = np.stack(np.meshgrid(*[np.arange(n) for n in r.shape], indexing="ij"), -1)
        expected = r.index_to_lps(idx) @ RAMP + 100.0
        inside = interior(r, v)
        assert inside.mean() > 0.5
        np.testing.assert_allclose(r.hu[inside], expected[inside], atol=2e-3)

    def test_spacing_is_kept_and_grid_centred_on_the_extent(self):
        v = ramp_volume(direction=FLIPPED)
        r = resample(v, spacing=(1.0, 1.0, 1.0))
        assert r.spacing == (1.0, 1.0, 1.0)
        assert r.shape == (30, 14, 22)  # round(30 / 1), round(14 / 1), round(21.6 / 1)
        (a0, a1), (b0, b1) = extent(v), extent(r)
        np.testing.assert_allclose((a0 + a1) / 2, (b0 + b1) / 2, atol=1e-9)
        assert np.all(np.abs(np.abs(b1 - b0) - np.abs(a1 - a0)) <= 0.5 + 1e-9)
        np.testing.assert_array_equal(r.direction, v.direction)

    def test_explicit_shape_keeps_the_extent_exactly(self):
        v = ramp_volume()
        r = resample(v, shape=(7, 33, 10))
        assert r.shape == (7, 33, 10)
        for p, q in zip(extent(v), extent(r)):
            np.testing.assert_allclose(p, q, atol=1e-9)

    def test_round_trip_returns_the_same_grid_and_nearly_the_same_values(self):
        # extents 60 x 36 x 30 mm are whole multiples of 1 mm, so the grid can come back exactly
        v = Volume(smooth_volume(sigma=4.0), spacing=(2.5, 0.75, 0.75), origin=(1.0, 2.0, 3.0))
        back = resample(resample(v, spacing=(1.0, 1.0, 1.0)), spacing=v.spacing)
        assert back.shape == v.shape
        np.testing.assert_allclose(back.origin, v.origin, atol=1e-9)
        np.testing.assert_allclose(back.spacing, v.spacing)
        # linear interpolation smooths twice; on a 400 HU std field the loss stays small
        assert np.abs(back.hu - v.hu)[1:-1, 1:-1, 1:-1].mean() < 10.0

    def test_order_0_preserves_labels_and_dtype(self):
        rng = np.random.default_rng(1)
        labels = rng.integers(0, 3, size=(10, 30, 30)).astype(np.uint8)
        v = Volume(labels, spacing=(2.5, 0.7, 0.7))
        r = resample(v, order=0)
        assert r.hu.dtype == np.uint8
        assert set(np.unique(r.hu)) <= {0, 1, 2}
        # every output label is the label of the input voxel whose centre is nearest
        k = np.rint(v.lps_to_index(r.index_to_lps([5, 7, 9]))).astype(int)
        assert r.hu[5, 7, 9] == labels[tuple(k)]

    def test_default_order_is_nearest_for_masks_and_linear_for_ct(self):
        v = Volume(np.eye(8, dtype=np.uint8)[None].repeat(4, 0), spacing=(2.0, 1.0, 1.0))
        assert resample(v, spacing=(1.0, 0.5, 0.5)).hu.dtype == np.uint8
        assert resample(v, order=1).hu.dtype == np.float32
        ct = v.with_array(v.hu.astype(np.int16))
        assert resample(ct).meta["resampling"][-1]["order"] == 1
        assert resample(v.with_array(v.hu.astype(bool))).hu.dtype == bool
        # int8 is a mask too (the 2017 methods return int8 0/1): nearest neighbour, padded with 0 not -1024
        m8 = v.with_array(v.hu.astype(np.int8))
        assert resample(m8).hu.dtype == np.int8
        assert crop_or_pad(m8, (4, 10, 10), center="array").hu.min() == 0

    def test_bare_array_is_refused(self):
        with pytest.raises(ValueError, match=r"bare array of shape \(4, 8, 8\) with no voxel size"):
            resample(np.zeros((4, 8, 8), np.int16), spacing=(1.0, 1.0, 1.0))

    def test_bool_mask_refuses_interpolation(self):
        v = Volume(np.zeros((4, 8, 8), bool), spacing=(2.0, 1.0, 1.0))
        with pytest.raises(ValueError, match="bool mask cannot be interpolated with order=1; pass order=0"):
            resample(v, order=1)
        assert resample(v, order=0).hu.dtype == bool

    def test_missing_slice_is_interpolated_by_position(self):
        # planes at 0, 2.5, 5, 10, 12.5 mm: the one at 7.5 mm is missing
        z = np.array([0.0, 2.5, 5.0, 10.0, 12.5])
        hu = np.broadcast_to((z * 10)[:, None, None], (5, 6, 6)).astype(np.float32)
        positions = np.stack([np.zeros(5), np.zeros(5), z], 1)
        v = Volume(hu, spacing=(2.5, 1.0, 1.0), positions=positions)
        r = resample(v, spacing=(2.5, 1.0, 1.0))
        assert r.shape == (6, 6, 6)  # the real extent is 15 mm, not 5 x 2.5
        np.testing.assert_allclose(r.slice_positions, [0.0, 2.5, 5.0, 7.5, 10.0, 12.5])
        np.testing.assert_allclose(r.hu[:, 0, 0], [0, 25, 50, 75, 100, 125], atol=1e-4)
        assert r.meta["resampling"][-1]["uneven_z"] is True

    def test_positions_out_of_order_raise(self):
        positions = np.array([[0, 0, 0.0], [0, 0, 5.0], [0, 0, 2.5]])
        v = Volume(np.zeros((3, 4, 4), np.float32), spacing=(2.5, 1.0, 1.0), positions=positions)
        with pytest.raises(ValueError, match="must increase strictly with the plane index"):
            resample(v)

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"order": 2}, "order must be 0 .nearest, for label masks., 1 .linear. or 3"),
            ({"spacing": (1.0, -1.0, 1.0)}, "spacing must be three positive mm values"),
            ({"shape": (0, 4, 4)}, "shape must be three positive voxel counts"),
        ],
    )
    def test_bad_arguments_raise(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            resample(ramp_volume(), **kwargs)

    @pytest.mark.parametrize("order", [0, 1, 3])
    def test_matches_scipy_map_coordinates_on_the_same_grid(self, order):
        v = Volume(smooth_volume(), spacing=(2.5, 0.7, 0.9))
        r = resample(v, spacing=(1.1, 1.3, 0.65), order=order)
        idx = np.stack(np.meshgrid(*[np.arange(n) for n in r.shape], indexing="ij"), -1)
        u = np.clip(v.lps_to_index(r.index_to_lps(idx)), 0, np.asarray(v.shape) - 1)
        mode = "mirror" if order == 3 else "nearest"
        ref = ndimage.map_coordinates(v.hu.astype(np.float64), np.moveaxis(u, -1, 0), order=order, mode=mode)
        if order == 0:  # exact ties (x.5) may round either way; require near-total agreement
            assert (r.hu == ref.astype(np.float32)).mean() > 0.95
        else:
            np.testing.assert_allclose(r.hu, ref, atol=1e-3)

    def test_int16_input_gives_float32_and_small_peak_memory(self):
        rng = np.random.default_rng(2)
        v = Volume(rng.integers(-1024, 2000, size=(40, 128, 128)).astype(np.int16), spacing=(2.5, 0.7, 0.7))
        tracemalloc.start()
        try:
            r = resample(v, spacing=(1.0, 1.0, 1.0))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert r.hu.dtype == np.float32
        assert peak <= 2.5 * r.hu.nbytes, f"peak {peak / 2**20:.1f} MiB for a {r.hu.nbytes / 2**20:.1f} MiB output"

    def test_meta_is_kept_with_a_note(self):
        v = ramp_volume()
        v.meta["series_description"] = "CHEST"
        r = resample(v)
        assert r.meta["series_description"] == "CHEST"
        note = r.meta["resampling"][-1]
        assert note["from_spacing"] == v.spacing and note["to_spacing"] == (1.0, 1.0, 1.0) and note["order"] == 1
        assert "resampling" not in v.meta

    def test_agrees_with_simpleitk_linear_within_1_hu(self):
        sitk = pytest.importorskip("SimpleITK")
        v = Volume(smooth_volume(shape=(20, 64, 64)), spacing=(2.5, 0.7, 0.7), origin=(-20.0, -30.0, 100.0))
        r = resample(v, spacing=(1.0, 1.0, 1.0))
        img = sitk.GetImageFromArray(v.hu)
        img.SetSpacing(v.spacing[::-1])
        img.SetOrigin(v.origin)
        img.SetDirection(v.direction[:, ::-1].ravel().tolist())
        ref = sitk.Resample(
            img, r.shape[::-1], sitk.Transform(), sitk.sitkLinear, r.origin, r.spacing[::-1],
            img.GetDirection(), -1024.0, sitk.sitkFloat32,
        )
        mad = np.abs(sitk.GetArrayFromImage(ref) - r.hu).mean()
        assert mad < 1.0

    @pytest.mark.realdata
    def test_real_b40f_agrees_with_simpleitk(self, real_case):
        sitk = pytest.importorskip("SimpleITK")
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(real_case / "ct-b40f")))
        img = reader.Execute()
        a = sitk.GetArrayFromImage(img)
        d = np.asarray(img.GetDirection()).reshape(3, 3)[:, ::-1]
        v = Volume(a, spacing=img.GetSpacing()[::-1], origin=img.GetOrigin(), direction=d)
        r = resample(v, spacing=(2.0, 2.0, 2.0))
        ref = sitk.Resample(
            img, r.shape[::-1], sitk.Transform(), sitk.sitkLinear, r.origin, r.spacing[::-1],
            img.GetDirection(), -1024.0, sitk.sitkFloat32,
        )
        assert np.abs(sitk.GetArrayFromImage(ref) - r.hu).mean() < 1.0


class TestEstimateMemory:
    def test_matches_what_resample_does(self):
        rng = np.random.default_rng(3)
        v = Volume(rng.integers(-1000, 1000, size=(30, 96, 96)).astype(np.int16), spacing=(2.5, 0.7, 0.7))
        est = estimate_memory(v, spacing=(1.0, 1.0, 1.0))
        tracemalloc.start()
        try:
            r = resample(v, spacing=(1.0, 1.0, 1.0))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert est["shape"] == r.shape and est["dtype"] == "float32"
        assert est["output_bytes"] == r.hu.nbytes
        assert peak <= est["peak_bytes"] * 1.1
        assert est["peak_bytes"] <= 2.5 * est["output_bytes"]
        assert "MiB" in est["text"]

    def test_order_0_keeps_the_input_itemsize(self):
        v = Volume(np.zeros((10, 20, 20), np.uint8), spacing=(2.0, 1.0, 1.0))
        est = estimate_memory(v, order=0, spacing=(1.0, 1.0, 1.0))
        assert est["output_bytes"] == 20 * 20 * 20 and est["dtype"] == "uint8"


class TestResizeToShape:
    def test_shape_and_extent(self):
        v = ramp_volume(direction=FLIPPED)
        r = resize_to_shape(v, (16, 16, 16))
        assert r.shape == (16, 16, 16)
        for p, q in zip(extent(v), extent(r)):
            np.testing.assert_allclose(p, q, atol=1e-9)
        np.testing.assert_allclose(np.asarray(r.spacing) * 16, np.asarray(v.spacing) * v.shape)

    def test_mask_with_order_0(self):
        m = np.zeros((8, 16, 16), np.uint8)
        m[2:6, 4:12, 4:12] = 2
        r = resize_to_shape(Volume(m, spacing=(3.0, 1.0, 1.0)), (12, 8, 8), order=0)
        assert r.hu.dtype == np.uint8 and set(np.unique(r.hu)) == {0, 2}
        # the values, by hand: the box spans 6-18 mm in z and 4-12 mm in y and x; the new 2 mm voxels
        # are centred at 1, 3, 5... mm, so nearest neighbour keeps z 3:9 and y, x 2:6 (no centre on an edge)
        expected = np.zeros((12, 8, 8), np.uint8)
        expected[3:9, 2:6, 2:6] = 2
        np.testing.assert_array_equal(r.hu, expected)


class TestCropOrPad:
    def test_kept_voxels_keep_their_lps_position(self):
        v = ramp_volume(direction=FLIPPED)
        c = crop_or_pad(v, (8, 30, 10), center="array")
        start = np.rint(v.lps_to_index(c.origin)).astype(int)
        np.testing.assert_allclose(v.index_to_lps(start), c.origin, atol=1e-9)
        k = np.array([3, 10, 4])
        np.testing.assert_allclose(c.index_to_lps(k), v.index_to_lps(k + start), atol=1e-9)
        assert c.hu[tuple(k)] == v.hu[tuple(k + start)]

    def test_pads_with_air_for_images_and_zero_for_masks(self):
        img = Volume(np.zeros((4, 6, 6), np.int16), spacing=(2.0, 1.0, 1.0))
        out = crop_or_pad(img, (4, 10, 10), center="array")
        assert out.hu[0, 0, 0] == -1024 and out.hu[0, 5, 5] == 0 and out.hu.dtype == np.int16
        mask = img.with_array(np.ones((4, 6, 6), np.uint8))
        assert crop_or_pad(mask, (4, 10, 10), center="array").hu[0, 0, 0] == 0
        assert crop_or_pad(img, (4, 10, 10), center="array", fill=-2000).hu[0, 0, 0] == -2000

    def test_centres_on_the_body(self):
        a = np.full((10, 40, 40), -1000, np.int16)
        a[2:8, 5:15, 20:34] = 40  # the body, off-centre
        a[0, 38, 0] = 500  # a small bright speck elsewhere
        c = crop_or_pad(Volume(a, spacing=(1.0, 1.0, 1.0)), (6, 10, 14))
        assert np.all(c.hu == 40)

    def test_centres_on_a_mask(self):
        a = np.zeros((10, 40, 40), np.int16)
        m = np.zeros_like(a, dtype=np.uint8)
        m[3:5, 30:34, 2:6] = 1
        v = Volume(a, spacing=(1.0, 1.0, 1.0))
        c = crop_or_pad(v, (2, 4, 4), center="mask", mask=m)
        np.testing.assert_allclose(c.origin, v.index_to_lps([3, 30, 2]))

    def test_uneven_positions_are_kept_for_kept_planes(self):
        z = np.array([0.0, 2.5, 5.0, 10.0, 12.5])
        positions = np.stack([np.zeros(5)] * 2 + [z], 1)
        v = Volume(np.zeros((5, 4, 4), np.int16), spacing=(2.5, 1.0, 1.0), positions=positions)
        c = crop_or_pad(v, (3, 4, 4), center="array")
        np.testing.assert_allclose(c.slice_positions, [2.5, 5.0, 10.0])

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"center": "mask"}, "center='mask' needs mask="),
            ({"center": "array", "mask": np.ones((4, 6, 6))}, "a mask was passed but center='array'"),
            ({"center": "middle"}, "center must be 'body', 'mask' or 'array'"),
            ({"center": "mask", "mask": np.zeros((4, 6, 6))}, "the mask is empty"),
            ({"center": "mask", "mask": np.ones((2, 6, 6))}, r"mask shape \(2, 6, 6\) differs"),
            ({"center": "body"}, "no voxel above the body threshold -500.0 HU"),
        ],
    )
    def test_bad_arguments_raise(self, kwargs, message):
        v = Volume(np.full((4, 6, 6), -1000, np.int16), spacing=(2.0, 1.0, 1.0))
        with pytest.raises(ValueError, match=message):
            crop_or_pad(v, (4, 4, 4), **kwargs)
