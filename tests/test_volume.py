"""Volume carries spacing and geometry with the array."""
import numpy as np
import pytest

from helpers import Volume


class TestVolume:
    def test_defaults_describe_a_standard_axial_scan(self):
        v = Volume(np.zeros((3, 4, 5), np.int16), spacing=(2.5, 0.7, 0.7), origin=(-100, -120, 50))
        assert v.shape == (3, 4, 5)
        # z goes to the head (+z in LPS), rows go posterior (+y), columns go to the patient's left (+x)
        np.testing.assert_allclose(v.index_to_lps([1, 0, 0]), [-100, -120, 52.5])
        np.testing.assert_allclose(v.index_to_lps([0, 1, 0]), [-100, -119.3, 50])
        np.testing.assert_allclose(v.index_to_lps([0, 0, 1]), [-99.3, -120, 50])
        np.testing.assert_allclose(v.slice_positions, [50, 52.5, 55])

    def test_index_and_lps_round_trip(self):
        d = np.array([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]])
        v = Volume(np.zeros((3, 4, 5)), spacing=(2, 1, 0.5), origin=(1, 2, 3), direction=d)
        idx = np.array([[0, 0, 0], [2, 3, 4], [1.5, 0.5, 2.25]])
        np.testing.assert_allclose(v.lps_to_index(v.index_to_lps(idx)), idx)
        homog = np.c_[idx, np.ones(3)] @ v.affine.T
        np.testing.assert_allclose(homog[:, :3], v.index_to_lps(idx))

    def test_rejects_bad_shapes_and_spacing(self):
        with pytest.raises(ValueError, match="3-D"):
            Volume(np.zeros((4, 4)), spacing=(1, 1, 1))
        with pytest.raises(ValueError, match="positive"):
            Volume(np.zeros((2, 2, 2)), spacing=(1, 0, 1))

    def test_repr_hides_patient_identity(self):
        v = Volume(np.zeros((2, 2, 2), np.float32), spacing=(1, 1, 1),
                   meta={"patient_name": "DOE^JANE", "patient_id": "123", "modality": "CT"})
        text = repr(v)
        assert "DOE" not in text and "123" not in text
        assert "CT" in text and "(2, 2, 2)" in text

    def test_with_array_keeps_geometry(self):
        v = Volume(np.zeros((2, 3, 4), np.float32), spacing=(2, 1, 1), origin=(5, 6, 7), meta={"a": 1})
        m = v.with_array(np.ones((2, 3, 4), np.uint8))
        assert m.hu.dtype == np.uint8 and m.spacing == v.spacing and m.origin == v.origin
        m.meta["a"] = 2
        assert v.meta["a"] == 1
        with pytest.raises(ValueError, match="differs"):
            v.with_array(np.zeros((1, 1, 1)))
