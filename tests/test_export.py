"""Tests for helpers.export: .npy + JSON sidecar, NIfTI (read back by SimpleITK), DICOM SEG (read back by highdicom)."""
import json
import os
import warnings

import numpy as np
import pytest

from helpers.errors import DicomSeriesError, SeriesWarning
from helpers.export import load_npy, nifti_affine, save_dicom_seg, save_nifti, save_npy
from helpers.testing import factory
from helpers.volume import Volume


def _oblique_volume():
    """A volume with a non-trivial direction (columns reversed, slices head to feet)."""
    rng = np.random.default_rng(0)
    d = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    th = np.deg2rad(10)
    rot = np.array([[1, 0, 0], [0, np.cos(th), -np.sin(th)], [0, np.sin(th), np.cos(th)]])
    return Volume(rng.integers(0, 3, (5, 6, 7)).astype(np.uint8), spacing=(2.5, 0.8, 0.6),
                  origin=(12.0, -30.5, 100.0), direction=rot @ d, meta={"patient_name": "X^Y", "series_uid": "1.2.3"})


def _no_tmp_left(folder):
    return not [p for p in os.listdir(folder) if ".tmp" in p]


class TestSaveNpy:
    def test_roundtrip_geometry_and_sidecar(self, tmp_path):
        vol = _oblique_volume()
        p = save_npy(vol.hu, vol, tmp_path / "lungs")
        assert p.name == "lungs.npy" and (tmp_path / "lungs.json").exists()
        back = load_npy(p)
        np.testing.assert_array_equal(back.hu, vol.hu)
        assert back.spacing == vol.spacing and back.origin == vol.origin
        np.testing.assert_allclose(back.direction, vol.direction)
        np.testing.assert_allclose(back.positions, vol.positions)
        side = json.loads((tmp_path / "lungs.json").read_text())
        assert side["labels"] == {"0": "background", "1": "right lung", "2": "left lung"}
        assert side["series_uid"] == "1.2.3"
        assert "patient_name" not in side and "X^Y" not in json.dumps(side)
        assert _no_tmp_left(tmp_path)

    def test_missing_sidecar(self, tmp_path):
        np.save(tmp_path / "a.npy", np.zeros(3))
        with pytest.raises(FileNotFoundError, match="no JSON sidecar"):
            load_npy(tmp_path / "a.npy")

    def test_shape_mismatch(self, tmp_path):
        with pytest.raises(ValueError, match="differs from the volume"):
            save_npy(np.zeros((1, 2, 3)), _oblique_volume(), tmp_path / "a.npy")

    def test_refuses_to_write_into_the_source(self, tmp_path):
        vol = _oblique_volume()
        vol.meta["source"] = str(tmp_path)
        with pytest.raises(ValueError, match="inside the source DICOM folder"):
            save_npy(vol.hu, vol, tmp_path / "sub" / "m.npy")


class TestSaveNifti:
    @pytest.mark.parametrize("oblique", [False, True])
    def test_simpleitk_reads_same_geometry(self, tmp_path, oblique):
        sitk = pytest.importorskip("SimpleITK")
        vol = _oblique_volume() if oblique else Volume(
            np.arange(60, dtype=np.uint8).reshape(3, 4, 5), spacing=(5.0, 0.7, 0.7), origin=(-100.0, -120.0, 40.0))
        p = save_nifti(vol.hu, vol, tmp_path / "m.nii.gz")
        img = sitk.ReadImage(str(p))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(img), vol.hu)
        np.testing.assert_allclose(img.GetOrigin(), vol.origin, atol=1e-4)
        np.testing.assert_allclose(img.GetSpacing(), vol.spacing[::-1], atol=1e-5)
        # SimpleITK's direction columns are the LPS vectors of the x, y, z index axes
        np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), vol.direction[:, ::-1], atol=1e-5)
        assert _no_tmp_left(tmp_path)

    def test_nibabel_affine_is_ras(self, tmp_path):
        nib = pytest.importorskip("nibabel")
        vol = _oblique_volume()
        p = save_nifti(vol.hu.astype(bool), vol, tmp_path / "m.nii")
        img = nib.load(p)
        np.testing.assert_allclose(img.affine, nifti_affine(vol), atol=1e-5)
        # voxel (i, j, k) = (2, 3, 4) maps to the LPS point of volume index (4, 3, 2), x and y negated
        ras = img.affine @ [2, 3, 4, 1]
        lps = vol.index_to_lps([4, 3, 2])
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-4)
        assert img.get_fdata().dtype and img.get_data_dtype() == np.uint8

    def test_bad_suffix(self, tmp_path):
        with pytest.raises(ValueError, match=r"end in \.nii or \.nii\.gz"):
            save_nifti(np.zeros((1, 1, 1)), Volume(np.zeros((1, 1, 1)), spacing=(1, 1, 1)), tmp_path / "m.nrrd")


@pytest.fixture()
def series(tmp_path):
    """A factory series written with file names in a shuffled order; loaded with load_series."""
    from helpers.io import load_series

    dsets = factory.clean_datasets(n=12, rows=32, cols=32)
    order = np.random.default_rng(1).permutation(len(dsets))
    names = [f"img_{i:03d}.dcm" for i in order]  # file names unrelated to slice order
    folder = tmp_path / "src"
    factory.write(dsets, folder, names=names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeriesWarning)
        vol = load_series(folder)
    return vol, folder


def _labels_for(vol):
    """Each plane gets a different, recognisable pattern (so a swapped frame is caught)."""
    lab = np.zeros(vol.shape, np.uint8)
    for k in range(vol.shape[0]):
        if k == 5:
            continue  # one empty plane: omitted from the SEG
        lab[k, 2 : 4 + k, 3:10] = 1
        lab[k, 20:30, 10 + k : 25] = 2
    return lab


def _check_seg(path, vol, lab):
    hd = pytest.importorskip("highdicom")
    seg = hd.seg.segread(path)
    uids = vol.meta["sop_instance_uids"]
    seen = set()
    for i, fr in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ref = fr.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        num = int(fr.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        k = uids.index(ref)
        ipp = [float(x) for x in fr.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(ipp, vol.positions[k], atol=1e-3)
        np.testing.assert_array_equal(seg.get_frame(i + 1).astype(bool), lab[k] == num)
        seen.add((k, num))
    assert seen == {(k, n) for k in range(vol.shape[0]) for n in (1, 2) if (lab[k] == n).any()}
    labels = [d.SegmentLabel for d in seg.SegmentSequence]
    assert labels == ["right lung", "left lung"]
    return seg


class TestSaveDicomSeg:
    def test_frames_map_to_their_source_slices(self, series, tmp_path):
        vol, folder = series
        before = factory.tree_hash(folder)
        lab = _labels_for(vol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # highdicom on the factory's patient name
            p = save_dicom_seg(lab, vol, tmp_path / "out" / "seg.dcm")
        seg = _check_seg(p, vol, lab)
        assert seg.SeriesInstanceUID != vol.meta["series_uid"]
        assert factory.tree_hash(folder) == before  # the source is never touched
        assert _no_tmp_left(tmp_path / "out")

    def test_match_by_position_without_uids(self, series, tmp_path):
        vol, folder = series
        vol = vol.with_array(vol.hu)
        vol.meta.pop("sop_instance_uids")
        lab = _labels_for(vol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            p = save_dicom_seg(lab, vol, tmp_path / "seg.dcm", source=folder)
        vol.meta["sop_instance_uids"] = [None] * vol.shape[0]
        # map back through positions
        import pydicom

        by_pos = {}
        for f in folder.iterdir():
            d = pydicom.dcmread(f, stop_before_pixels=True)
            by_pos[str(d.SOPInstanceUID)] = np.array([float(v) for v in d.ImagePositionPatient])
        vol.meta["sop_instance_uids"] = [
            min(by_pos, key=lambda u: np.linalg.norm(by_pos[u] - p_)) for p_ in vol.positions]
        _check_seg(p, vol, lab)

    def test_missing_source_slice(self, series, tmp_path):
        vol, folder = series
        os.remove(sorted(folder.iterdir())[0])
        with pytest.raises(DicomSeriesError, match="not in the source"):
            save_dicom_seg(_labels_for(vol), vol, tmp_path / "seg.dcm")

    def test_refuses_source_folder_and_empty_mask(self, series):
        vol, folder = series
        with pytest.raises(ValueError, match="inside the source DICOM folder"):
            save_dicom_seg(_labels_for(vol), vol, folder / "seg.dcm")
        with pytest.raises(ValueError, match="label map is empty"):
            save_dicom_seg(np.zeros(vol.shape, np.uint8), vol, folder.parent / "seg.dcm")

    @pytest.mark.realdata
    def test_real_case_seg(self, real_case, tmp_path):
        from helpers.io import load_series
        from helpers.segment import segment_lungs

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeriesWarning)
            vol = load_series(real_case / "ct-b40f")
        lab = segment_lungs(vol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            p = save_dicom_seg(lab, vol, tmp_path / "lungs.seg.dcm")
        _check_seg(p, vol, lab)
