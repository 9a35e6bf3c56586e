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

    def test_slice_spacing(self):
        assert checks.check_slice_spacing(2.5, vol()).ok
        assert "Slice Thickness" in checks.check_slice_spacing(5.0, vol()).hint

    def test_sorted_positions(self):
        v = vol(spacing=(2.0, 1, 1))
        assert checks.check_sorted_positions(np.sort(v.slice_positions), v).ok
        assert checks.check_sorted_positions(v.slice_positions[::-1], v).ok is False


class TestChapter2:
    def test_hu_uint16_wrap_is_wrong(self):
        s = np.array([0, 500, 2000], np.uint16)
        assert checks.check_hu(s.astype(float) - 1024, s, 1, -1024).ok
        assert checks.check_hu(s - np.uint16(1024), s, 1, -1024).ok is False

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

    @pytest.mark.parametrize("answer,ok", [(0, True), ("nearest", True), (1, False), ("linear", False)])
    def test_mask_order(self, answer, ok):
        assert bool(checks.check_mask_order(answer).ok) is ok


class TestChapter7:
    def test_volume_ml(self):
        m = np.zeros((10, 10, 10), np.uint8)
        m[:5] = 2
        assert checks.check_volume_ml(500 * 2 / 1000, m, (2, 1, 1)).ok
        assert checks.check_volume_ml(500, m, (2, 1, 1)).ok is False

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
        assert checks.check_pseudonym("A1", p).ok is False
        assert checks.check_pseudonym(..., p).ok is None


class TestChapter7b:
    def test_annotated_slices_fencepost(self):
        from types import SimpleNamespace

        boxes = SimpleNamespace(slice_indices=[97, 100, 112])
        assert checks.check_annotated_slices(16, boxes).ok
        fb = checks.check_annotated_slices(15, boxes)
        assert fb.ok is False and "fencepost" in fb.hint
        assert checks.check_annotated_slices(..., boxes).ok is None
        assert "last - first + 1" in checks.check_annotated_slices(3, boxes).hint

    def test_axial_diameter(self):
        ends = [[10, 20], [40, 60]]  # 30 rows, 40 columns
        spacing = (8.0, 0.5, 0.7)
        right = float(np.hypot(30 * 0.5, 40 * 0.7))
        assert checks.check_axial_diameter(right, ends, spacing).ok
        fb = checks.check_axial_diameter(50.0, ends, spacing)  # the length in pixels
        assert fb.ok is False and "in pixels" in fb.hint
        fb = checks.check_axial_diameter(30 * 0.5 + 40 * 0.7, ends, spacing)
        assert fb.ok is False and "hypotenuse" in fb.hint
        assert checks.check_axial_diameter(..., ends, spacing).ok is None
