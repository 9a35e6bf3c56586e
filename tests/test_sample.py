"""Tests of helpers.sample: the synthetic chest CT written as DICOM, and its ground truth."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from helpers import data as hd
from helpers import sample
from helpers.sample import LEGEND


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return sample.make_sample(tmp_path_factory.mktemp("small"), size="small")


@pytest.fixture(scope="module")
def small_labels(small) -> dict:
    return sample.load_labels(small)


@pytest.fixture(scope="module")
def small_phantom() -> dict:
    return sample.make_phantom(size="small")


def _read_all(folder: Path):
    return [pydicom.dcmread(p) for p in sorted((folder / "dicom").iterdir())]


class TestMakeSample:
    def test_layout_and_random_names(self, small):
        files = sorted((small / "dicom").iterdir())
        assert len(files) == 40
        assert all(f.name.startswith("IM_") for f in files)
        assert any(f.suffix == "" for f in files) and any(f.suffix == ".dcm" for f in files)
        assert (small / "labels.npz").is_file() and (small / "labels.json").is_file()

    def test_same_seed_same_bytes(self, small, tmp_path):
        again = sample.make_sample(tmp_path / "again", size="small")
        assert _digest(again) == _digest(small)

    def test_other_seed_other_sample(self, small, tmp_path):
        other = sample.make_sample(tmp_path / "other", size="small", seed=1)
        assert _digest(other) != _digest(small)

    def test_headers(self, small):
        dss = _read_all(small)
        ds = dss[0]
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage
        assert ds.Modality == "CT" and ds.BodyPartExamined == "CHEST"
        assert str(ds.PatientName) == "SYNTHETIC^PATIENT" and ds.PatientID == "SYN0001"
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert ds.Manufacturer == "synthetic" and ds.KVP == 120 and ds.ConvolutionKernel
        assert ds.RescaleSlope == 1 and ds.RescaleType == "HU"
        assert ds.PixelRepresentation == 1 and ds.BitsAllocated == 16 and ds.PixelPaddingValue == -2000
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert list(ds.WindowCenter) == [40, -600] and list(ds.WindowWidth) == [400, 1500]
        assert len(ds.WindowCenterWidthExplanation) == 2
        assert float(ds.PixelSpacing[0]) == pytest.approx(2.8125)
        for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
            assert len({getattr(d, key) for d in dss}) == 1
        assert len({d.SOPInstanceUID for d in dss}) == 40
        assert all(d.SOPInstanceUID == d.file_meta.MediaStorageSOPInstanceUID for d in dss)

    def test_fov_centred_and_positions(self, small):
        dss = _read_all(small)
        x0, y0, _ = (float(v) for v in dss[0].ImagePositionPatient)
        n, px = dss[0].Columns, float(dss[0].PixelSpacing[1])
        assert x0 == pytest.approx(-(n - 1) / 2 * px) and y0 == pytest.approx(-(n - 1) / 2 * px)
        z = sorted(float(d.ImagePositionPatient[2]) for d in dss)
        assert np.allclose(np.diff(z), 7.5)
        assert all(float(d.SliceLocation) == float(d.ImagePositionPatient[2]) for d in dss)

    def test_instance_numbers_not_in_position_order(self, small):
        dss = sorted(_read_all(small), key=lambda d: float(d.ImagePositionPatient[2]))
        numbers = [int(d.InstanceNumber) for d in dss]
        assert sorted(numbers) == list(range(1, 41))
        assert numbers != sorted(numbers)

    def test_hu_range_and_padding(self, small):
        dss = _read_all(small)
        px = np.stack([d.pixel_array for d in dss])
        assert px.dtype == np.int16
        inside = px != -2000
        intercepts = np.array([float(d.RescaleIntercept) for d in dss])
        hu = (px + intercepts[:, None, None])[inside]
        assert hu.min() >= -1024 and 700 < hu.max() < 3072
        corner = px[:, 0, 0]
        assert (corner == -2000).all()
        centre = px[:, 64, 64]
        assert (centre != -2000).all()

    def test_thickness_differs_from_spacing(self, small):
        """Overlapping reconstruction: (0018,0050) Slice Thickness is not the step between positions."""
        dss = _read_all(small)
        z = np.sort([float(d.ImagePositionPatient[2]) for d in dss])
        step = float(np.median(np.diff(z)))
        thickness = {float(d.SliceThickness) for d in dss}
        assert step == pytest.approx(sample.SIZES["small"]["dz"])
        assert thickness == {sample.SIZES["small"]["thickness"]} and thickness != {step}

    def test_intercept_changes_between_slices_same_hu(self, small, small_labels, small_phantom):
        """Two intercepts in one series; each slice's own rescale gives the same HU everywhere."""
        dss = sorted(_read_all(small), key=lambda d: float(d.ImagePositionPatient[2]))
        intercepts = [float(d.RescaleIntercept) for d in dss]
        assert set(intercepts) == set(sample.RESCALE_INTERCEPTS)
        assert intercepts == small_labels["geometry"]["rescale_intercepts"]
        for d, hu in zip(dss, small_phantom["hu"]):
            px = d.pixel_array
            inside = px != d.PixelPaddingValue
            assert np.array_equal(px[inside] * float(d.RescaleSlope) + float(d.RescaleIntercept), hu[inside])

    def test_first_slice_rescale_for_all_is_wrong(self, small):
        """The 2017 mistake shows on the sample: the first slice's intercept is wrong for the others."""
        from helpers import legacy
        from helpers.io import load_series

        vol = load_series(small / "dicom")
        slices = [pydicom.dcmread(f) for f in vol.meta["files"]]
        diff = np.abs(legacy.get_pixels_hu(slices).astype(np.float32) - vol.hu)
        per_slice = diff.reshape(len(diff), -1).max(axis=1)
        step = abs(sample.RESCALE_INTERCEPTS[1] - sample.RESCALE_INTERCEPTS[0])
        assert 0 < np.count_nonzero(per_slice) < len(per_slice)
        assert set(per_slice[per_slice > 0].tolist()) == {step}

    def test_bad_size(self, tmp_path):
        with pytest.raises(ValueError, match="size must be one of"):
            sample.make_sample(tmp_path, size="huge")


class TestMakePhantom:
    def test_tissue_hu(self, small_phantom):
        hu, t = small_phantom["hu"], small_phantom["tissue"]
        # a clean interior is far from edges: erode each tissue before measuring it
        def median(name):
            m = ndimage.binary_erosion(t == LEGEND[name], iterations=1)
            return float(np.median(hu[m]))
        assert -900 < median("lung") < -780
        assert -130 < median("fat") < -70
        assert 20 < median("muscle") < 70
        assert 40 < median("liver") < 80
        assert median("air_outside") < -950

    def test_noise_is_realistic(self, small_phantom):
        core = ndimage.binary_erosion(small_phantom["tissue"] == LEGEND["liver"], iterations=2)
        assert 10 < small_phantom["hu"][core].std() < 20

    def test_other_seed_other_noise(self, small_phantom):
        p2 = sample.make_phantom(size="small", seed=1)
        assert not np.array_equal(p2["stored"], small_phantom["stored"])


class TestLoadLabels:
    def test_shapes_and_values(self, small_labels):
        lab = small_labels
        assert lab["lungs"].shape == lab["tissue"].shape == (40, 128, 128)
        assert lab["lungs"].dtype == np.uint8 and lab["tissue"].dtype == np.uint8
        assert set(np.unique(lab["lungs"]).tolist()) == {0, 1, 2}
        assert set(np.unique(lab["tissue"]).tolist()) <= set(LEGEND.values())
        assert lab["legend"] == LEGEND
        assert lab["generator_version"] == sample.GENERATOR_VERSION and lab["seed"] == 0

    def test_two_lungs_right_is_patient_right(self, small_labels):
        lungs = small_labels["lungs"]
        _, n = ndimage.label(lungs > 0, structure=np.ones((3, 3, 3)))
        assert n == 2
        cols = np.arange(lungs.shape[2])
        right_col = cols[np.nonzero(lungs == 1)[2]].mean()
        left_col = cols[np.nonzero(lungs == 2)[2]].mean()
        assert right_col < lungs.shape[2] / 2 < left_col  # column 0 is the patient's right

    def test_tumour_inside_right_lung_touching_chest_wall(self, small_labels):
        t, lungs = small_labels["tissue"], small_labels["lungs"]
        tumour = t == LEGEND["tumour"]
        assert tumour.sum() > 0
        assert (lungs[tumour] == 1).all()
        ring = ndimage.binary_dilation(tumour, iterations=1) & ~tumour
        wall = np.isin(t[ring], [LEGEND["muscle"], LEGEND["bone"], LEGEND["fat"]])
        assert wall.any()

    def test_nodule_inside_left_lung(self, small_labels):
        t, lungs = small_labels["tissue"], small_labels["lungs"]
        nodule = t == LEGEND["nodule"]
        assert nodule.sum() > 0 and (lungs[nodule] == 2).all()

    def test_trachea_outside_lungs(self, small_labels):
        t, lungs = small_labels["tissue"], small_labels["lungs"]
        airway = t == LEGEND["airway"]
        assert airway.sum() > 0 and (lungs[airway] == 0).all()

    def test_table_separate_from_body(self, small_labels):
        t = small_labels["tissue"]
        table = np.isin(t, [LEGEND["table"], LEGEND["table_air"]])
        body = (t != LEGEND["air_outside"]) & ~table
        assert not (ndimage.binary_dilation(table, iterations=1) & body).any()

    def test_missing_files(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="labels.npz"):
            sample.load_labels(tmp_path)


class TestEnsureSample:
    def test_generates_once(self, tmp_path):
        d = sample.ensure_sample(tmp_path / "s", size="small")
        stamp = d / sample.STAMP_NAME
        assert stamp.is_file()
        mtime = stamp.stat().st_mtime_ns
        assert sample.ensure_sample(d, size="small") == d
        assert stamp.stat().st_mtime_ns == mtime
        assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporary folder left

    def test_missing_stamp_regenerates(self, tmp_path):
        d = sample.ensure_sample(tmp_path / "s", size="small")
        (d / sample.STAMP_NAME).unlink()
        (d / "labels.npz").write_bytes(b"half written")
        sample.ensure_sample(d, size="small")
        assert sample.load_labels(d)["lungs"].shape == (40, 128, 128)

    def test_old_version_regenerates(self, tmp_path):
        d = sample.ensure_sample(tmp_path / "s", size="small")
        (d / sample.STAMP_NAME).write_text("helpers.sample 0 size=small seed=0\n")
        sample.ensure_sample(d, size="small")
        assert sample._is_current(d, "small", 0)

    def test_leftover_temp_dir(self, tmp_path):
        dead = tmp_path / ".s.tmp-999999999-1"
        (dead / "dicom").mkdir(parents=True)
        d = sample.ensure_sample(tmp_path / "s", size="small")
        assert sample._is_current(d, "small", 0)
        assert not dead.exists()


class TestMain:
    def test_cli(self, tmp_path, capsys):
        assert sample.main([str(tmp_path / "s"), "--size", "small"]) == 0
        assert "generated" in capsys.readouterr().out
        assert sample.main([str(tmp_path / "s"), "--size", "small"]) == 0
        assert "up to date" in capsys.readouterr().out


class TestDefaultDicomDir:
    def test_dicom_dir(self, monkeypatch, tmp_path):
        monkeypatch.setenv("DICOM_DIR", str(tmp_path))
        assert sample.default_dicom_dir() == tmp_path

    def test_dicom_dir_missing(self, monkeypatch, tmp_path):
        monkeypatch.setenv("DICOM_DIR", str(tmp_path / "nope"))
        with pytest.raises(FileNotFoundError, match="DICOM_DIR"):
            sample.default_dicom_dir()

    def test_dataset(self, monkeypatch, tmp_path):
        monkeypatch.delenv("DICOM_DIR", raising=False)
        monkeypatch.setattr(hd, "DATA_DIR", tmp_path / "data")
        (tmp_path / "data" / "case1").mkdir(parents=True)
        monkeypatch.setenv("DATASET", "case1")
        assert sample.default_dicom_dir() == tmp_path / "data" / "case1"

    def test_dataset_missing(self, monkeypatch, tmp_path):
        monkeypatch.delenv("DICOM_DIR", raising=False)
        monkeypatch.setattr(hd, "DATA_DIR", tmp_path / "data")
        monkeypatch.setenv("DATASET", "case9")
        with pytest.raises(FileNotFoundError, match=r"python -m helpers.data fetch case9"):
            sample.default_dicom_dir()

    def test_sample_by_default(self, monkeypatch, tmp_path):
        monkeypatch.delenv("DICOM_DIR", raising=False)
        monkeypatch.delenv("DATASET", raising=False)
        calls = []
        monkeypatch.setattr(sample, "ensure_sample", lambda *a, **k: calls.append(1) or tmp_path)
        assert sample.default_dicom_dir() == tmp_path / "dicom"
        assert calls


class TestFullSample:
    """One test on the full-size sample, reusing data/sample (generated once, ~10 s)."""

    def test_full(self, repo):
        d = sample.ensure_sample()
        info = json.loads((d / "labels.json").read_text())
        assert info["geometry"]["shape"] == [120, 512, 512]
        files = list((d / "dicom").iterdir())
        assert len(files) == 120
        ds = pydicom.dcmread(files[0])
        assert (ds.Rows, ds.Columns) == (512, 512)
        assert float(ds.PixelSpacing[0]) == pytest.approx(0.703125)
        assert float(ds.SliceThickness) == 3.0 and float(ds.SpacingBetweenSlices) == 2.5  # overlapping slices
        assert set(info["geometry"]["rescale_intercepts"]) == {-1024.0, -1000.0}
        lab = sample.load_labels(d)
        _, n = ndimage.label(lab["lungs"] > 0)
        assert n == 2
        t = lab["tissue"]
        tumour = t == LEGEND["tumour"]
        vol_ml = tumour.sum() * 2.5 * 0.703125 ** 2 / 1000
        assert 6 < vol_ml < 20
        assert all(25 < e < 40 for e in info["tumour"]["extent_mm_xyz"])  # ~3 cm across
        nodule = t == LEGEND["nodule"]
        assert 0.1 < nodule.sum() * 2.5 * 0.703125 ** 2 / 1000 < 0.4  # 7 mm: ~0.18 mL
        # the lungs come within 3 mm of each other (anterior junction) but never touch
        lungs = lab["lungs"]
        cols = np.arange(lungs.shape[2])[None, None, :]
        right_max = np.where(lungs == 1, cols, -1).max(2)
        left_min = np.where(lungs == 2, cols, 10 ** 6).min(2)
        both = (right_max >= 0) & (left_min < 10 ** 6)
        gap_mm = (left_min - right_max - 1)[both] * 0.703125
        assert 0 < gap_mm.min() < 3
        table = np.isin(t, [LEGEND["table"], LEGEND["table_air"]])
        body = (t != LEGEND["air_outside"]) & ~table
        assert not (ndimage.binary_dilation(table) & body).any()


@pytest.fixture(scope="module")
def vol(small):
    from helpers.io import load_series

    return load_series(small / "dicom")


class TestLoaderRoundTrip:
    """helpers.io.load_series reads the small sample back, aligned with the labels."""

    def test_same_hu(self, vol, small_phantom):
        expected = np.where(small_phantom["stored"] == -2000, -1024.0, small_phantom["hu"])
        assert vol.hu.shape == expected.shape
        assert np.abs(vol.hu.astype(np.float32) - expected).max() <= 1

    def test_geometry(self, vol, small_labels):
        geo = small_labels["geometry"]
        assert vol.spacing == pytest.approx(tuple(geo["spacing"]))
        assert vol.origin == pytest.approx(tuple(geo["origin"]))
        assert np.allclose(vol.slice_positions, geo["z_positions"])

    def test_labels_align(self, vol, small_labels):
        t = small_labels["tissue"]
        core = {name: ndimage.binary_erosion(t == LEGEND[name]) for name in ("lung", "liver", "tumour")}
        assert np.median(vol.hu[core["lung"]]) < -750
        assert 40 < np.median(vol.hu[core["liver"]]) < 80
        assert 20 < np.median(vol.hu[t == LEGEND["tumour"]]) < 60
        right = vol.hu[small_labels["lungs"] == 1]
        assert np.median(right) < -700
