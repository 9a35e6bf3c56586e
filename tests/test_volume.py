"""Volume carries spacing and geometry with the array."""
import numpy as np
import pytest

from helpers import Volume
from helpers.volume import as_array, as_mask, as_volume, is_mask


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


class TestAsVolume:
    def test_volume_passes_through(self):
        v = Volume(np.zeros((2, 3, 4), np.int16), spacing=(2.5, 0.7, 0.7))
        assert as_volume(v) is v and as_volume(v, spacing=(2.5, 0.7, 0.7)) is v

    def test_bare_array_with_spacing(self):
        a = np.zeros((2, 3, 4), np.int16)
        v = as_volume(a, spacing=(2.5, 0.7, 0.7))
        assert v.spacing == (2.5, 0.7, 0.7) and v.hu is a  # no copy

    def test_bare_array_without_spacing_is_refused(self):
        with pytest.raises(ValueError, match=r"^ct is a bare array of shape \(2, 3, 4\) with no voxel size.*"
                                             r"helpers\.load_series.*Volume\(array, spacing=\(z, y, x\)\)"):
            as_volume(np.zeros((2, 3, 4)), name="ct")

    def test_spacing_contradicting_the_volume(self):
        v = Volume(np.zeros((2, 3, 4)), spacing=(2.5, 0.7, 0.7))
        with pytest.raises(ValueError, match=r"spacing \(2\.5, 0\.7, 0\.7\) mm but spacing=\(1, 1, 1\)"):
            as_volume(v, spacing=(1, 1, 1))

    def test_not_3d(self):
        with pytest.raises(ValueError, match=r"volume must be a Volume or a 3-D \(z, y, x\) array; got shape \(4, 4\)"):
            as_volume(np.zeros((4, 4)), spacing=(1, 1, 1))


class TestMasks:
    @pytest.mark.parametrize("dtype,expected", [(bool, True), (np.uint8, True), (np.uint16, True), (np.int8, True),
                                                (np.int16, False), (np.int32, False), (np.float32, False)])
    def test_is_mask_by_dtype_alone(self, dtype, expected):
        assert is_mask(np.zeros((2, 2), dtype)) is expected  # all zeros: the values never decide

    def test_as_mask_label_and_shape(self):
        lab = Volume(np.array([[[0, 1, 2, 2]]], np.uint8), spacing=(1, 1, 1))
        assert as_mask(lab).tolist() == [[[False, True, True, True]]]
        assert as_mask(lab, label=2).tolist() == [[[False, False, True, True]]]
        with pytest.raises(ValueError, match=r"mask shape \(1, 1, 4\) differs from the volume's \(1, 1, 3\)"):
            as_mask(lab, shape=(1, 1, 3))

    def test_as_array_no_copy(self):
        a = np.zeros((2, 2), np.int16)
        assert as_array(a) is a and as_array(Volume(a[None], spacing=(1, 1, 1))).base is a
