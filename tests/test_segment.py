"""Tests for helpers.segment: segment_lungs, lung_qc, the 2017 per-slice and Kaggle 3-D methods.

Most tests use the numpy chest phantom in ``helpers/testing/lung_phantom.py`` (small grids,
so the module stays well under a minute); the real case runs through the
``real_case`` fixture and is skipped when ../shared/data is absent.
"""
import glob
import inspect
import os
import re
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from scipy import ndimage

from helpers.errors import DicomSeriesError, SeriesWarning
from helpers.legacy import (
    STEPS_2017,
    _kmeans_1d_two,
    make_lungmask_2017_steps,
    segment_lungs_2017,
    segment_lungs_kaggle3d,
)
from helpers.metrics import dice
from helpers.segment import (
    LEFT_LUNG,
    RIGHT_LUNG,
    LungParams,
    _edt,
    lung_qc,
    segment_lungs,
)
from helpers.testing.lung_phantom import make_phantom
from helpers.volume import Volume

CARINA_Z_MM = 160.0


def _trachea(vol, truth):
    z = vol.index_to_lps(np.c_[np.arange(vol.shape[0]), np.zeros(vol.shape[0]), np.zeros(vol.shape[0])])[:, 2]
    return truth["airway"] & (z > CARINA_Z_MM + 5)[:, None, None]


@pytest.fixture(scope="module")
def phantom():
    vol, truth = make_phantom()
    labels, steps = segment_lungs(vol, return_steps=True)
    return vol, truth, labels, steps


class TestSegmentLungs:
    def test_output_type_and_labels(self, phantom):
        vol, _, labels, _ = phantom
        assert labels.dtype == np.uint8 and labels.shape == vol.shape
        assert set(np.unique(labels)) == {0, RIGHT_LUNG, LEFT_LUNG}

    def test_dice_per_lung(self, phantom):
        _, truth, labels, _ = phantom
        for lab in (RIGHT_LUNG, LEFT_LUNG):
            assert dice(labels, truth["lungs"], label=lab) >= 0.98

    def test_tumour_at_chest_wall_and_nodule_inside(self, phantom):
        _, truth, labels, _ = phantom
        assert (labels > 0)[truth["tumour"]].mean() >= 0.95
        assert (labels > 0)[truth["nodule"]].mean() >= 0.95

    def test_trachea_excluded_heart_not_swallowed(self, phantom):
        vol, truth, labels, _ = phantom
        assert (labels > 0)[_trachea(vol, truth)].mean() < 0.01
        assert (labels > 0)[truth["heart"]].mean() < 0.01

    def test_closing_is_what_keeps_the_tumour(self, phantom):
        vol, truth, _, _ = phantom
        bare = segment_lungs(vol, closing_radius_mm=0, hull_margin_mm=0)
        assert (bare > 0)[truth["tumour"]].mean() < 0.8

    def test_steps_for_teaching(self, phantom):
        _, _, _, steps = phantom
        assert {"body", "air", "airway", "lungs_raw", "added", "labels_work", "work_spacing"} <= set(steps)
        assert steps["airway"].any()

    @pytest.mark.parametrize(
        "name, kwargs",
        [
            ("chest-abdomen-pelvis", dict(z_mm=(-300.0, 230.0))),
            ("apices cut off", dict(z_mm=(-30.0, 170.0))),
            ("bases cut off", dict(z_mm=(60.0, 230.0))),
            ("8 mm slices", dict(slice_mm=8.0)),
            ("1 mm slices", dict(slice_mm=1.0, n_xy=96)),
            ("sharp kernel noise", dict(noise_hu=80.0)),
            ("lungs touching at the midline", dict(touching=True)),
            ("no table", dict(table=False)),
        ],
    )
    def test_holds_on(self, name, kwargs):
        kw = dict(n_xy=128)
        kw.update(kwargs)
        vol, truth = make_phantom(**kw)
        labels = segment_lungs(vol)
        for lab in (RIGHT_LUNG, LEFT_LUNG):
            assert dice(labels, truth["lungs"], label=lab) >= 0.97, (name, lab)
        assert (labels > 0)[truth["tumour"]].mean() >= 0.9, name
        assert (labels > 0)[truth["heart"]].mean() < 0.02, name

    def test_side_follows_patient_not_image(self):
        vol, truth = make_phantom(n_xy=128, flip_x=True)
        labels = segment_lungs(vol)
        # columns reversed: the right lung is now on the high-column side of the image
        assert truth["lungs"][:, :, -40:].max() == RIGHT_LUNG
        assert dice(labels, truth["lungs"], label=RIGHT_LUNG) >= 0.98
        assert dice(labels, truth["lungs"], label=LEFT_LUNG) >= 0.98

    def test_no_lungs_warns(self):
        hu = np.full((6, 40, 40), 40, np.int16)
        with pytest.warns(SeriesWarning, match=r"found no air component.*expected two lungs.*spans 40 to 40 HU"):
            out = segment_lungs(Volume(hu, spacing=(5.0, 1.0, 1.0)))
        assert out.shape == hu.shape and not out.any()

    def test_bare_array_is_refused_not_taken_as_1_mm(self, phantom):
        """Every threshold is in mm or mL: a bare array has no spacing, and guessing 1 mm is refused."""
        vol = phantom[0]
        with pytest.raises(ValueError, match=r"bare array of shape .* no voxel size.*Volume\(array, spacing="):
            segment_lungs(vol.hu)

    def test_not_3d(self):
        with pytest.raises(ValueError, match="3-D"):
            segment_lungs(np.zeros((4, 4)))

    def test_single_slice_is_an_error(self):
        vol, _ = make_phantom(n_xy=64, z_mm=(100.0, 102.5))
        assert vol.shape[0] == 1
        with pytest.raises(DicomSeriesError, match=r"at least 3 slices.*has 1 .*load_series"):
            segment_lungs(vol)

    def test_unknown_option_names_the_valid_ones(self):
        with pytest.raises(TypeError, match=r"unknown option\(s\) closing_radius.*closing_radius_mm"):
            segment_lungs(np.zeros((4, 8, 8)), closing_radius=10)

    def test_params_and_keywords_agree(self):
        vol, _ = make_phantom(n_xy=64)
        a = segment_lungs(vol, params=LungParams(closing_radius_mm=0))
        b = segment_lungs(vol, closing_radius_mm=0)
        c = segment_lungs(vol, params=LungParams(closing_radius_mm=12), closing_radius_mm=0)  # keyword wins
        assert np.array_equal(a, b) and np.array_equal(a, c)

    def test_every_threshold_is_a_documented_named_parameter(self):
        import dataclasses

        sig = inspect.signature(segment_lungs)
        keyword_only = [n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        assert keyword_only == ["params", "return_steps"]
        doc = LungParams.__doc__
        for f in dataclasses.fields(LungParams):
            assert re.search(rf"^\s+{f.name} : .*default", doc, re.M), f"{f.name} undocumented"
            if f.name.endswith(("_hu", "_mm", "_ml", "_mm2")):
                assert isinstance(f.default, (int, float, tuple)), f.name
        with pytest.raises(dataclasses.FrozenInstanceError):
            LungParams().closing_radius_mm = 1.0  # type: ignore[misc]

    def test_edt_matches_scipy(self):
        from scipy import ndimage

        m = np.random.default_rng(0).random((12, 20, 24)) > 0.05
        sp = (2.5, 0.7, 0.9)
        np.testing.assert_allclose(_edt(m, sp), ndimage.distance_transform_edt(m, sampling=sp), atol=1e-4)

    def test_hole_filling_matches_scipy(self):
        """The one-pass hole filling (a labelling of the background) is scipy's, in 3-D and slice by slice."""
        from helpers.segment import _INPLANE, _fill_holes, _fill_holes_2d

        rng = np.random.default_rng(1)
        for _ in range(3):
            m = ndimage.binary_closing(rng.random((9, 30, 34)) > 0.55, iterations=1)
            m[:, 10:20, 12:22] = True
            m[2:7, 13:17, 15:19] = False  # a cavity: a hole in 3-D and in each slice
            np.testing.assert_array_equal(_fill_holes(m), ndimage.binary_fill_holes(m))
            np.testing.assert_array_equal(_fill_holes_2d(m), ndimage.binary_fill_holes(m, structure=_INPLANE))

    def test_block_mean_is_numpys_reshape_mean(self):
        """The strided block sums give numpy's reduction bits (the lung mask depends on them)."""
        from helpers.segment import _block_mean

        rng = np.random.default_rng(2)
        hu = (rng.normal(-500, 400, (13, 37, 41))).astype(np.float32)
        for f in [(2, 2, 2), (1, 3, 3), (3, 2, 1), (2, 1, 4), (1, 1, 9)]:
            nz, ny, nx = (-(-n // k) * k for n, k in zip(hu.shape, f))
            padded = np.pad(hu, [(0, a - b) for a, b in zip((nz, ny, nx), hu.shape)], mode="edge")
            want = padded.reshape(nz // f[0], f[0], ny // f[1], f[1], nx // f[2], f[2]).mean(axis=(1, 3, 5))
            np.testing.assert_array_equal(_block_mean(hu, f), want)
        np.testing.assert_array_equal(_block_mean(hu.astype(np.int16), (2, 2, 2)),
                                      _block_mean(hu.astype(np.int16).astype(np.float32), (2, 2, 2)))

    def test_grid_lps_x_matches_lps(self):
        from helpers.segment import _Grid

        d = np.array([[0.0, 0.0, 1.0], [0.0, 0.98, -0.2], [1.0, 0.0, 0.0]])  # a tilted, reordered grid
        d[:, 1] /= np.linalg.norm(d[:, 1])
        vol = Volume(np.zeros((6, 8, 10), np.int16), spacing=(2.5, 0.7, 0.9), origin=(-10.0, 5.0, 30.0),
                     direction=d)
        grid = _Grid(vol, (1, 3, 2))
        idx = np.nonzero(np.ones((3, 4, 5), bool))
        np.testing.assert_allclose(grid.lps_x(idx), grid.lps(np.c_[idx])[:, 0], rtol=0, atol=1e-9)


#: Each phantom case: make_phantom options.  ``mass`` cases are scored on that mass,
#: the others on the chest-wall tumour every phantom has.
PHANTOM_CASES = {
    "hilar mass against the bronchus": dict(mass="hilar"),
    "mass against the mediastinum by the aorta": dict(mass="aortic"),
    "mass on the posterior chest wall": dict(mass="posterior"),
    "effusion": dict(effusion=True),
}  # the chest-abdomen-pelvis extent is TestSegmentLungs.test_holds_on's first case


class TestTumourCases:
    """The situations of issue 11: masses at the hilum, the aorta, the chest wall; an effusion."""

    @pytest.mark.parametrize("name", list(PHANTOM_CASES))
    def test_case(self, name):
        vol, truth = make_phantom(n_xy=128, noise_hu=20.0, **PHANTOM_CASES[name])
        labels = segment_lungs(vol)
        for lab in (RIGHT_LUNG, LEFT_LUNG):
            assert dice(labels, truth["lungs"], label=lab) >= 0.97, (name, lab)
        mass = truth["mass"] if truth["mass"].any() else truth["tumour"]
        assert (labels > 0)[mass].mean() >= 0.6, name
        assert (labels > 0)[truth["heart"]].mean() < 0.02, name
        assert (labels > 0)[_trachea(vol, truth)].mean() < 0.01, name
        if truth["effusion"].any():
            assert (labels > 0)[truth["effusion"]].mean() < 0.1, name

    def test_small_closing_alone_loses_the_hilar_mass(self):
        """The large-ball bite is what keeps the mass: without it the case fails."""
        vol, truth = make_phantom(n_xy=128, mass="aortic")
        bare = segment_lungs(vol, closing_radius_mm=0)
        assert (bare > 0)[truth["mass"]].mean() < 0.6


class TestLungQC:
    def test_component_counts_and_volumes_like_full_volume_labelling(self):
        """Counting within each lung's box (no int64 copy of the labels) gives the full-volume answer."""
        from scipy import ndimage

        lab = np.zeros((30, 40, 50), np.uint8)
        lab[2:10, 5:20, 3:12] = 1
        lab[15:25, 5:20, 3:12] = 1          # a second right-lung piece
        lab[20, 30, 5] = 1                   # a crumb below min_component_ml
        lab[5:28, 22:38, 30:48] = 2
        vol = Volume(np.zeros(lab.shape, np.float32), spacing=(2.0, 1.0, 1.0))
        qc = lung_qc(lab, vol, warn=False, min_component_ml=0.01)
        six = ndimage.generate_binary_structure(3, 1)
        want = {}
        for side in (RIGHT_LUNG, LEFT_LUNG):
            full, _ = ndimage.label(lab == side, structure=six)
            want[side] = int((np.bincount(full.ravel())[1:] * vol.voxel_volume_ml >= 0.01).sum())
        assert qc["components"] == want == {RIGHT_LUNG: 2, LEFT_LUNG: 1}
        assert qc["right_ml"] == pytest.approx(np.count_nonzero(lab == 1) * vol.voxel_volume_ml)
        assert lung_qc(lab.astype(bool), vol, warn=False)["components"][RIGHT_LUNG] == 3  # bool: every lung is label 1
        quick = lung_qc(lab, vol, warn=False, min_component_ml=0.01, count_components=False)
        assert quick["components"] == {} and {k: v for k, v in quick.items() if k != "components"} == {
            k: v for k, v in qc.items() if k != "components"}

    def test_volumes_and_plausible(self, phantom):
        vol, _, labels, _ = phantom
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            qc = lung_qc(labels, vol)
        assert qc["plausible"] and qc["flags"] == []
        assert qc["components"] == {RIGHT_LUNG: 1, LEFT_LUNG: 1}
        assert 1000 < qc["right_ml"] < 4000 and 1000 < qc["left_ml"] < 4000
        assert qc["left_right_ratio"] == pytest.approx(qc["left_ml"] / qc["right_ml"])
        assert qc["total_ml"] == pytest.approx(qc["right_ml"] + qc["left_ml"])

    def test_one_lung_missing_warns(self, phantom):
        vol, _, labels, _ = phantom
        one = np.where(labels == LEFT_LUNG, 0, labels).astype(np.uint8)
        with pytest.warns(SeriesWarning, match="left lung missing"):
            qc = lung_qc(one, vol)
        assert "left lung missing" in qc["flags"] and not qc["plausible"]

    def test_border_and_small_volume(self):
        lab = np.zeros((5, 10, 10), np.uint8)
        lab[:, 2:5, 2:5] = 1
        lab[2:3, 2:5, 6:9] = 2
        qc = lung_qc(lab, Volume(np.zeros(lab.shape), spacing=(1.0, 1.0, 1.0)), warn=False)
        assert "lung touches the scan border" in qc["flags"]
        assert qc["border"] == ["first slice", "last slice"]
        assert "implausible total volume" in qc["flags"]
        assert "implausible left/right ratio" in qc["flags"]

    def test_shape_mismatch(self, phantom):
        vol = phantom[0]
        with pytest.raises(ValueError, match="differs from the volume"):
            lung_qc(np.zeros((2, 2, 2), np.uint8), vol)


class TestMakeLungmask2017Steps:
    def test_steps_in_order_and_inspectable(self, phantom):
        vol, truth, _, _ = phantom
        steps = make_lungmask_2017_steps(vol.hu[40])  # a mid-lung slice (on slices 60-70 it keeps no region)
        assert list(steps) == list(STEPS_2017)
        assert steps["threshold"].dtype == np.float64 and set(np.unique(steps["threshold"])) <= {0.0, 1.0}
        assert steps["mask"].dtype == np.int8
        assert isinstance(steps["bbox_kept"], list) and steps["bbox_kept"]
        # the values, not just the types: the threshold step is "darker than the k-means threshold"
        norm = steps["normalised"]
        np.testing.assert_array_equal(steps["threshold"], (norm < steps["kmeans_threshold"]).astype(np.float64))
        # the final mask holds this slice's lungs (and, dilated 10 px, some of their surroundings)
        lungs = truth["lungs"][40] > 0
        assert lungs.any() and steps["mask"][lungs].mean() > 0.9
        assert (steps["mask"] > 0).sum() > lungs.sum()

    def test_kmeans_two_clusters(self):
        v = np.r_[np.full(50, -2.0), np.full(50, 1.0), np.full(10, 1.2)]
        lo, hi = _kmeans_1d_two(v)
        assert lo == pytest.approx(-2.0) and hi == pytest.approx((50 + 12) / 60)


class TestSegmentLungs2017:
    def test_one_undivided_mask_that_spills_over(self, phantom):
        vol, truth, labels, _ = phantom
        mask, steps = segment_lungs_2017(vol, return_steps=True)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        lungs = truth["lungs"] > 0
        assert mask[lungs].mean() > 0.5
        assert mask[~lungs].sum() > 0.05 * lungs.sum()  # the final 10-pixel dilation spills over
        assert dice(mask, lungs) < dice(labels, lungs) - 0.05
        assert steps["labels"].shape == vol.shape and len(steps["kmeans_threshold"]) == vol.shape[0]


class TestSegmentLungsKaggle3d:
    def test_finds_lungs_and_loses_the_tumour(self, phantom):
        vol, truth, _, _ = phantom
        m = segment_lungs_kaggle3d(vol)
        assert m.dtype == np.int8
        lungs = truth["lungs"] > 0
        assert dice(m, lungs) > 0.9
        assert (m > 0)[truth["tumour"]].mean() < 0.5  # the documented failure


# ---------------------------------------------------------------- the bundled sample
@pytest.fixture(scope="module")
def sample():
    from helpers.io import load_series
    from helpers.sample import ensure_sample, load_labels

    folder = ensure_sample()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeriesWarning)
        vol = load_series(folder / "dicom")
    truth = load_labels(folder)
    return vol, truth, segment_lungs(vol)


class TestSample:
    def test_dice_per_lung(self, sample):
        _, truth, labels = sample
        for lab in (RIGHT_LUNG, LEFT_LUNG):
            assert dice(labels, truth["lungs"], label=lab) >= 0.98

    def test_tumour_nodule_in_trachea_heart_out(self, sample):
        _, truth, labels = sample
        leg = {k: int(v) for k, v in truth["legend"].items()}
        tissue = truth["tissue"]
        inside = lambda name: (labels > 0)[tissue == leg[name]].mean()  # noqa: E731
        assert inside("tumour") >= 0.99  # issue 11: as before the bite rework (99.1 %)
        assert inside("nodule") >= 0.95
        assert inside("airway") < 0.01  # trachea and main bronchi
        assert inside("heart_vessels") < 0.01  # boundary voxels only (0.0 % with generator v7; 0.9 % before issue 11)
        assert inside("bowel_gas") == 0 and inside("table_air") == 0

    def test_qc_plausible(self, sample):
        vol, truth, labels = sample
        qc = lung_qc(labels, vol, warn=False)
        assert qc["flags"] == [] and qc["plausible"] and qc["components"] == {RIGHT_LUNG: 1, LEFT_LUNG: 1}
        # the volumes are the sample's ground truth (its lungs include the tumour), to 2 %
        for lung, key in ((RIGHT_LUNG, "right_ml"), (LEFT_LUNG, "left_ml")):
            truth_ml = np.count_nonzero(truth["lungs"] == lung) * vol.voxel_volume_ml
            assert qc[key] == pytest.approx(truth_ml, rel=0.02), key
        assert qc["left_right_ratio"] == pytest.approx(qc["left_ml"] / qc["right_ml"])


# ---------------------------------------------------------------- real case
def _boxes(case, vol_b40, vol_b70):
    """Tumour boxes (bool, z y x) of the B40f grid; XML names are SOP UIDs of either series."""
    uids = {u: k for k, u in enumerate(vol_b40.meta["sop_instance_uids"])}
    uids.update({u: k for k, u in enumerate(vol_b70.meta["sop_instance_uids"])})
    m = np.zeros(vol_b40.shape, bool)
    for f in glob.glob(os.path.join(case, "tumour-boxes", "*.xml")):
        k = uids[os.path.basename(f)[:-4]]
        for bb in ET.parse(f).iter("bndbox"):
            x0, y0, x1, y1 = (int(bb.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax"))
            m[k, y0 : y1 + 1, x0 : x1 + 1] = True
    return m


@pytest.mark.realdata
class TestRealCase:
    def test_two_plausible_lungs_and_more_tumour_than_kaggle(self, real_case):
        from helpers.io import load_series

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeriesWarning)
            b40 = load_series(real_case / "ct-b40f")
            b70 = load_series(real_case / "ct-b70f")
        labels = segment_lungs(b40)
        qc = lung_qc(labels, b40, warn=False)
        assert 800 < qc["right_ml"] < 4000 and 800 < qc["left_ml"] < 4000
        assert qc["components"][RIGHT_LUNG] >= 1 and qc["components"][LEFT_LUNG] >= 1
        # side from geometry: the right lung has the smaller LPS x
        xr = b40.index_to_lps(np.argwhere(labels == RIGHT_LUNG).mean(0))[0]
        xl = b40.index_to_lps(np.argwhere(labels == LEFT_LUNG).mean(0))[0]
        assert xr < xl
        boxes = _boxes(str(real_case), b40, b70)
        solid = boxes & (b40.hu > -400)
        ours = (labels > 0)[solid].mean()
        kaggle = (segment_lungs_kaggle3d(b40) > 0)[solid].mean()
        assert ours > kaggle + 0.1
        # the sharp-kernel series gives the same lungs
        assert dice(segment_lungs(b70) > 0, labels > 0) > 0.97


#: A straight edge along a row longer than this (mm) next to the tumour is the
#: row-by-row mediastinum's cut (it was 28-68 mm on slices z = 184-208 mm).
ROW_CUT_MM = 15.0


def _longest_row_edge_mm(mask2d, region, pixel_mm):
    """Longest run (mm) of mask edges between two rows, inside ``region``."""
    edge = (mask2d[:-1] != mask2d[1:]) & region[:-1]
    best = 0
    for row in edge:
        if row.any():
            d = np.diff(np.r_[0, row.astype(np.int8), 0])
            best = max(best, int((np.nonzero(d == -1)[0] - np.nonzero(d == 1)[0]).max()))
    return best * pixel_mm


@pytest.fixture(scope="module")
def case(real_case):
    """Both real reconstructions, their tumour boxes, and ``segment_lungs(..., return_steps=True)`` of each."""
    from helpers.io import load_series

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeriesWarning)
        vols = {s: load_series(real_case / f"ct-{s}") for s in ("b40f", "b70f")}
    boxes = _boxes(str(real_case), vols["b40f"], vols["b70f"])
    return vols, boxes, {s: segment_lungs(v, return_steps=True) for s, v in vols.items()}


@pytest.mark.realdata
class TestRealTumour:
    """Issue 11 on the real case: the boxed tumour kept, no row-aligned cut, the airway out."""

    @pytest.mark.parametrize("series", ["b40f", "b70f"])
    def test_tumour_kept(self, case, series):
        vols, boxes, res = case
        solid = boxes & (vols[series].hu > -400)
        assert (res[series][0] > 0)[solid].mean() >= 0.6

    @pytest.mark.parametrize("series", ["b40f", "b70f"])
    def test_no_row_aligned_cut_at_the_tumour(self, case, series):
        vols, boxes, res = case
        labels = res[series][0]
        for k in np.nonzero(boxes.any(axis=(1, 2)))[0]:
            region = ndimage.binary_dilation(boxes[k], iterations=20)  # the box and 20 pixels around it
            for lab in (RIGHT_LUNG, LEFT_LUNG):
                run = _longest_row_edge_mm(labels[k] == lab, region, vols[series].spacing[1])
                assert run <= ROW_CUT_MM, (series, k, lab, run)

    @pytest.mark.parametrize("series", ["b40f", "b70f"])
    def test_tracked_airway_out(self, case, series):
        vols, _, res = case
        labels, steps = res[series]
        airway = steps["airway"]
        assert airway.any()
        f = [int(round(w / s)) for w, s in zip(steps["work_spacing"], vols[series].spacing)]
        full = airway.repeat(f[0], 0).repeat(f[1], 1).repeat(f[2], 2)
        crop = tuple(slice(0, min(a, b)) for a, b in zip(full.shape, labels.shape))
        lumen = full[crop] & (vols[series].hu[crop] < -900)
        assert (labels[crop] > 0)[lumen].mean() < 0.01

