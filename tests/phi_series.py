"""A small CT series full of distinctive fake identifiers, for the de-identification and PHI-leak tests.

Built from the generated ``small`` sample (real lungs, so every exporter and the cohort pipeline
have something to work on), with every identifying attribute set to a value that cannot occur by
chance, a private block, an identifier inside a sequence the profile removes, a name inside one it
keeps, and an overlay comment.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

#: keyword -> distinctive fake value written into every file.
FAKE = {
    "PatientName": "ZEBRAFINCH^QUILLON^Q",
    "PatientID": "PHI7731XQ",
    "AccessionNumber": "ACC99821ZZ",
    "PatientBirthDate": "19411103",
    "InstitutionName": "St Quillon Infirmary",
    "ReferringPhysicianName": "WOMBATDOC^OTTO",
    "OperatorsName": "OPERQUILL^ANNA",
    "StudyDate": "20190417",
    "StudyID": "STQ4471",
    "OtherPatientIDs": "OTHERID5521",
    "PatientAddress": "12 Quillon Lane, Fakeville",
    "StationName": "CTQUILL01",
    "DeviceSerialNumber": "SNQ99120",
}
#: value hidden in a private element and inside a sequence item.
PRIVATE_VALUE = "PRIVQUILL5521"
SEQUENCE_VALUE = "REQQUILL8830"
#: a person's name nested in a sequence the profile keeps (its items are cleaned).
NESTED_NAME = "NESTQUILL^VERA"


def write_phi_series(sample_dicom: Path, out: Path) -> Path:
    """Copy ``sample_dicom`` to ``out`` with the fake identifiers; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(sorted(p for p in Path(sample_dicom).iterdir() if p.is_file())):
        ds = pydicom.dcmread(f)
        for kw, v in FAKE.items():
            setattr(ds, kw, v)
        ds.StudyDescription = "CT chest for ZEBRAFINCH follow-up"
        ds.SeriesDescription = "Chest 5mm QUILLON recon"  # technologists do type names into descriptions
        block = ds.private_block(0x0009, "QUILL PRIVATE", create=True)
        block.add_new(0x01, "LO", PRIVATE_VALUE)
        req = Dataset()
        req.RequestedProcedureID = SEQUENCE_VALUE
        req.ScheduledProcedureStepID = SEQUENCE_VALUE
        ds.RequestAttributesSequence = Sequence([req])
        observer = Dataset()
        observer.VerifyingObserverName = NESTED_NAME
        observer.VerifyingOrganization = "Quillon Radiology Group"
        observer.VerificationDateTime = "20190418101500"
        ds.VerifyingObserverSequence = Sequence([observer])
        ds.add_new(0x60004000, "LT", "overlay note by OPERQUILL")  # (6000,4000) Overlay Comments
        ref = Dataset()
        ref.ReferencedSOPClassUID = ds.SOPClassUID
        ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        ds.ReferencedImageSequence = Sequence([ref])
        ds.save_as(out / f"im{i:03d}.dcm", enforce_file_format=True)
    return out
