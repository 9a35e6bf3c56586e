"""Tests for helpers.legacy: the 2017 code runs, and fails exactly where the book says it does."""

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from helpers import legacy
from helpers.resample import resample as helpers_resample
from helpers.volume import Volume

ROWS = COLS = 64
PIXEL = 0.7  # mm
SERIES_UID = generate_uid(entropy_srcs=["legacy test series"])


def write_slice(folder, name, *, z, number, hu, intercept=-1024.0):
    """One 64x64 CT slice at height z (mm) with the given Instance Number and HU content."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[name, str(z)])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = SERIES_UID
    ds.Modality = "CT"
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [-22.4, -22.4, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = z
    ds.SliceThickness = 1.0  # the real (0018,0050), thinner than the spacing
    ds.PixelSpacing = [PIXEL, PIXEL]
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = 1
    stored = (np.asarray(hu, np.float64) - intercept).astype(np.int16)
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = stored.tobytes()
    ds.save_as(folder / name, enforce_file_format=True)


def write_series(folder, z_positions, numbers, *, intercepts=None):
    """Slice k has HU = 10 * k + the row index... and its height z; numbers are Instance Numbers."""
    for k, (z, n) in enumerate(zip(z_positions, numbers)):
        hu = np.full((ROWS, COLS), z * 10.0, np.float64)  # a slice's HU tells where it really is
        icpt = -1024.0 if intercepts is None else intercepts[k]
        write_slice(folder, f"IM{k:04d}", z=z, number=n, hu=hu, intercept=icpt)
    return str(folder)


class TestLoadScan:
    def test_consistent_numbering_works(self, tmp_path):
        z = [0.0, 2.5, 5.0, 7.5, 10.0]
        slices = legacy.load_scan(write_series(tmp_path, z, [1, 2, 3, 4, 5]))
        assert [float(s.ImagePositionPatient[2]) for s in slices] == z
        assert all(float(s.SliceThickness) == 2.5 for s in slices)  # (0018,0050) 1.0 overwritten

    def test_instance_numbers_against_position_shuffle_the_stack(self, tmp_path):
        # numbered in reconstruction order, not by position: a silent wrong stack
        z = [0.0, 2.5, 5.0, 7.5, 10.0]
        slices = legacy.load_scan(write_series(tmp_path, z, [3, 1, 5, 2, 4]))
        order = [float(s.ImagePositionPatient[2]) for s in slices]
        assert order == [2.5, 7.5, 0.0, 10.0, 5.0]
        hu = legacy.get_pixels_hu(slices)
        assert not np.all(np.diff(hu[:, 0, 0]) > 0)  # anatomy jumps back and forth
        assert float(slices[0].SliceThickness) == 5.0  # |2.5 - 7.5|: the spacing is wrong too

    def test_missing_first_gap_gives_the_wrong_spacing(self, tmp_path):
        z = [0.0, 5.0, 7.5, 10.0]  # the slice at 2.5 mm is missing
        slices = legacy.load_scan(write_series(tmp_path, z, [1, 2, 3, 4]))
        assert float(slices[0].SliceThickness) == 5.0

    def test_a_stray_file_crashes(self, tmp_path):
        write_series(tmp_path, [0.0, 2.5], [1, 2])
        (tmp_path / "README.txt").write_text("not DICOM")
        with pytest.raises(InvalidDicomError):
            legacy.load_scan(str(tmp_path))


    def test_a_single_slice_crashes_with_an_index_error(self, tmp_path):
        write_series(tmp_path, [0.0], [1])
        with pytest.raises(IndexError, match="list index out of range"):
            legacy.load_scan(str(tmp_path))


class TestGetPixelsHu:
    def test_first_slice_rescale_is_applied_to_all(self, tmp_path):
        z = [0.0, 2.5, 5.0]
        slices = legacy.load_scan(write_series(tmp_path, z, [1, 2, 3], intercepts=[-1024.0, -1000.0, -1024.0]))
        hu = legacy.get_pixels_hu(slices)
        assert hu.dtype == np.int16 and hu.shape == (3, ROWS, COLS)
        assert hu[0, 0, 0] == 0 and hu[2, 0, 0] == 50  # true HU = 10 * z
        assert hu[1, 0, 0] == 25 - 24  # the second slice's own intercept (-1000) is ignored

    def test_minus_2000_padding_becomes_intercept(self, tmp_path):
        for k in range(2):
            write_slice(tmp_path, f"IM{k}", z=2.5 * k, number=k + 1, hu=np.full((ROWS, COLS), -2000 + -1024.0))
        hu = legacy.get_pixels_hu(legacy.load_scan(str(tmp_path)))
        assert hu[0, 0, 0] == -1024  # stored -2000 -> 0 -> + intercept


class TestResample:
    def test_shape_spacing_and_dtype(self, tmp_path):
        z = [0.0, 2.5, 5.0, 7.5]
        slices = legacy.load_scan(write_series(tmp_path, z, [1, 2, 3, 4]))
        image = legacy.get_pixels_hu(slices)
        out, spacing = legacy.resample(image, slices, [1, 1, 1])
        assert out.shape == (10, 45, 45)  # round(4 * 2.5), round(64 * 0.7)
        assert out.dtype == np.int16
        np.testing.assert_allclose(spacing, [1.0, 44.8 / 45, 44.8 / 45])

    def test_zoom_stretches_compared_with_physical_resampling(self):
        # a z ramp (HU = 10 * z mm): physical resampling keeps HU = 10 * z at every new centre,
        # zoom aligns the first/last centres and stretches the content by (n-1)/(m-1)
        z = np.arange(8) * 2.5
        image = np.broadcast_to((z * 10)[:, None, None], (8, 8, 8)).astype(np.int16)
        ds = Dataset()
        ds.SliceThickness, ds.PixelSpacing = 2.5, [1.0, 1.0]
        old, _ = legacy.resample(image, [ds], [1, 1, 1])
        new = helpers_resample(Volume(image, spacing=(2.5, 1.0, 1.0)), spacing=(1.0, 1.0, 1.0))
        centres = new.slice_positions - new.slice_positions[0] + new.origin[2]
        inside = (centres >= 0) & (centres <= z[-1])
        np.testing.assert_allclose(new.hu[inside, 4, 4], 10 * centres[inside], atol=1e-3)
        zoom_z = np.arange(old.shape[0]) * z[-1] / (old.shape[0] - 1)  # where zoom really samples
        error = np.abs(old[:, 4, 4] - 10 * zoom_z)
        assert error[5:-5].max() <= 1  # rounded to int16
        assert error[[1, -2]].min() > 2  # the spline's boundary handling bends the ramp near the ends
        assert not np.allclose(zoom_z[inside], centres[inside], atol=0.1)  # not the 1 mm grid it claims
