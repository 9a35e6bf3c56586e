"""helpers.deid: PS3.15 Annex E de-identification, verified element by element."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from phi_series import FAKE, NESTED_NAME, PRIVATE_VALUE, SEQUENCE_VALUE, write_phi_series

from helpers.deid import BASIC_PROFILE, PATIENT_CHARACTERISTICS, deidentify, identifying_values
from helpers.errors import DicomSeriesError, SeriesWarning
from helpers.io import load_series
from helpers.sample import make_sample


def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def phi_series(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phi")
    sample = make_sample(root / "sample", size="small") / "dicom"
    return write_phi_series(sample, root / "phi")


@pytest.fixture(scope="module")
def strict(phi_series, tmp_path_factory):
    """The Basic Profile with dates removed, no option that keeps anything."""
    d = tmp_path_factory.mktemp("strict")
    before = tree_hash(phi_series)
    rep = deidentify(phi_series, d / "out", mapping=d / "key.csv", dates="remove", clean_descriptors=False,
                     seed="test")
    assert tree_hash(phi_series) == before, "the source folder was modified"
    return rep


def all_elements(ds):
    """Every element of a dataset, its file meta, sequence items and private blocks."""
    yield from ds.file_meta.iterall() if getattr(ds, "file_meta", None) is not None else ()
    yield from ds.iterall()


class TestAudit:
    """Scan every element of every output file for every identifying value of every input file."""

    def test_no_identifying_value_left(self, phi_series, strict):
        secret = {PRIVATE_VALUE, SEQUENCE_VALUE, NESTED_NAME, *FAKE.values()}
        for f in phi_series.iterdir():
            secret |= identifying_values(pydicom.dcmread(f))
        outputs = sorted(strict.out_dir.iterdir())
        assert len(outputs) == strict.n_files == len(list(phi_series.iterdir()))
        found, scanned = [], 0
        for f in outputs:
            raw = f.read_bytes()
            ds = pydicom.dcmread(f)
            for elem in all_elements(ds):
                scanned += 1
                if elem.VR in ("OB", "OW") or elem.VR == "SQ":
                    continue
                text = str(elem.value)
                found += [(f.name, elem.tag, s) for s in secret if s in text]
            # and the raw bytes (pixel data aside): nothing hides in a tag pydicom did not show
            head = raw[: raw.find(b"\xe0\x7f\x10\x00")]
            found += [(f.name, "bytes", s) for s in secret if s.encode() in head]
        assert not found, found[:10]
        assert scanned > 50 * len(outputs) and len(secret) > len(FAKE) + len(outputs)
        print(f"audit: {len(outputs)} files, {scanned} elements scanned, {len(secret)} identifying values, "
              f"{len(found)} found")

    def test_profile_attributes(self, phi_series, strict):
        src = pydicom.dcmread(sorted(phi_series.iterdir())[0])
        out = [pydicom.dcmread(f) for f in sorted(strict.out_dir.iterdir())]
        for ds in out:
            kws = {e.keyword for e in all_elements(ds)}
            for kw, action in BASIC_PROFILE.items():
                if action in ("X", "C"):
                    assert kw not in kws, kw
                elif action == "Z" and kw in ds and kw not in ("PatientName", "PatientID", "AccessionNumber",
                                                             "StudyID"):
                    assert ds[kw].value in ("", None), kw
                elif action == "U" and kw in ds and kw in src:
                    assert ds[kw].value != src[kw].value, kw
            assert not any(e.tag.is_private for e in ds.iterall())
            assert ds.PatientIdentityRemoved == "YES"
            assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100"]
            assert ds.LongitudinalTemporalInformationModified == "REMOVED"

    def test_report_counts(self, strict):
        n = strict.n_files
        assert strict.private_removed == 2 * n  # the private creator and its element
        assert strict.removed["InstitutionName"] == n and strict.removed["OperatorsName"] == n
        assert strict.removed["RequestAttributesSequence"] == n
        assert strict.emptied["StudyDate"] == n and strict.emptied["PatientBirthDate"] == n
        assert strict.replaced["PatientID"] == n and strict.replaced["SOPInstanceUID"] == n
        assert strict.removed["(6000,4000)"] == n and strict.removed["VerifyingOrganization"] == n
        assert strict.emptied["VerifyingObserverName"] == n  # inside a kept sequence

    def test_profile_keywords_exist(self):
        """A misspelt keyword would silently do nothing."""
        from pydicom.datadict import tag_for_keyword

        assert [k for k in [*BASIC_PROFILE, *PATIENT_CHARACTERISTICS] if tag_for_keyword(k) is None] == []


class TestStillOneSeries:
    def test_same_hu_and_geometry(self, phi_series, strict):
        a, b = load_series(phi_series), load_series(strict.out_dir)
        assert np.array_equal(a.hu, b.hu)
        assert a.spacing == b.spacing
        np.testing.assert_allclose(a.positions, b.positions)
        np.testing.assert_allclose(a.direction, b.direction)

    def test_uids_remapped_consistently(self, strict):
        out = [pydicom.dcmread(f) for f in sorted(strict.out_dir.iterdir())]
        assert len({d.StudyInstanceUID for d in out}) == 1
        assert len({d.SeriesInstanceUID for d in out}) == 1
        assert len({d.FrameOfReferenceUID for d in out}) == 1
        for d in out:  # a reference inside a sequence follows its instance
            assert d.ReferencedImageSequence[0].ReferencedSOPInstanceUID == d.SOPInstanceUID
            assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID

    def test_mapping_table_apart(self, phi_series, strict):
        assert strict.out_dir not in strict.mapping.parents
        rows = list(csv.DictReader(strict.mapping.open()))
        assert len(rows) == strict.n_files
        assert {r["original_PatientID"] for r in rows} == {FAKE["PatientID"]}
        assert len({r["new_PatientID"] for r in rows}) == 1


class TestOptions:
    def test_shift_keeps_intervals(self, phi_series, tmp_path):
        rep = deidentify(phi_series, tmp_path / "o", mapping=tmp_path / "k.csv", dates="shift",
                         patient_characteristics=True, seed="s")
        ds = pydicom.dcmread(sorted(rep.out_dir.iterdir())[0])
        assert ds.StudyDate and ds.StudyDate != FAKE["StudyDate"]
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        assert "113107" in [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
        assert ds.PatientSex == pydicom.dcmread(sorted(phi_series.iterdir())[0]).PatientSex
        assert ds.PatientBirthDate == ""  # no option keeps the birth date

    def test_clean_descriptors(self, phi_series, tmp_path):
        rep = deidentify(phi_series, tmp_path / "o", mapping=tmp_path / "k.csv", clean_descriptors=True)
        ds = pydicom.dcmread(sorted(rep.out_dir.iterdir())[0])
        assert ds.StudyDescription == "CT chest for follow-up"

    def test_characteristics_removed_by_default(self, phi_series, tmp_path):
        rep = deidentify(phi_series, tmp_path / "o", mapping=tmp_path / "k.csv")
        ds = pydicom.dcmread(sorted(rep.out_dir.iterdir())[0])
        assert all(ds.get(k) in (None, "") for k in PATIENT_CHARACTERISTICS)

    def test_bad_dates_option(self, phi_series, tmp_path):
        with pytest.raises(ValueError, match="choose 'remove'"):
            deidentify(phi_series, tmp_path / "o", mapping=tmp_path / "k.csv", dates="blur")


class TestRefusals:
    def test_mapping_inside_output(self, phi_series, tmp_path):
        with pytest.raises(DicomSeriesError, match="kept apart"):
            deidentify(phi_series, tmp_path / "o", mapping=tmp_path / "o" / "k.csv")
        assert not (tmp_path / "o").exists()

    def test_output_inside_source(self, phi_series, tmp_path):
        with pytest.raises(DicomSeriesError, match="inside the source"):
            deidentify(phi_series, phi_series / "deid", mapping=tmp_path / "k.csv")

    def test_existing_output(self, phi_series, tmp_path):
        (tmp_path / "o").mkdir()
        with pytest.raises(DicomSeriesError, match="exists"):
            deidentify(phi_series, tmp_path / "o", mapping=tmp_path / "k.csv")

    def test_no_dicom(self, tmp_path):
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "notes.txt").write_text("hello")
        with pytest.raises(DicomSeriesError, match="no DICOM file"):
            deidentify(tmp_path / "src", tmp_path / "o", mapping=tmp_path / "k.csv")


class TestBurnedIn:
    @pytest.fixture
    def burned(self, phi_series, tmp_path):
        src = tmp_path / "src"
        src.mkdir()
        for f in sorted(phi_series.iterdir())[:3]:
            ds = pydicom.dcmread(f)
            ds.BurnedInAnnotation = "YES"
            ds.save_as(src / f.name)
        return src

    def test_flagged(self, burned, tmp_path):
        with pytest.warns(SeriesWarning, match="Burned In Annotation is YES"):
            rep = deidentify(burned, tmp_path / "o", mapping=tmp_path / "k.csv")
        assert len(rep.burned_in) == 3

    def test_error_leaves_nothing(self, burned, tmp_path):
        with pytest.raises(DicomSeriesError, match="NOT cleaned"):
            deidentify(burned, tmp_path / "o", mapping=tmp_path / "k.csv", on_burned_in="error")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
