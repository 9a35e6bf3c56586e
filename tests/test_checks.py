"""Exercise checkers: right, wrong (with a hint) and not answered, for each one."""

import numpy as np
import pytest
from pydicom import Dataset

from helpers.book import checks
from helpers.book.checks import Feedback
from helpers.volume import Volume


def vol(shape=(4, 8, 8), spacing=(2.5, 0.7, 0.7)):
    return Volume(np.zeros(shape, np.int16), spacing=spacing)


class TestFeedback:
    def test_right_wrong_missing_labels(self):
        assert repr(Feedback(True, "x")).startswith("✔ Right")
        assert "Hint: h" in repr(Feedback(False, "x", "h"))
        assert "Not answered yet" in repr(Feedback(None, "x", "h"))

    def test_html_escapes(self):
        assert "&lt;b&gt;" in Feedback(False, "<b>", "")._repr_html_()

    def test_bool(self):
        assert Feedback(True, "") and not Feedback(False, "") and not Feedback(None, "")


class TestCheckNumber:
    def test_within_tolerance(self):
        assert checks.check_number(100.5, 100, rtol=0.01).ok

    def test_wrong_names_both_values(self):
        fb = checks.check_number(3, 2.5, unit="mm", hint="h")
        assert fb.ok is False and "3 mm" in fb.message and "2.5 mm" in fb.message and fb.hint == "h"

    @pytest.mark.parametrize("missing", [..., None])
    def test_not_answered(self, missing):
        assert checks.check_number(missing, 1).ok is None

    def test_not_a_number(self):
        fb = checks.check_number("abc", 1)
        assert fb.ok is False and "one number" in fb.message


class TestCheckArray:
    def test_shape_mismatch(self):
        fb = checks.check_array(np.zeros(3), np.zeros(2), name="a")
        assert fb.ok is False and "shape (3,)" in fb.message

    def test_worst_value_named(self):
        fb = checks.check_array([0, 5], [0, 1])
        assert fb.ok is False and "index (1,)" in fb.message and "5" in fb.message

    def test_right(self):
        assert checks.check_array(np.ones((2, 2)), np.ones((2, 2))).ok


class TestCheckChoice:
    def test_case_insensitive(self):
        assert checks.check_choice(" Nearest", "nearest", options=["linear", "nearest"]).ok

    def test_unknown_option(self):
        assert "not one of" in checks.check_choice("x", "nearest", options=["nearest"]).message


class TestChapter1:
    def test_rescale(self):
        ds = Dataset()
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        assert checks.check_rescale((1, -1024), ds).ok
        assert checks.check_rescale((1, 1024), ds).ok is False

    def test_rescale_swapped(self):
        ds = Dataset()
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        fb = checks.check_rescale((-1024, 1), ds)
        assert fb.ok is False and "other way round" in fb.message

    def test_slice_spacing(self):
        assert checks.check_slice_spacing(2.5, vol()).ok

    def test_slice_thickness_rejected_with_reason(self):
        """Overlapping slices: 3 mm thick every 2.5 mm; the thickness is not the spacing."""
        v = vol()
        v.meta["slice_thickness"] = 3.0
        fb = checks.check_slice_spacing(3.0, v)
        assert fb.ok is False and "(0018,0050) Slice Thickness" in fb.message and "overlap" in fb.message
        assert "3.0" not in fb.hint and "np." not in fb.hint  # the hint points at the idea, not the line

    @pytest.mark.parametrize("answer, reason", [(-2.5, "sort them"), (0.7, "Pixel Spacing")])
    def test_slice_spacing_mistakes(self, answer, reason):
        fb = checks.check_slice_spacing(answer, vol())
        assert fb.ok is False and reason in fb.message

    def test_sorted_positions(self):
        v = vol(spacing=(2.0, 1, 1))
        assert checks.check_sorted_positions(np.sort(v.slice_positions), v).ok
        assert checks.check_sorted_positions(v.slice_positions[::-1], v).ok is False


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """IM1..IM12 of series 1.2, numbered head to feet; second_*.dcm: another series, same positions."""
    d = tmp_path_factory.mktemp("mixed")
    for k in range(12):
        for uid, name, number in (("1.2", f"IM{k + 1}", 12 - k), ("1.3", f"second_{k:04d}.dcm", k + 1)):
            if uid == "1.3" and k >= 4:
                continue
            ds = Dataset()
            ds.SeriesInstanceUID, ds.InstanceNumber = uid, number
            ds.ImagePositionPatient = [0, 0, -100.0 + 2.5 * k]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.save_as(d / name, implicit_vr=True, little_endian=True)
    (d / "notes.txt").write_text("not DICOM")
    return d


class TestFileOrder:
    """ch1 anatomical order: file names of one series in a mixed folder."""

    RIGHT = [f"IM{k + 1}" for k in range(12)]

    def test_right(self, folder):
        assert checks.check_file_order(self.RIGHT, folder, series_uid="1.2").ok
        assert checks.check_file_order([folder / n for n in self.RIGHT], folder, series_uid="1.2").ok

    def test_positions_instead_of_names(self, folder):
        """vol.slice_positions alone does not pass: it names no file."""
        fb = checks.check_file_order(np.arange(12) * 2.5 - 100.0, folder, series_uid="1.2")
        assert fb.ok is False and "file names" in fb.message and "slice_positions" in fb.message

    @pytest.mark.parametrize("order, reason", [
        (sorted(RIGHT), "file-name order"),
        (RIGHT[::-1], "head to feet"),
        (RIGHT + ["second_0000.dcm"], "another series"),
        (RIGHT[:-1], "missing"),
        (RIGHT[1:2] + RIGHT[:1] + RIGHT[2:], "not in anatomical order"),
    ])
    def test_mistakes_named(self, folder, order, reason):
        fb = checks.check_file_order(order, folder, series_uid="1.2")
        assert fb.ok is False and reason in fb.message

    def test_instance_number_order(self, folder, tmp_path):
        # numbers that are neither position order nor its reverse: swap two slices' numbers
        import shutil

        import pydicom

        d = tmp_path / "f"
        shutil.copytree(folder, d)
        a, b = pydicom.dcmread(d / "IM1", force=True), pydicom.dcmread(d / "IM2", force=True)
        a.InstanceNumber, b.InstanceNumber = 1, 12
        a.save_as(d / "IM1", implicit_vr=True, little_endian=True)
        b.save_as(d / "IM2", implicit_vr=True, little_endian=True)
        numbers = {f"IM{k + 1}": 12 - k for k in range(12)} | {"IM1": 1, "IM2": 12}
        by_number = sorted(self.RIGHT, key=numbers.get)
        fb = checks.check_file_order(by_number, d, series_uid="1.2")
        assert fb.ok is False and "Instance Number" in fb.message

    def test_unanswered(self, folder):
        assert checks.check_file_order(..., folder, series_uid="1.2").ok is None


class TestChapter2:
    def test_hu_uint16_wrap_is_wrong(self):
        s = np.array([0, 500, 2000], np.uint16)
        assert checks.check_hu(s.astype(float) - 1024, s, 1, -1024).ok
        fb = checks.check_hu(s - np.uint16(1024), s, 1, -1024)
        assert fb.ok is False and "wrap" in fb.message

    def test_hu_intercept_left_out(self):
        """Feedback about the intercept, not about float conversion."""
        s = np.array([[24, 1000], [1040, 2000]], np.int16)
        fb = checks.check_hu(s.astype(np.float32) * 1.0, s, 1, -1000)
        assert fb.ok is False and "left out the intercept" in fb.message
        assert "float" not in fb.message and "-1000" not in fb.hint and "×" not in fb.hint

    def test_hu_usual_intercept_where_the_file_differs(self):
        s = np.array([24, 1000, 2000], np.int16)
        fb = checks.check_hu(s.astype(np.float32) - 1024, s, 1, -1000)
        assert fb.ok is False and "this file says -1000" in fb.message

    def test_hu_slope_left_out(self):
        s = np.array([0, 1000, 2000], np.int16)
        fb = checks.check_hu(s + 0.0 - 1024, s, 2, -1024)
        assert fb.ok is False and "left out the slope" in fb.message

    def test_window_not_clipped(self):
        hu = np.linspace(-1500, 500, 11)
        fb = checks.check_window((hu + 160) / 400, hu, 40, 400)
        assert fb.ok is False and "outside [0, 1]" in fb.message

    def test_window_width_as_half_span(self):
        hu = np.linspace(-1500, 500, 11)
        fb = checks.check_window(np.clip((hu + 360) / 800, 0, 1), hu, 40, 400)
        assert fb.ok is False and "whole span" in fb.message

    def test_unit_range_per_scan_min_max(self):
        hu = np.array([-2000.0, -300, 1000])
        fb = checks.check_unit_range((hu - hu.min()) / (hu.max() - hu.min()), hu)
        assert fb.ok is False and "fixed HU range" in fb.message
        fb = checks.check_unit_range((hu + 1000) / 1400, hu)
        assert fb.ok is False and "clip" in fb.message

    def test_window(self):
        hu = np.linspace(-1500, 500, 11)
        right = np.clip((hu + 1350) / 1500, 0, 1)
        assert checks.check_window(right, hu, -600, 1500).ok
        assert checks.check_window(hu, hu, -600, 1500).ok is False

    def test_unit_range(self):
        hu = np.array([-2000.0, -300, 1000])
        assert checks.check_unit_range(np.array([0, 0.5, 1]), hu).ok
        assert checks.check_unit_range(hu / 1000, hu).ok is False


class TestChapter3:
    def test_resampled_shape(self):
        v = vol((10, 100, 100), (2.5, 0.7, 0.7))
        assert checks.check_resampled_shape((25, 70, 70), v).ok
        assert checks.check_resampled_shape((10, 100, 100), v).ok is False
        assert checks.check_resampled_shape(5, v).ok is False

    def test_memory(self):
        assert checks.check_memory_mb(4.0, (10, 100, 1000)).ok
        assert checks.check_memory_mb(1.0, (10, 100, 1000)).ok is False

    @pytest.mark.parametrize("answer, reason", [
        (4e6 / 2 ** 20, "MiB"),   # 3.81: 4.7 % below 4 MB, inside the old 5 % tolerance
        (1.0, "counts voxels"),
        (32.0, "megabits"),
        (0.004, "GB"),
    ])
    def test_memory_mistakes(self, answer, reason):
        fb = checks.check_memory_mb(answer, (10, 100, 1000))
        assert fb.ok is False and reason in fb.message

    def test_resampled_shape_mistakes(self):
        v = vol((10, 100, 100), (2.5, 0.7, 0.7))
        assert "before resampling" in checks.check_resampled_shape((10, 100, 100), v).message
        assert "reversed" in checks.check_resampled_shape((70, 70, 25), v).message
        fb = checks.check_resampled_shape((4, 143, 143), v, (1, 1, 1))
        assert fb.ok is False and "divided where you should multiply" in fb.message

    @pytest.mark.parametrize("answer,ok", [(0, True), ("nearest", True), (1, False), ("linear", False)])
    def test_mask_order(self, answer, ok):
        assert bool(checks.check_mask_order(answer).ok) is ok

    @pytest.mark.parametrize("answer, reason", [(1, "no label"), (3, "overshoots")])
    def test_mask_order_reason(self, answer, reason):
        fb = checks.check_mask_order(answer)
        assert fb.ok is False and reason in fb.message and "not the best choice" not in fb.message


class TestChapter4:
    @pytest.fixture()
    def lungs(self):
        rng = np.random.default_rng(0)
        hu = rng.normal(-850, 60, (4, 50, 50))
        labels = np.zeros(hu.shape, np.uint8)
        labels[:, 5:45, 3:24] = 1
        labels[:, 5:45, 26:47] = 2
        hu[:, 5:45, 26:47] -= 15  # the left lung a little darker: the two lungs' LAA differ
        return hu, labels

    def test_laa_right(self, lungs):
        hu, labels = lungs
        expected = 100 * np.mean(hu[labels > 0] < -950)
        assert checks.check_laa_percent(expected, hu, labels).ok

    def test_laa_one_lung_rejected_with_relative_tolerance(self, lungs):
        """A small LAA: the right-lung-only value is within 0.01 % absolute but not within 1 % relative."""
        hu, labels = lungs
        hu = np.where(hu < -950, hu, np.maximum(hu, -949))  # keep the counts
        right = 100 * np.mean(hu[labels == 1] < -950)
        fb = checks.check_laa_percent(right, hu, labels)
        assert fb.ok is False and "right lung only" in fb.message
        left = 100 * np.mean(hu[labels == 2] < -950)
        assert "left lung only" in checks.check_laa_percent(left, hu, labels).message

    def test_laa_small_values_relative(self):
        hu = np.full(100_000, -800.0)
        labels = np.ones(hu.shape, np.uint8)
        labels[50_000:] = 2
        hu[:21] = -1000   # right: 0.042 %
        hu[50_000:50_019] = -1000  # left: 0.038 %; both: 0.040 %
        assert checks.check_laa_percent(0.040, hu, labels).ok
        fb = checks.check_laa_percent(0.042, hu, labels)
        assert fb.ok is False and "right lung only" in fb.message

    def test_laa_fraction_and_whole_scan(self, lungs):
        hu, labels = lungs
        expected = 100 * np.mean(hu[labels > 0] < -950)
        assert "fraction" in checks.check_laa_percent(expected / 100, hu, labels).message
        everything = 100 * np.mean(hu < -950)
        assert "every voxel of the scan" in checks.check_laa_percent(everything, hu, labels).message

    def test_band_percent_mistakes(self):
        hu = np.array([-1000.0, -1000, -100, -50, 40, 60])
        body = np.array([0, 0, 1, 1, 1, 1], bool)
        assert checks.check_band_percent(50, hu, body).ok
        assert "fraction" in checks.check_band_percent(0.5, hu, body).message
        assert "whole scan" in checks.check_band_percent(100 * 2 / 6, hu, body).message


class TestChapter5:
    def test_aspect_inverted(self):
        v = vol(spacing=(2.5, 0.7, 0.7))
        fb = checks.check_aspect(0.7 / 2.5, v, "coronal")
        assert fb.ok is False and "upside down" in fb.message
        assert "square" in checks.check_aspect(1.0, v, "coronal").message

    @pytest.mark.parametrize("answer", [3, 5])
    def test_slice_index_one_off_has_a_reason(self, answer):
        v = Volume(np.zeros((10, 2, 2)), spacing=(2.5, 1, 1), origin=(0, 0, -10))
        fb = checks.check_slice_at(answer, v, 0.2)  # slice 4 lies at 0.0 mm
        assert fb.ok is False and "One slice off" in fb.message and "mm" in fb.message
        assert "not the best choice" not in fb.message

    def test_slice_position_instead_of_index(self):
        v = Volume(np.zeros((10, 2, 2)), spacing=(2.5, 1, 1), origin=(0, 0, -10))
        assert checks.check_slice_at(4, v, 0.2).ok
        fb = checks.check_slice_at(0.2, v, 0.2)
        assert fb.ok is False and "not a slice index" in fb.message


class TestChapter7:
    def test_volume_ml(self):
        m = np.zeros((10, 10, 10), np.uint8)
        m[:5] = 2
        assert checks.check_volume_ml(500 * 2 / 1000, m, (2, 1, 1)).ok
        assert checks.check_volume_ml(500, m, (2, 1, 1)).ok is False

    @pytest.mark.parametrize("answer, reason", [
        (500 * 2.5 * 0.7 * 0.7, "mm³"),
        (500 / 1000, "1 mm³"),
        (500 * 0.7 * 0.7 / 1000, "slice spacing"),
    ])
    def test_volume_ml_mistakes(self, answer, reason):
        m = np.zeros((10, 10, 10), bool)
        m[:5] = True
        fb = checks.check_volume_ml(answer, m, (2.5, 0.7, 0.7))
        assert fb.ok is False and reason in fb.message

    def test_dice_jaccard_named(self):
        a = np.array([1, 1, 1, 0])
        b = np.array([1, 1, 0, 1])
        fb = checks.check_dice(2 / 4, a, b)  # Jaccard 2/4; Dice 4/6
        assert fb.ok is False and "Jaccard" in fb.message

    def test_dice(self):
        a, b = np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])
        assert checks.check_dice(0.5, a, b).ok
        assert checks.check_dice(0.25, a, b).ok is False
        assert checks.check_dice(1.0, np.zeros(3), np.zeros(3)).ok


class TestChapter0:
    KEYS = {"PatientID": "P1", "StudyDate": "20170101-20171231", "ModalitiesInStudy": "CT"}

    def test_query_keys_right(self):
        assert checks.check_query_keys(self.KEYS, patient_id="P1", study_date="20170315").ok

    @pytest.mark.parametrize("change, match", [
        ({"PatientID": "P2"}, "must name the patient"),
        ({"StudyDate": "20170315"}, "not a range"),
        ({"StudyDate": "20160101-20181231"}, "does not cover"),
        ({"ModalitiesInStudy": "MR"}, "ask for CT"),
    ])
    def test_query_keys_wrong(self, change, match):
        fb = checks.check_query_keys({**self.KEYS, **change}, patient_id="P1", study_date="20170315")
        assert fb.ok is False and match in fb.message

    def test_query_keys_unanswered(self):
        assert checks.check_query_keys(..., patient_id="P1", study_date="20170315").ok is None

    def test_pseudonym(self, tmp_path):
        p = tmp_path / "m.csv"
        p.write_text("original_PatientID,new_PatientID\nA1,ZZ9\nA1,ZZ9\n")
        assert checks.check_pseudonym("ZZ9", p).ok
        fb = checks.check_pseudonym("A1", p)
        assert fb.ok is False and "original Patient ID" in fb.message
        assert checks.check_pseudonym(..., p).ok is None


class TestChapter7b:
    def test_annotated_slices_fencepost(self):
        from types import SimpleNamespace

        boxes = SimpleNamespace(slice_indices=[97, 100, 112])
        assert checks.check_annotated_slices(16, boxes).ok
        fb = checks.check_annotated_slices(15, boxes)
        assert fb.ok is False and "fencepost" in fb.message
        assert checks.check_annotated_slices(..., boxes).ok is None
        assert "both ends included" in checks.check_annotated_slices(7, boxes).hint
        assert "counts the boxes" in checks.check_annotated_slices(3, boxes).message

    def test_axial_diameter(self):
        ends = [[10, 20], [40, 60]]  # 30 rows, 40 columns
        spacing = (8.0, 0.5, 0.7)
        right = float(np.hypot(30 * 0.5, 40 * 0.7))
        assert checks.check_axial_diameter(right, ends, spacing).ok
        fb = checks.check_axial_diameter(50.0, ends, spacing)  # the length in pixels
        assert fb.ok is False and "in pixels" in fb.message
        fb = checks.check_axial_diameter(30 * 0.5 + 40 * 0.7, ends, spacing)
        assert fb.ok is False and "hypotenuse" in fb.message
        assert checks.check_axial_diameter(..., ends, spacing).ok is None


class TestChapter8:
    def test_batch_memory(self):
        shape = (8, 128, 256, 256)
        right = 8 * 128 * 256 * 256 * 4 / 1e6
        fb = checks.check_batch_memory_mb(right, shape)
        assert fb.ok and "GPU" in fb.message and "resampling a whole scan" not in fb.message

    @pytest.mark.parametrize("answer, reason", [
        (128 * 256 * 256 * 4 / 1e6, "one case"),
        (8 * 128 * 256 * 256 * 4 / 2 ** 20, "MiB"),
        (8 * 128 * 256 * 256 / 1e6, "counts voxels"),
    ])
    def test_batch_memory_mistakes(self, answer, reason):
        fb = checks.check_batch_memory_mb(answer, (8, 128, 256, 256))
        assert fb.ok is False and reason in fb.message

    def test_failed_cases(self):
        import pandas as pd

        qc = pd.DataFrame({"case_id": ["a", "b"], "status": ["done", "failed"]})
        assert checks.check_failed_cases(["b"], qc).ok
        assert checks.check_failed_cases("a", qc).ok is False
