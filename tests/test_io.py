"""Tests for helpers.io: one class per public function, one test per behaviour.

Series are built by ``helpers/testing/factory.py`` (24 axial slices of 64x64, signed int16,
intercept -1024, known HU) and broken on purpose.  Compressed syntaxes are
encoded with ``Dataset.compress`` where pydicom has an encoder (RLE, JPEG-LS via
pyjpegls, JPEG 2000 via pylibjpeg-openjpeg); deflated and big endian are written
with those syntaxes; JPEG baseline is encoded with Pillow and encapsulated by hand;
JPEG Lossless (process 14, SV1) and HTJ2K, which pydicom 3.0 cannot encode, are
encoded with imagecodecs (``factory.compress_with_imagecodecs``).
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import signal
import sys
import tracemalloc
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from helpers.errors import DicomSeriesError, SeriesWarning
from helpers.io import SeriesInfo, SeriesTable, list_series, load_series
from helpers.testing import factory as F

B40F_UID = "1.3.6.1.4.1.14519.5.2.1.6655.2359.207154000096236603057216610983"


@contextmanager
def no_hang(seconds: float = 20.0):
    """Fail instead of hanging (Unix: SIGALRM in the main thread)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def stop(*_):
        raise TimeoutError(f"still running after {seconds} s: the loader hangs")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def peak_traced():
    """``[peak bytes]`` allocated through Python and numpy inside the block (tracemalloc)."""
    out = [0]
    tracemalloc.start()
    try:
        yield out
    finally:
        out[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def load_quiet(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeriesWarning)
        return load_series(*args, **kw)


@pytest.fixture
def clean(tmp_path) -> Path:
    folder = tmp_path / "clean"
    F.write(F.clean_datasets(), folder)
    return folder


class TestLoadSeries:
    # ---------------------------------------------------------------- the clean case
    def test_clean_series_values_and_geometry(self, clean):
        with warnings.catch_warnings():
            warnings.simplefilter("error", SeriesWarning)
            vol = load_series(clean)
        assert vol.hu.dtype == np.int16
        np.testing.assert_array_equal(vol.hu, F.expected_hu())
        assert vol.spacing == pytest.approx(F.SPACING)
        assert vol.origin == pytest.approx(F.ORIGIN)
        np.testing.assert_allclose(vol.direction, [[0, 0, 1], [0, 1, 0], [1, 0, 0]])
        np.testing.assert_allclose(vol.positions[:, 2], F.ORIGIN[2] + F.SPACING[0] * np.arange(F.N))
        np.testing.assert_allclose(vol.index_to_lps((3, 2, 1)), [-22.4 + 0.7, -22.4 + 1.4, -100 + 7.5])

    def test_meta(self, clean):
        m = load_series(clean).meta
        assert m["modality"] == "CT" and m["series_description"] == "clean 2.5mm"
        assert m["series_uid"] == F.uid("series", "clean") and m["study_uid"] == F.STUDY_UID
        assert m["kernel"] == "B30f" and m["manufacturer"] == "FACTORY" and m["slice_thickness"] == 2.5
        assert m["file_count"] == F.N and m["skipped_files"] == 0 and m["warnings"] == []
        assert m["sop_instance_uids"] == [F.uid("sop", "clean", k) for k in range(F.N)]
        assert m["windows"][0] == {"name": "window 1", "center": 40.0, "width": 400.0}
        assert m["patient_id"] == "F0001" and m["source"] == str(clean)

    def test_repr_hides_patient(self, clean):
        text = repr(load_series(clean))
        assert "Factory" not in text and "F0001" not in text and "clean 2.5mm" in text

    def test_same_hu_as_simpleitk(self, clean):
        sitk = pytest.importorskip("SimpleITK")
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(clean)))
        img = reader.Execute()
        vol = load_series(clean)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(img), vol.hu)
        assert img.GetSpacing()[::-1] == pytest.approx(vol.spacing)
        assert img.GetOrigin() == pytest.approx(vol.origin)

    def test_same_hu_as_pydicom_modality_lut(self, tmp_path):
        """pydicom's apply_modality_lut (PS3.3 C.11.1) as an oracle, slope and intercept varying per slice."""
        from pydicom.pixels import apply_modality_lut

        dss = F.clean_datasets(n=6)
        for k, ds in enumerate(dss):
            ds.RescaleSlope, ds.RescaleIntercept = (0.5, 1.0, 2.0)[k % 3], (-1024.0, -1000.0, -8.25)[k % 2]
        paths = F.write(dss, tmp_path)
        vol = load_series(tmp_path)
        ref = np.stack([apply_modality_lut(d.pixel_array, d) for d in map(pydicom.dcmread, paths)])
        np.testing.assert_allclose(vol.hu, ref, rtol=0, atol=1e-3)  # float32 against pydicom's float64

    def test_modality_lut_sequence_refused(self, tmp_path):
        """A (0028,3000) Modality LUT Sequence replaces the rescale: refused with file and tag, never ignored."""
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        dss = F.clean_datasets(n=6)
        item = Dataset()
        item.LUTDescriptor = [4096, 0, 16]
        item.ModalityLUTType = "HU"
        item.LUTData = np.arange(4096, dtype="<u2").tobytes()
        dss[3].ModalityLUTSequence = Sequence([item])
        F.write(dss, tmp_path)
        with pytest.raises(DicomSeriesError, match=r"slice_003\.dcm: \(0028,3000\) Modality LUT Sequence is present "
                           r"\(Modality LUT Type 'HU'\); expected .*\(0028,1053\) Rescale Slope.*apply_modality_lut"):
            load_series(tmp_path)

    def test_oblique_geometry_matches_simpleitk(self, tmp_path):
        sitk = pytest.importorskip("SimpleITK")
        c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
        F.write(F.clean_datasets(n=8, iop=(c, s, 0, 0, 0, -1)), tmp_path)  # coronal, rotated 20 degrees
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
        img = reader.Execute()
        vol = load_series(tmp_path)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(img), vol.hu)
        # SimpleITK's direction columns are the x, y, z axes; ours are z, y, x
        np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3), vol.direction[:, ::-1], atol=1e-6)
        np.testing.assert_allclose(img.GetOrigin(), vol.origin, atol=1e-4)
        np.testing.assert_allclose(img.TransformIndexToPhysicalPoint((5, 3, 7)), vol.index_to_lps((7, 3, 5)), atol=1e-3)

    # ---------------------------------------------------------------- files and order
    def test_order_ignores_file_names_and_instance_numbers(self, tmp_path):
        dss = F.clean_datasets()
        rng = random.Random(0)
        numbers = list(range(1, F.N + 1))
        rng.shuffle(numbers)
        for ds, n in zip(dss, numbers):
            ds.InstanceNumber = n
        names = [f"sub{rng.randint(0, 2)}/IM{rng.randint(0, 10**6):07d}" for _ in dss]  # no extension, nested
        F.write(dss, tmp_path, names=names)
        vol = load_series(tmp_path)
        np.testing.assert_array_equal(vol.hu, F.expected_hu())

    def test_junk_files_skipped_and_counted(self, clean):
        (clean / "notes.txt").write_text("not an image\n")
        (clean / "empty.dcm").write_bytes(b"")
        (clean / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
        vol = load_series(clean)
        assert vol.meta["skipped_files"] == 3
        np.testing.assert_array_equal(vol.hu, F.expected_hu())

    def test_preambleless_file_accepted(self, tmp_path):
        dss = F.clean_datasets()
        F.write(dss[1:], tmp_path)
        raw = dss[0]
        del raw.file_meta
        raw.preamble = None
        pydicom.dcmwrite(tmp_path / "raw", raw, implicit_vr=True, little_endian=True, enforce_file_format=False)
        assert (tmp_path / "raw").read_bytes()[128:132] != b"DICM"
        vol = load_series(tmp_path)
        np.testing.assert_array_equal(vol.hu, F.expected_hu())

    def test_list_of_paths(self, clean):
        paths = sorted(clean.iterdir())[:10]
        vol = load_series([str(p) for p in paths])
        assert vol.shape[0] == 10
        np.testing.assert_array_equal(vol.hu, F.expected_hu()[:10])  # the ten files' slices, in position order
        assert vol.meta["sop_instance_uids"] == [F.uid("sop", "clean", k) for k in range(10)]

    def test_zip_read_in_place(self, clean, tmp_path):
        archive = tmp_path / "case.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for p in sorted(clean.iterdir()):
                zf.write(p, f"case/DICOM/{p.stem}")
            zf.writestr("case/readme.txt", "hello")
        before = sorted(tmp_path.iterdir())
        vol = load_series(archive)
        np.testing.assert_array_equal(vol.hu, F.expected_hu())
        assert vol.meta["skipped_files"] == 1
        assert sorted(tmp_path.iterdir()) == before

    def test_source_folder_unchanged(self, clean, tmp_path):
        F.write([F.localizer(F.clean_datasets()[0])], clean, names=["scout.dcm"])
        (clean / "notes.txt").write_text("x")
        digest = F.tree_hash(tmp_path)
        load_quiet(clean)
        list_series(clean)
        assert F.tree_hash(tmp_path) == digest

    # ---------------------------------------------------------------- dropped images
    def test_localizer_dropped_with_warning(self, clean):
        F.write([F.localizer(F.clean_datasets()[0])], clean, names=["scout.dcm"])
        with pytest.warns(SeriesWarning, match=r"localizer.*scout\.dcm.*LOCALIZER"):
            vol = load_series(clean)
        assert vol.shape == (F.N, F.ROWS, F.COLS)
        np.testing.assert_array_equal(vol.hu, F.expected_hu())  # the scout's pixels are nowhere in the volume
        assert any("localizer" in w for w in vol.meta["warnings"])

    def test_odd_orientation_dropped_as_localizer(self, clean):
        scout = F.localizer(F.clean_datasets()[0])
        scout.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        F.write([scout], clean, names=["odd.dcm"])
        with pytest.warns(SeriesWarning, match=r"odd\.dcm as a localizer.*\(0020,0037\)"):
            vol = load_series(clean)
        assert vol.shape[0] == F.N
        np.testing.assert_array_equal(vol.hu, F.expected_hu())

    def test_duplicate_dropped_with_warning(self, clean):
        shutil.copy(clean / "slice_005.dcm", clean / "copy_of_5.dcm")
        with pytest.warns(SeriesWarning, match=r"duplicate.*SOP Instance UID"):
            vol = load_series(clean)
        np.testing.assert_array_equal(vol.hu, F.expected_hu())

    def test_two_slices_same_position_raise(self, tmp_path):
        dss = F.clean_datasets()
        dss[6].ImagePositionPatient = dss[5].ImagePositionPatient
        F.write(dss, tmp_path)
        with pytest.raises(DicomSeriesError, match=r"same position.*slice_00[56]\.dcm.*Acquisition Number"):
            load_series(tmp_path)

    # ---------------------------------------------------------------- geometry
    def test_gap_warns_with_position_and_index(self, tmp_path):
        dss = F.clean_datasets()
        del dss[10]
        F.write(dss, tmp_path)
        with pytest.warns(SeriesWarning, match=r"gap.*5\.00 mm between slice 9 \(at -77\.50 mm.*1 slice\(s\) missing"):
            vol = load_series(tmp_path)
        assert vol.shape[0] == F.N - 1 and vol.spacing[0] == pytest.approx(2.5)
        assert vol.positions[10, 2] == pytest.approx(-100 + 11 * 2.5)

    def test_tilt_warns_with_angle(self, tmp_path):
        dss = F.clean_datasets()
        for k, ds in enumerate(dss):  # 15 degree gantry tilt: each slice shifted along y
            y = F.ORIGIN[1] + k * 2.5 * np.tan(np.radians(15))
            ds.ImagePositionPatient = [F.ORIGIN[0], y, ds.ImagePositionPatient[2]]
        F.write(dss, tmp_path)
        with pytest.warns(SeriesWarning, match=r"tilted.*15\.0 degrees"):
            vol = load_series(tmp_path)
        assert vol.spacing[0] == pytest.approx(2.5)

    def test_different_rows_columns_raise(self, tmp_path):
        dss = F.clean_datasets()
        small = F.clean_datasets(rows=32, cols=32)[7]
        dss[7] = small
        F.write(dss, tmp_path)
        with pytest.raises(DicomSeriesError,
                           match=r"same \(0028,0010\) Rows x \(0028,0011\) Columns.*slice_007\.dcm has \(32, 32\)"):
            load_series(tmp_path)

    def test_different_pixel_spacing_raise(self, tmp_path):
        dss = F.clean_datasets()
        dss[3].PixelSpacing = [0.8, 0.8]
        F.write(dss, tmp_path)
        with pytest.raises(DicomSeriesError, match=r"\(0028,0030\) Pixel Spacing.*slice_003\.dcm"):
            load_series(tmp_path)

    # ---------------------------------------------------------------- values
    def test_per_slice_rescale(self, tmp_path):
        hu = F.expected_hu()
        dss = F.clean_datasets()
        for k, ds in enumerate(dss):
            slope, inter = [(1.0, -1024.0), (0.5, -1000.0), (2.0, -1100.0), (1.0, 0.0)][k % 4]
            ds.RescaleSlope, ds.RescaleIntercept = slope, inter
            F.set_stored(ds, np.floor((hu[k] - inter) / slope))
        F.write(dss, tmp_path)
        vol = load_series(tmp_path)
        assert vol.hu.dtype == np.float32  # slope 0.5 with integer stored values: not int16
        expect = np.stack([np.floor((hu[k] - dss[k].RescaleIntercept) / dss[k].RescaleSlope) * dss[k].RescaleSlope
                           + dss[k].RescaleIntercept for k in range(F.N)])
        np.testing.assert_allclose(vol.hu, expect)
        assert vol.meta["rescale_slopes"] == [0.5, 1.0, 2.0]

    def test_dtype_float32_on_request(self, clean):
        vol = load_series(clean, dtype="float32")
        assert vol.hu.dtype == np.float32
        np.testing.assert_array_equal(vol.hu, F.expected_hu())

    def test_float_intercept_gives_float32(self, tmp_path):
        F.write(F.clean_datasets(intercept=-1024.5, hu=F.expected_hu().astype(float) + 0.5), tmp_path)
        vol = load_series(tmp_path)
        assert vol.hu.dtype == np.float32
        np.testing.assert_allclose(vol.hu, F.expected_hu() + 0.5)

    def test_padding_value_tag_becomes_air(self, tmp_path):
        dss = F.clean_datasets()
        for ds in dss:
            st = F.stored_of(ds)
            st[:4, :4] = -2000  # HU -3024 if not handled
            st[-4:, -4:] = -1500  # within the padding range
            F.set_stored(ds, st)
            ds.PixelPaddingValue = -2000
            ds.PixelPaddingRangeLimit = -1500
        F.write(dss, tmp_path)
        vol = load_series(tmp_path, padding_hu=-1024)
        assert (vol.hu[:, :4, :4] == -1024).all() and (vol.hu[:, -4:, -4:] == -1024).all()
        assert vol.hu.min() >= -1024 and vol.meta["padding_voxels"] == F.N * 32

    def test_fov_padding_without_tag_becomes_air(self, tmp_path):
        dss = F.clean_datasets()
        for ds in dss:
            st = F.stored_of(ds)
            yy, xx = np.mgrid[: F.ROWS, : F.COLS]
            st[(yy - 31.5) ** 2 + (xx - 31.5) ** 2 > 32**2] = -2000  # circular FOV, GE style
            F.set_stored(ds, st)
        F.write(dss, tmp_path)
        vol = load_series(tmp_path)
        assert vol.hu.min() == -1024 and vol.hu[0, 0, 0] == -1024
        assert not (vol.hu == -3024).any()

    # ---------------------------------------------------------------- compression
    @pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless],
                             ids=["rle", "jpeg-ls", "jpeg2000"])
    def test_compressed_lossless(self, tmp_path, syntax):
        dss = F.clean_datasets(n=6)
        for ds in dss:
            ds.compress(syntax)
        F.write(dss, tmp_path)
        vol = load_series(tmp_path)
        np.testing.assert_array_equal(vol.hu, F.expected_hu(6))
        assert vol.meta["transfer_syntax"] == syntax

    @pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLossless, HTJ2KLossless, HTJ2KLosslessRPCL],
                             ids=["jpeg-lossless-sv1", "jpeg-lossless", "htj2k", "htj2k-rpcl"])
    def test_encoded_with_imagecodecs(self, tmp_path, syntax):
        dss = [F.compress_with_imagecodecs(ds, syntax) for ds in F.clean_datasets(n=6)]
        F.write(dss, tmp_path)
        vol = load_series(tmp_path)
        np.testing.assert_array_equal(vol.hu, F.expected_hu(6))
        assert vol.meta["transfer_syntax"] == syntax

    @pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, HTJ2KLossless],
                             ids=["jpeg-lossless", "jpeg-ls", "jpeg2000", "htj2k"])
    @pytest.mark.parametrize("signed,bits_stored", [(True, 16), (True, 12), (False, 16), (False, 12)])
    def test_imagecodecs_fast_path_matches_pydicom(self, syntax, signed, bits_stored):
        import imagecodecs
        from pydicom.encaps import encapsulate

        from helpers._fastpath import decode_imagecodecs as _decode_imagecodecs

        rng = np.random.default_rng(bits_stored)
        raw = rng.integers(0, 1 << bits_stored, (2, 64, 48)).astype(np.uint16)  # every stored bit pattern
        ds = F.clean_datasets(n=1, rows=64, cols=48)[0]
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = int(signed), bits_stored, bits_stored - 1
        values = raw.astype(np.int32)
        if signed:
            values = np.where(values >= 1 << (bits_stored - 1), values - (1 << bits_stored), values)
        values = values.astype(np.int16 if signed else np.uint16)
        if syntax in (JPEGLosslessSV1, HTJ2KLossless):  # no pydicom encoder
            ds.NumberOfFrames = 2
            ds.PixelData = encapsulate([
                imagecodecs.jpeg8_encode(f, lossless=True, bitspersample=bits_stored, predictor=1)
                if syntax == JPEGLosslessSV1 else imagecodecs.htj2k_encode(v, reversible=True)
                for f, v in zip(raw, values)
            ])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = syntax
        else:  # pydicom's encoders, as a scanner's file would be (signed values as signed)
            ds.NumberOfFrames = 2
            ds.compress(syntax, values)
        ours = _decode_imagecodecs(ds, syntax)
        ref = pydicom.pixels.pixel_array(ds, decoding_plugin="pylibjpeg" if syntax != JPEGLSLossless else "pyjpegls")
        assert ours is not None and ours.shape == ref.shape == (2, 64, 48)
        if signed and bits_stored < 16:  # the loader sign-extends from Bits Stored after decoding
            shift = 16 - bits_stored
            ours = (ours << shift) >> shift
        assert ours.dtype == ref.dtype
        np.testing.assert_array_equal(ours, ref)

    def test_jpeg_lossless_without_imagecodecs_falls_back_to_pydicom(self, tmp_path, monkeypatch):
        dss = [F.compress_with_imagecodecs(ds) for ds in F.clean_datasets(n=4)]
        F.write(dss, tmp_path)
        monkeypatch.setitem(sys.modules, "imagecodecs", None)  # import fails, as if not installed
        np.testing.assert_array_equal(load_series(tmp_path).hu, F.expected_hu(4))

    def test_deflated(self, tmp_path):
        dss = F.clean_datasets(n=6)
        for ds in dss:
            ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        F.write(dss, tmp_path)
        np.testing.assert_array_equal(load_series(tmp_path).hu, F.expected_hu(6))

    def test_big_endian(self, tmp_path):
        F.write(F.clean_datasets(n=6), tmp_path, big_endian=True)
        np.testing.assert_array_equal(load_series(tmp_path).hu, F.expected_hu(6))

    def test_implicit_vr(self, tmp_path):
        dss = F.clean_datasets(n=6)
        for ds in dss:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        F.write(dss, tmp_path)
        np.testing.assert_array_equal(load_series(tmp_path).hu, F.expected_hu(6))

    def test_bits_stored_12_unsigned_high_bits_masked(self, tmp_path):
        hu = F.expected_hu(4)
        dss = F.clean_datasets(n=4)
        for k, ds in enumerate(dss):
            ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
            ds.PixelData = ((hu[k].astype(np.int32) + 1024) | 0xF000).astype("<u2").tobytes()  # overlay bits set
        F.write(dss, tmp_path)
        np.testing.assert_array_equal(load_series(tmp_path).hu, hu)

    def test_bits_stored_12_signed_sign_extended(self, tmp_path):
        hu = F.expected_hu(4)
        dss = F.clean_datasets(n=4, intercept=0.0)
        for k, ds in enumerate(dss):
            ds.BitsStored, ds.HighBit = 12, 11
            ds.PixelData = (hu[k].astype(np.int32) & 0x0FFF).astype("<u2").tobytes()  # 12-bit two's complement
        F.write(dss, tmp_path)
        np.testing.assert_array_equal(load_series(tmp_path).hu, hu)

    def test_jpeg_baseline(self, tmp_path):
        pil = pytest.importorskip("PIL.Image")
        from pydicom.encaps import encapsulate

        dss = F.clean_datasets(n=4)
        truth = []
        for k, ds in enumerate(dss):
            st = ((F.expected_hu(4)[k].astype(int) + 1000) // 5).astype(np.uint8)  # 8-bit stored values
            truth.append(st.astype(float) - 1024)
            buf = io.BytesIO()
            pil.fromarray(st).save(buf, format="JPEG", quality=95)
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            ds.PixelData = encapsulate([buf.getvalue()])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        F.write(dss, tmp_path)
        vol = load_series(tmp_path)
        assert np.abs(vol.hu - np.stack(truth)).mean() < 3  # lossy

    def test_undecodable_names_file_syntax_and_package(self, tmp_path, monkeypatch):
        from pydicom.pixels.decoders.base import get_decoder

        dss = F.clean_datasets(n=3)
        for ds in dss:
            ds.compress(JPEG2000Lossless)
        F.write(dss, tmp_path)
        monkeypatch.setattr(get_decoder(JPEG2000Lossless), "_available", {})  # as if the plugin were not installed
        monkeypatch.setitem(sys.modules, "imagecodecs", None)  # and imagecodecs neither
        with pytest.raises(DicomSeriesError,
                           match=r"slice_00\d\.dcm.*1\.2\.840\.10008\.1\.2\.4\.90.*pylibjpeg-openjpeg"):
            load_series(tmp_path)

    # ---------------------------------------------------------------- broken files
    def test_truncated_file_raises_naming_it(self, clean):
        p = clean / "slice_012.dcm"
        p.write_bytes(p.read_bytes()[:-3000])
        with pytest.raises(DicomSeriesError, match=r"slice_012\.dcm.*\(7FE0,0010\) Pixel Data holds .* truncated"):
            load_series(clean)

    def test_truncated_file_skipped_leaves_reported_gap(self, clean):
        p = clean / "slice_012.dcm"
        p.write_bytes(p.read_bytes()[:-3000])
        with pytest.warns(SeriesWarning) as rec:
            vol = load_series(clean, on_error="skip")
        texts = " | ".join(str(w.message) for w in rec)
        assert "slice_012.dcm" in texts and "between slice 11" in texts
        assert vol.shape[0] == F.N - 1

    def test_garbage_after_preamble_raises(self, clean):
        (clean / "broken.dcm").write_bytes(bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f")
        with pytest.raises(DicomSeriesError, match=r"broken\.dcm.*truncated or corrupt"):
            load_series(clean)

    def test_lying_rows_columns_raise_before_allocating(self, tmp_path):
        dss = F.clean_datasets()
        for ds in dss:  # every header claims a huge image; the data are 64x64
            ds.Rows, ds.Columns = 60000, 60000
        F.write(dss, tmp_path)
        with pytest.raises(DicomSeriesError, match=r"Pixel Data holds 8192 bytes but \(0028,0010\) Rows 60000"):
            load_series(tmp_path)

    def test_lying_header_on_compressed_file_raises_before_allocating(self, tmp_path):
        dss = F.clean_datasets(n=3)
        for ds in dss:
            ds.compress(RLELossless)
            ds.Rows, ds.Columns = 60000, 60000  # 7.2 GB if believed
        F.write(dss, tmp_path)
        with pytest.raises(DicomSeriesError, match=r"declares 7200 MB of pixels.*Nothing was allocated"):
            load_series(tmp_path)

    def test_header_without_pixel_data_raises(self, clean):
        ds = F.clean_datasets()[0]
        del ds.PixelData
        ds.save_as(clean / "cut.dcm", enforce_file_format=True)
        with pytest.raises(DicomSeriesError,
                           match=r"cut\.dcm is a DICOM image header without \(7FE0,0010\) Pixel Data"):
            load_series(clean)
        with pytest.warns(SeriesWarning, match=r"cut\.dcm"):
            vol = load_series(clean, on_error="skip")
        assert vol.shape[0] == F.N

    @pytest.mark.parametrize("chunk", [256, 2048], ids=["header-longer-than-chunk", "pixels-after-chunk"])
    def test_partial_reads(self, tmp_path, monkeypatch, chunk):
        """Headers are parsed from the first HEADER_BYTES; pixels are read later from the file."""
        import helpers.io as hio

        monkeypatch.setattr(hio, "HEADER_BYTES", chunk)
        F.write(F.clean_datasets(), tmp_path / "clean")
        np.testing.assert_array_equal(load_series(tmp_path / "clean").hu, F.expected_hu())
        dss = F.clean_datasets(n=4, series="j2k")
        for ds in dss:
            ds.compress(JPEG2000Lossless)
        F.write(dss, tmp_path / "j2k")
        np.testing.assert_array_equal(load_series(tmp_path / "j2k").hu, F.expected_hu(4))
        dss = F.clean_datasets(n=4, series="padded")
        for ds in dss:
            st = F.stored_of(ds)
            st[:2] = -2000
            F.set_stored(ds, st)
            ds.PixelPaddingValue = -2000
            ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        F.write(dss, tmp_path / "padded")
        vol = load_series(tmp_path / "padded")
        assert (vol.hu[:, :2] == -1024).all() and vol.meta["padding_voxels"] == 4 * 2 * F.COLS
        p = tmp_path / "clean" / "slice_003.dcm"
        p.write_bytes(p.read_bytes()[:-100])
        with pytest.raises(DicomSeriesError, match=r"slice_003\.dcm: \(7FE0,0010\) Pixel Data holds 8092 bytes"):
            load_series(tmp_path / "clean")

    # ---------------------------------------------------------------- hostile input, one test per class
    def test_absurd_number_of_frames_refused_before_any_per_frame_loop(self, tmp_path):
        enhanced = F.enhanced(F.clean_datasets(n=4))
        enhanced.NumberOfFrames = 10**9  # the loop over frames would never end; 4 frames of bytes are there
        F.write([enhanced], tmp_path / "case")
        F.write(F.clean_datasets(series="other"), tmp_path / "other")
        with no_hang(), pytest.raises(DicomSeriesError, match=(
            r"slice_000\.dcm: \(7FE0,0010\) Pixel Data holds 32768 bytes .* x \(0028,0008\) Number of Frames "
            r"1000000000 = 8192000000000 bytes were expected")):
            load_series(tmp_path / "case")
        with no_hang():
            assert [s.slices for s in list_series(tmp_path)] == [F.N]  # the lying file is left out, not 10**9 slices

    @pytest.mark.parametrize("frames,match", [
        (40, r"\(0028,0008\) Number of Frames is 40 but \(7FE0,0010\) Pixel Data holds 1 compressed frame\(s\)"),
        (5000, r"\(0028,0008\) Number of Frames is 5000 but the \d+ bytes of compressed .* can hold at most"),
    ], ids=["more-than-fragments", "more-than-bytes"])
    def test_compressed_number_of_frames_checked_against_the_data(self, tmp_path, frames, match):
        dss = F.clean_datasets(n=3)
        for ds in dss:
            ds.compress(RLELossless)
            ds.NumberOfFrames = frames
        F.write(dss, tmp_path)
        with no_hang(), pytest.raises(DicomSeriesError, match=r"slice_00\d\.dcm: " + match + r".*Nothing was"):
            load_series(tmp_path)

    @pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless],
                             ids=["jpeg2000", "jpeg-ls", "rle"])
    def test_compressed_rows_columns_checked_against_the_codestream(self, tmp_path, syntax):
        dss = F.clean_datasets(n=3)
        for ds in dss:
            ds.compress(syntax)
            ds.Rows, ds.Columns = 4096, 4096  # 32 MB a slice if believed; under the old 256 MB plausibility cap
        F.write(dss, tmp_path)
        with peak_traced() as peak, pytest.raises(DicomSeriesError, match=(
                r"slice_00\d\.dcm: (compressed frame 1 is a 64 x 64 image but \(0028,0010\) Rows x \(0028,0011\) "
                r"Columns say 4096 x 4096|RLE frame 1 holds \d+ bytes, too few for the 4096 x 4096 image)"
                r".*Nothing was decoded")):
            load_series(tmp_path)
        assert peak[0] < 16 * 2**20  # nothing of the declared size was allocated

    def test_zip_member_with_implausible_size_refused_unread(self, clean, tmp_path, monkeypatch):
        import helpers.io as hio

        monkeypatch.setattr(hio, "MAX_PLAUSIBLE_BYTES", 2**20)  # so that an 8 MB member stands for a 2 GB one
        archive = tmp_path / "case.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(clean.iterdir()):
                zf.write(p, p.name)
            zf.writestr("zeros.dcm", bytes(8 * 2**20))  # packs about 1030:1
        with peak_traced() as peak, pytest.raises(DicomSeriesError, match=(
                r"zeros\.dcm: the zip archive declares this member as 8 MB unpacked from 0\.01 MB "
                r".*Nothing was unpacked")):
            load_series(archive)
        assert peak[0] < 4 * 2**20
        with pytest.warns(SeriesWarning, match=r"zeros\.dcm"):
            vol = load_series(archive, on_error="skip")
        np.testing.assert_array_equal(vol.hu, F.expected_hu())
        assert [s.slices for s in list_series(archive)] == [F.N]

    def test_deflate_bomb_refused_before_inflating(self, tmp_path, monkeypatch):
        import helpers.io as hio

        monkeypatch.setattr(hio, "MAX_FILE_BYTES", 4 * 2**20)  # so that 8 MB stand for a few GB
        dss = F.clean_datasets(n=3)
        for ds in dss:
            ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        dss[1].add_new(0x00091010, "OB", bytes(8 * 2**20))  # a private element of zeros: ~8 KB deflated
        paths = F.write(dss, tmp_path)
        assert paths[1].stat().st_size < 64 * 2**10
        with peak_traced() as peak, pytest.raises(DicomSeriesError, match=(
                r"slice_001\.dcm: the deflated data set inflates to more than 4 MB .*Nothing was unpacked")):
            load_series(tmp_path)
        assert peak[0] < 6 * 2**20

    def test_zip_members_read_in_bounded_chunks(self, tmp_path):
        from helpers.io import _zip_items

        archive = tmp_path / "big.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("big.bin", bytes(64 * 2**20))
        [(name, member)] = _zip_items(archive)
        with peak_traced() as peak:
            data, size = member.read(4096)
        assert name.endswith("::big.bin") and len(data) == 4096 and size == 64 * 2**20
        assert peak[0] < 4 * 2**20  # a 4 KB read does not unpack the 64 MB member

    @pytest.mark.parametrize("keyword,value,match", [
        ("ImagePositionPatient", [float("nan"), -22.4, -70.0],
         r"\(0020,0032\) Image Position \(Patient\) is \[nan, -22\.4, -70\.0\]; expected three finite numbers \(mm\)"),
        ("PixelSpacing", [0, 0],
         r"\(0028,0030\) Pixel Spacing is \[0\.0, 0\.0\]; expected two positive finite numbers"),
        ("ImageOrientationPatient", [0] * 6,
         (r"\(0020,0037\) Image Orientation \(Patient\) is \[0\.0(, 0\.0){5}\]; expected two perpendicular unit vectors"
          r".*lengths 0 and 0")),
        ("ImageOrientationPatient", [1, 0, 0, 0.6, 0.8, 0],
         r"\(0020,0037\) Image Orientation \(Patient\) is .*found lengths 1 and 1 and dot product 0\.6"),
    ], ids=["nan-position", "zero-spacing", "zero-orientation", "skewed-orientation"])
    def test_corrupt_geometry_names_file_tag_and_value(self, tmp_path, keyword, value, match):
        dss = F.clean_datasets()
        setattr(dss[7], keyword, value)
        F.write(dss, tmp_path)
        with pytest.raises(DicomSeriesError, match=r"slice_007\.dcm: " + match + r".*remove the file"):
            load_series(tmp_path)

    def test_zero_rescale_slope_refused(self, tmp_path):
        dss = F.clean_datasets()
        dss[4].RescaleSlope = 0  # every voxel would silently be the intercept, -1024 HU
        F.write(dss, tmp_path)
        with pytest.raises(DicomSeriesError, match=(
                r"slice_004\.dcm: \(0028,1053\) Rescale Slope is 0\.0; expected a finite, non-zero number")):
            load_series(tmp_path)

    def test_declared_explicit_vr_read_as_implicit_like_pydicom(self, tmp_path):
        paths = F.write_vr_mismatch(F.clean_datasets(), tmp_path)
        with pytest.warns(SeriesWarning, match=(
                r"24 file\(s\) of the series .*Explicit VR Little Endian.*encoded otherwise")) as rec:
            vol = load_series(tmp_path)
        np.testing.assert_array_equal(vol.hu, F.expected_hu())
        assert sum("encoded otherwise" in str(w.message) for w in rec) == 1  # once, not per file
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.testing.assert_array_equal(pydicom.dcmread(paths[0]).pixel_array, F.stored_of(F.clean_datasets()[0]))

    @pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
    def test_named_pipe_skipped_without_opening(self, clean):
        os.mkfifo(clean / "pipe")  # opening it would block until someone writes
        (clean / "link_to_pipe").symlink_to(clean / "pipe")
        with no_hang():
            vol = load_series(clean)
            table = list_series(clean)
            vol_from_list = load_series(sorted(clean.iterdir()))
        assert vol.meta["skipped_files"] == 2 and vol.shape[0] == F.N and vol_from_list.shape[0] == F.N
        assert [s.slices for s in table] == [F.N]
        with no_hang(), pytest.raises(DicomSeriesError, match=r"pipe is a named pipe \(FIFO\), not a file or folder"):
            load_series(clean / "pipe")

    def test_dangling_and_looping_symlinks_say_what_to_do(self, clean):
        (clean / "link.dcm").symlink_to(clean / "gone.dcm")
        with pytest.raises(DicomSeriesError, match=(
                r"link\.dcm is a symbolic link to .*gone\.dcm, which does not exist\. Point the link at the file, "
                r"delete the link, or pass on_error='skip'")):
            load_series(clean)
        (clean / "link.dcm").unlink()
        (clean / "a").symlink_to("b")
        (clean / "b").symlink_to("a")
        with pytest.raises(DicomSeriesError, match=r"a is a symbolic link to b, which cannot be followed"):
            load_series(clean)
        with pytest.warns(SeriesWarning, match=r"symbolic link"):
            assert load_series(clean, on_error="skip").shape[0] == F.N

    def test_one_gap_warning_per_missing_run(self, tmp_path):
        dss = F.clean_datasets()
        F.write([ds for k, ds in enumerate(dss) if k not in (5, 6, 7, 15)], tmp_path)
        with pytest.warns(SeriesWarning) as rec:
            load_series(tmp_path)
        gaps = [str(w.message) for w in rec if "gap" in str(w.message)]
        assert len(gaps) == 2
        assert "10.00 mm between slice 4" in gaps[0] and "about 3 slice(s) missing" in gaps[0]
        assert "5.00 mm between slice 11" in gaps[1] and "about 1 slice(s) missing" in gaps[1]

    def test_spacing_change_reported_once_with_where(self, tmp_path):
        dss = F.with_steps(F.clean_datasets(n=40), [5.0] * 12 + [2.5] * 27)  # 13 slices 5 mm apart, then 2.5 mm
        F.write(dss, tmp_path)
        with pytest.warns(SeriesWarning) as rec:
            vol = load_series(tmp_path)
        texts = [str(w.message) for w in rec]
        assert len(texts) == 1 and "gap" not in texts[0]  # not 12 "gap ... 1 slice missing" warnings
        assert re.search(r"slice spacing of series .* changes: 5\.00 mm from slice 0 "
                         r"\(at -100\.00 mm, \S*slice_000\.dcm\) "
                         r"to slice 12 \(at -40\.00 mm, \S*slice_012\.dcm\); 2\.50 mm \(the median step", texts[0])
        assert vol.spacing[0] == pytest.approx(2.5) and vol.positions[12, 2] == pytest.approx(-40.0)

    # ---------------------------------------------------------------- choosing a series
    def test_two_series_tied_raise_with_table(self, tmp_path):
        F.write(F.clean_datasets(series="a", description="soft"), tmp_path / "a")
        F.write(F.clean_datasets(series="b", description="lung"), tmp_path / "b")
        with pytest.raises(DicomSeriesError, match=r"2 series .* have 24 slices each.*'soft'.*'lung'.*series_uid="):
            load_series(tmp_path)
        vol = load_series(tmp_path, series_uid=F.uid("series", "b"))
        assert vol.meta["series_description"] == "lung"

    def test_two_series_untied_take_largest_and_warn(self, tmp_path):
        F.write(F.clean_datasets(series="a", description="soft"), tmp_path / "a")
        F.write(F.clean_datasets(n=10, series="b", description="lung"), tmp_path / "b")
        with pytest.warns(SeriesWarning, match=r"2 series.*'soft'.*left out.*'lung'.*10 slices"):
            vol = load_series(tmp_path)
        assert vol.shape[0] == F.N

    def test_unknown_series_uid(self, clean):
        with pytest.raises(DicomSeriesError, match=r"series_uid '1\.2\.3' is not in .*'clean 2\.5mm'"):
            load_series(clean, series_uid="1.2.3")

    def test_non_ct_raises_unless_allowed(self, tmp_path):
        F.write(F.clean_datasets(modality="MR", intercept=0.0, hu=F.expected_hu() + 1000), tmp_path)
        with pytest.raises(DicomSeriesError, match=r"no CT series.*MR.*allow_non_ct=True"):
            load_series(tmp_path)
        vol = load_series(tmp_path, allow_non_ct=True)
        assert vol.meta["modality"] == "MR"

    def test_enhanced_multiframe_ct(self, tmp_path):
        dss = F.clean_datasets()
        dss[3].RescaleIntercept = -1000.0  # per-frame rescale differs
        F.set_stored(dss[3], F.expected_hu()[3].astype(int) + 1000)
        F.write([F.enhanced(dss[::-1])], tmp_path)  # frames stored head -> feet
        vol = load_series(tmp_path)
        np.testing.assert_array_equal(vol.hu, F.expected_hu())
        assert vol.spacing == pytest.approx(F.SPACING) and vol.origin == pytest.approx(F.ORIGIN)
        assert vol.meta["file_count"] == 1 and vol.meta["frame_indices"][0] == F.N - 1

    # ---------------------------------------------------------------- nothing to load
    def test_empty_folder_names_it(self, tmp_path):
        with pytest.raises(DicomSeriesError, match=rf"no DICOM image files found in {tmp_path} \(it is empty\)"):
            load_series(tmp_path)

    def test_only_junk_says_so(self, tmp_path):
        (tmp_path / "a.txt").write_text("hello")
        with pytest.raises(DicomSeriesError, match=r"1 files looked at, none is a DICOM image: a\.txt"):
            load_series(tmp_path)

    def test_missing_path(self, tmp_path):
        with pytest.raises(DicomSeriesError, match=r"nope does not exist"):
            load_series(tmp_path / "nope")

    def test_bad_on_error(self, clean):
        with pytest.raises(ValueError, match="on_error"):
            load_series(clean, on_error="ignore")


class TestListSeries:
    def test_table(self, tmp_path):
        F.write(F.clean_datasets(series="a", description="soft"), tmp_path / "a")
        F.write(F.clean_datasets(n=10, series="b", description="lung", series_number=3), tmp_path / "b")
        (tmp_path / "junk.txt").write_text("x")
        table = list_series(tmp_path)
        assert isinstance(table, SeriesTable) and all(isinstance(s, SeriesInfo) for s in table)
        assert [(s.description, s.slices, s.modality) for s in table] == [("soft", 24, "CT"), ("lung", 10, "CT")]
        text = repr(table)
        assert text.splitlines()[0].split()[:4] == ["#", "modality", "description", "slices"]
        assert F.uid("series", "b") in text and "<table>" in table._repr_html_()

    def test_empty(self, tmp_path):
        assert len(list_series(tmp_path)) == 0


class TestLoadSeriesCorruptedHeaders:
    """Property-style: random damage to one file's header (uncompressed or RLE) never ends in
    anything but a right volume or a DicomSeriesError (SeriesWarnings allowed): no other
    exception, no hang, no allocation above 1 GB."""

    SEED = 20261129

    @pytest.mark.parametrize("syntax,cases", [(None, 300), (RLELossless, 100)], ids=["uncompressed", "rle"])
    def test_random_header_damage(self, tmp_path, syntax, cases):
        resource = pytest.importorskip("resource")
        if not hasattr(signal, "setitimer"):
            pytest.skip("needs SIGALRM for the per-case timeout")
        dss = F.clean_datasets(n=4, rows=16, cols=16)
        for ds in dss if syntax else []:
            ds.compress(syntax)
        clean = F.write(dss[:3], tmp_path / "clean")
        truth = F.expected_hu(4, 16, 16)
        clean_uids = {F.uid("sop", "clean", k): k for k in range(3)}
        rng = np.random.default_rng(self.SEED)
        target = tmp_path / "damaged.dcm"
        # Above 1 GB of address space, numpy and Python raise MemoryError: counted as a failure.
        with open("/proc/self/statm") as fh:
            in_use = int(fh.read().split()[0]) * resource.getpagesize()
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        outcomes, failures = {"volume": 0, "error": 0}, []
        resource.setrlimit(resource.RLIMIT_AS, (in_use + 2**30, hard))
        try:
            for case in range(cases):
                target.write_bytes(F.corrupted(dss[3], rng))
                try:
                    with no_hang(10), warnings.catch_warnings(record=True) as rec:
                        warnings.simplefilter("always")
                        vol = load_series([*clean, target])
                    problem = self._wrong(vol, truth, clean_uids, rec)
                    outcomes["volume"] += 1
                except DicomSeriesError:
                    outcomes["error"] += 1
                    problem = None
                except BaseException as exc:  # noqa: BLE001 - exactly what this test looks for
                    problem = f"{type(exc).__name__}: {exc}"
                if problem:
                    failures.append(f"case {case}: {problem}")
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        assert not failures, "\n".join(failures[:10])
        assert min(outcomes.values()) > cases // 5  # both outcomes are exercised

    @staticmethod
    def _wrong(vol, truth, clean_uids, rec) -> str | None:
        """What is wrong with a volume loaded despite the damage (None: nothing)."""
        odd = [w for w in rec if not issubclass(w.category, SeriesWarning) and "pydicom" not in w.filename]
        if odd:
            return f"unexpected {odd[0].category.__name__}: {odd[0].message}"
        if vol.shape[1:] != (16, 16) or vol.shape[0] not in (3, 4):
            return f"shape {vol.shape}"
        if not (np.isfinite(vol.hu).all() and np.isfinite(vol.positions).all()):
            return "non-finite values"
        if not (all(np.isfinite(vol.spacing)) and min(vol.spacing) > 0):
            return f"spacing {vol.spacing}"
        if not np.allclose(vol.direction.T @ vol.direction, np.eye(3), atol=0.05):
            return f"direction {vol.direction.tolist()}"
        for k, uid in enumerate(vol.meta["sop_instance_uids"]):
            if uid in clean_uids and not np.array_equal(vol.hu[k], truth[clean_uids[uid]]):
                return f"clean slice {clean_uids[uid]} changed"
        return None


@pytest.mark.realdata
class TestRealCase:
    def test_b40f_by_series_uid(self, real_case):
        vol = load_series(real_case, series_uid=B40F_UID)
        assert vol.shape == (30, 512, 512) and vol.meta["kernel"] == "B40f"
        assert vol.spacing == pytest.approx((8.0, 0.646484375, 0.646484375))
        assert len(vol.meta["sop_instance_uids"]) == 30

    def test_two_series_tie(self, real_case):
        with pytest.raises(DicomSeriesError, match=r"2 series .* 30 slices each.*B70f.*B40f.*series_uid="):
            load_series(real_case)

    def test_same_hu_as_pydicom_modality_lut(self, real_case):
        """On the real B40f series: HU equal to pydicom's apply_modality_lut, slice by slice in position order."""
        from pydicom.pixels import apply_modality_lut

        from helpers.hu import PADDING_BELOW_HU

        folder = real_case / "ct-b40f"
        vol = load_series(folder)
        dss = {d.SOPInstanceUID: d for d in map(pydicom.dcmread, folder.glob("*.dcm"))}
        ref = np.stack([apply_modality_lut(dss[u].pixel_array, dss[u]) for u in vol.meta["sop_instance_uids"]])
        tissue = ref >= PADDING_BELOW_HU  # the loader turns out-of-field padding into -1024 HU
        assert tissue.mean() > 0.5
        np.testing.assert_array_equal(vol.hu[tissue], ref[tissue])

    def test_same_as_simpleitk(self, real_case):
        sitk = pytest.importorskip("SimpleITK")
        folder = real_case / "ct-b40f"
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        img = reader.Execute()
        vol = load_series(folder)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(img), vol.hu)
        assert img.GetSpacing()[::-1] == pytest.approx(vol.spacing)
        assert img.GetOrigin() == pytest.approx(vol.origin)
