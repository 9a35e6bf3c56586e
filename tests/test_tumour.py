"""helpers.tumour: grow a tumour from its boxes, measure volume / longest axial diameter / mean HU."""
import warnings

import numpy as np
import pytest

from helpers import DicomSeriesError, SeriesWarning, Volume, load_series
from helpers.annotations import boxes_from_mask, find_annotations, read_boxes
from helpers.metrics import dice
from helpers.tumour import (
    box_montage,
    draw_tumour,
    grow_tumour,
    kept_fraction,
    kept_table,
    longest_axial_diameter,
    measure_tumour,
    tumour_viewer,
)

LUNG_HU, TUMOUR_HU, WALL_HU = -850, 40, 45
SPACING = (1.0, 0.5, 0.5)


def ellipsoid(shape, centre_mm, semi_mm, spacing=SPACING):
    z, y, x = (np.arange(n) * s for n, s in zip(shape, spacing))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij", sparse=True)
    return (((zz - centre_mm[0]) / semi_mm[0]) ** 2 + ((yy - centre_mm[1]) / semi_mm[1]) ** 2
            + ((xx - centre_mm[2]) / semi_mm[2]) ** 2) <= 1.0


@pytest.fixture(scope="module")
def phantom():
    """Lung (-850 HU) with an ellipsoidal mass (40 HU, semi-axes 8 x 12 x 9 mm), a vessel and noise."""
    shape = (40, 100, 100)
    rng = np.random.default_rng(0)
    truth = ellipsoid(shape, (20, 25, 25), (8, 12, 9))
    hu = np.full(shape, LUNG_HU, np.float32)
    hu[truth] = TUMOUR_HU
    hu[20, 49:52, 50:] = TUMOUR_HU  # a vessel leaving the mass towards +x, in-plane
    hu += rng.normal(0, 10, shape).astype(np.float32)
    return Volume(hu.astype(np.int16), spacing=SPACING), truth


class TestLongestAxialDiameter:
    @pytest.mark.parametrize("spacing", [(1.0, 0.5, 0.5), (2.5, 0.7, 0.9)])
    def test_disk_with_known_diameter(self, spacing):
        truth = ellipsoid((3, 120, 120), (spacing[0], 40, 40), (0.4 * spacing[0], 15, 15), spacing)
        length, k, ends = longest_axial_diameter(truth, spacing)
        assert k == 1
        assert length == pytest.approx(30.0, abs=1.5 * max(spacing[1:]))
        d = np.hypot(*((ends[0] - ends[1]) * spacing[1:]))
        assert d == pytest.approx(length)

    def test_empty(self):
        with pytest.raises(ValueError, match="empty"):
            longest_axial_diameter(np.zeros((2, 3, 3), bool), (1, 1, 1))


class TestMeasureTumour:
    def test_ellipsoid_volume_diameter_and_hu(self, phantom):
        vol, truth = phantom
        r = measure_tumour(truth, vol)
        assert r.volume_ml == pytest.approx(4 / 3 * np.pi * 8 * 12 * 9 / 1000, rel=0.03)
        assert r.longest_axial_mm == pytest.approx(24.0, abs=1.0)  # 2 x 12 mm along y, at the centre slice
        assert r.slice_index == 20 and r.z_mm == pytest.approx(vol.slice_positions[20])
        assert r.mean_hu == pytest.approx(TUMOUR_HU, abs=2)
        assert r.slices == int(truth.any(axis=(1, 2)).sum())
        lines = r.summary().splitlines()
        assert len(lines) == 3 and lines[0].startswith("volume") and f"{r.longest_axial_mm:.1f} mm" in lines[1]

    def test_shape_mismatch(self, phantom):
        vol, _ = phantom
        with pytest.raises(ValueError, match="differs from the volume's"):
            measure_tumour(np.ones((2, 2, 2), bool), vol)


class TestGrowTumour:
    def test_recovers_the_ellipsoid_and_leaves_the_vessel_out(self, phantom):
        vol, truth = phantom
        boxes = boxes_from_mask(truth, vol)
        r = grow_tumour(vol, boxes)
        assert dice(r.mask, truth) > 0.95
        assert r.volume_ml == pytest.approx(measure_tumour(truth, vol).volume_ml, rel=0.06)
        assert len(r.seeds) == int(truth.any(axis=(1, 2)).sum())
        # the vessel joins up to the box edge + 2 mm (4 columns), no further
        edge = next(b for b in boxes if b.slice_index == 20).cols[1]
        assert r.mask[20, 50, edge + 4] and not r.mask[20, 50, edge + 5:].any()
        tight = grow_tumour(vol, boxes, margin_mm=0)
        assert tight.longest_axial_mm == pytest.approx(24.0, abs=1.5)

    def test_pleural_mass_against_a_wall_of_the_same_hu(self):
        shape = (24, 120, 120)
        z, y, x = (np.arange(n) * s for n, s in zip(shape, SPACING))
        cavity = ((y[:, None] - 30) ** 2 + (x[None, :] - 10) ** 2 <= 35 ** 2)[None].repeat(shape[0], 0)
        truth = ellipsoid(shape, (12, 30, 42), (10, 10, 10)) & cavity  # a mass against a curved wall
        hu = np.full(shape, LUNG_HU, np.int16)
        hu[~cavity] = WALL_HU  # chest wall: the same HU as the mass
        hu[truth] = TUMOUR_HU
        vol = Volume(hu, spacing=SPACING)
        boxes = boxes_from_mask(truth, vol)
        scores = {}
        for shape_ in ("ellipse", "box"):
            r = grow_tumour(vol, boxes, margin_mm=2, shape=shape_)
            scores[shape_] = dice(r.mask, truth)
            assert scores[shape_] > 0.8, shape_
            assert r.mask[truth].mean() > 0.9, shape_
            # the wall joins only within the box + 2 mm, never beyond
            assert not (r.mask & ~cavity)[:, :, int(56 / SPACING[2]) + 1:].any(), shape_
        assert scores["ellipse"] > scores["box"]  # the box's corners hold wall, the ellipse's do not

    def test_region_stays_on_the_annotated_slices(self, phantom):
        vol, truth = phantom
        part = truth.copy()
        part[:18] = False
        r = grow_tumour(vol, boxes_from_mask(part, vol), margin_mm=5)
        assert not r.mask[:18].any()

    def test_given_seed(self, phantom):
        vol, truth = phantom
        boxes = boxes_from_mask(truth, vol)
        assert grow_tumour(vol, boxes, seeds=[(20, 50, 50)]).voxels > 0.9 * truth.sum()
        with pytest.raises(DicomSeriesError, match=r"seed \(20, 0, 0\) is not a voxel of -300\.\.200 HU"):
            grow_tumour(vol, boxes, seeds=[(20, 0, 0)])

    def test_boxes_in_air_say_so(self, phantom):
        vol, _ = phantom
        lung_only = np.zeros(vol.shape, bool)
        lung_only[5, 80:90, 80:90] = True
        with pytest.raises(DicomSeriesError, match=r"no voxel inside the 1 box\(es\) lies in -300\.\.200 HU"):
            grow_tumour(vol, boxes_from_mask(lung_only, vol))

    def test_boxes_of_another_volume(self, phantom):
        vol, truth = phantom
        other = Volume(vol.hu[:30], spacing=SPACING)
        with pytest.raises(DicomSeriesError, match=r"placed on a volume of shape \(30, 100, 100\)"):
            grow_tumour(vol, boxes_from_mask(truth[:30], other))

    def test_bad_options(self, phantom):
        vol, truth = phantom
        boxes = boxes_from_mask(truth, vol)
        with pytest.raises(ValueError, match="low_hu must be below high_hu"):
            grow_tumour(vol, boxes, low_hu=100, high_hu=0)
        with pytest.raises(ValueError, match="shape must be"):
            grow_tumour(vol, boxes, shape="circle")


class TestKeptFraction:
    def test_values_and_errors(self):
        t = np.zeros((2, 4, 4), bool)
        t[0] = True
        lungs = np.zeros(t.shape, np.uint8)
        lungs[0, :1] = 2
        assert kept_fraction(lungs, t) == 0.25
        with pytest.raises(ValueError, match="empty"):
            kept_fraction(lungs, np.zeros(t.shape, bool))


class TestKeptTable:
    def test_percent_per_tumour_and_mask(self):
        t = np.zeros((1, 4, 4), bool)
        t[0, :2] = True
        a = np.zeros(t.shape, np.uint8)
        a[0, 0] = 1
        table = kept_table({"a": a, "all": np.ones(t.shape)}, {"t": t, "row 0": a > 0})
        assert table.loc["t", "a"] == 50.0 and table.loc["row 0", "a"] == 100.0
        assert table["all"].tolist() == [100.0, 100.0]


class TestDrawing:
    def test_figures(self, phantom):
        vol, truth = phantom
        boxes = boxes_from_mask(truth, vol)
        r = grow_tumour(vol, boxes)
        fig = draw_tumour(vol, r, boxes=boxes)
        assert f"{r.longest_axial_mm:.1f} mm" in fig.axes[0].get_title()
        fig = box_montage(vol, boxes, cols=4, region=r)
        assert len([ax for ax in fig.axes if ax.images]) == len(boxes)

    def test_viewer_boxes_follow_the_radiological_flip(self):
        hu = np.full((5, 40, 60), LUNG_HU, np.int16)
        m = np.zeros(hu.shape, bool)
        m[2, 10:20, 5:15] = True  # near the first column
        # columns run towards the patient's right (-x): the viewer flips them
        flipped = Volume(hu, spacing=(5, 1.0, 1.0), direction=[[0, 0, -1], [0, 1, 0], [1, 0, 0]])
        plain = Volume(hu, spacing=(5, 1.0, 1.0))
        for vol, expect_x in ((plain, (5.0, 15.0)), (flipped, (60 - 15.0, 60 - 5.0))):
            fig = tumour_viewer(vol, boxes_from_mask(m, vol), margin_mm=100, extra_slices=0)
            steps = fig.layout.sliders[0].steps
            assert [s.label for s in steps] == ["2"]
            rect = steps[0].args[1]["shapes"][0]
            assert (rect["x0"], rect["x1"]) == pytest.approx(expect_x)
            assert (rect["y0"], rect["y1"]) == pytest.approx((10.0, 20.0))


@pytest.fixture(scope="module")
def sample_case():
    from helpers.book.notebook import sample_truth
    from helpers.sample import ensure_sample

    folder = ensure_sample() / "dicom"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeriesWarning)
        vol = load_series(folder)
    return vol, sample_truth(folder, vol)


class TestSampleTumour:
    def test_grown_from_its_truth_boxes(self, sample_case):
        vol, truth = sample_case
        t = truth["tumour"]
        r = grow_tumour(vol, boxes_from_mask(t, vol))
        ref = measure_tumour(t, vol)
        assert ref.volume_ml == pytest.approx(truth["info"]["tumour"]["volume_ml"], rel=0.01)
        assert dice(r.mask, t) > 0.85
        assert r.volume_ml == pytest.approx(ref.volume_ml, rel=0.25)


@pytest.mark.realdata
class TestRealTumour:
    def test_b40f_mass(self, real_case):
        vol = load_series(real_case / "ct-b40f")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeriesWarning)  # the B70f boxes in the same folder
            boxes = read_boxes(find_annotations(real_case / "ct-b40f"), vol)
        r = grow_tumour(vol, boxes)
        assert r.slices == 10 and boxes.slice_indices[0] <= r.slice_index <= boxes.slice_indices[-1]
        assert 60 < r.volume_ml < 200 and 50 < r.longest_axial_mm < 100  # a large hilar mass
        assert -100 < r.mean_hu < 100
        assert r.mask[boxes.mask()].mean() > 0.5
