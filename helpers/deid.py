"""De-identification after DICOM PS3.15 Annex E (Basic Application Level Confidentiality Profile).

:func:`deidentify` copies a series to a **new** folder with the patient's
identity removed, and writes the key to re-identify it (a mapping table) to a
file kept **apart** from the output.

Who does what
-------------
* `dicognito <https://github.com/blairconrad/dicognito>`_ (maintained, pure
  Python on pydicom) does the *replacing*: every UID except class and
  transfer-syntax UIDs is remapped through one seeded hash, so the copy is still
  one study / one series / one frame of reference and still loads with
  :func:`helpers.io.load_series`; names, IDs, addresses and institutions get
  dummy values; dates and times are shifted by one offset per run (so intervals
  stay true).  It was chosen over ``deid`` because its consistent UID remapping
  and date shifting are built in; ``deid`` needs a recipe and custom functions
  for both.
* This module adds what dicognito does not do and the profile requires: the
  profile's attribute actions (:data:`BASIC_PROFILE`: X remove, Z empty, D dummy),
  private tags and overlays/curves removed, the three options as choices, the
  burned-in annotation flag, the (0012,0062) Patient Identity Removed /
  (0012,0064) De-identification Method Code Sequence record, and the mapping table.

What the profile does not catch: text burned into the pixels (flagged, not
removed), faces in a 3-D rendering of a head CT, identifiers typed into a free
text field the profile keeps (the Clean Descriptors option only removes the
values it knows), and the uncommon private tag that some viewer needs (all are
removed here).
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DicomSeriesError, SeriesWarning

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

__all__ = ["deidentify", "DeidReport", "BASIC_PROFILE", "DESCRIPTORS", "PATIENT_CHARACTERISTICS",
           "OPTION_CODES", "identifying_values"]

#: PS3.15 Table E.1-1, Basic Profile actions for the attributes a CT/MR/SEG series carries
#: (X remove, Z empty or dummy, D dummy, U remapped UID, C descriptor: cleaned with the option, else X).
BASIC_PROFILE: dict[str, str] = {
    # patient
    "PatientName": "Z", "PatientID": "Z", "IssuerOfPatientID": "X", "PatientBirthDate": "Z",
    "PatientBirthTime": "X", "PatientBirthName": "X", "PatientMotherBirthName": "X", "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X", "OtherPatientNames": "X", "PatientAddress": "X", "PatientTelephoneNumbers": "X",
    "PatientTelecomInformation": "X", "MilitaryRank": "X", "BranchOfService": "X", "MedicalRecordLocator": "X",
    "PatientInsurancePlanCodeSequence": "X", "PatientReligiousPreference": "X", "Occupation": "X",
    "CountryOfResidence": "X", "RegionOfResidence": "X", "EthnicGroup": "X", "PatientComments": "X",
    "AdditionalPatientHistory": "X", "MedicalAlerts": "X", "Allergies": "X", "PatientState": "X",
    "PregnancyStatus": "X", "SmokingStatus": "X", "LastMenstrualDate": "X", "SpecialNeeds": "X",
    "PatientSex": "Z", "PatientAge": "X", "PatientSize": "X", "PatientWeight": "X",
    "PatientSexNeutered": "X", "ResponsiblePerson": "X", "ResponsibleOrganization": "X",
    "ReferencedPatientPhotoSequence": "X", "PatientBirthDateInAlternativeCalendar": "X",
    # study / visit / request
    "AccessionNumber": "Z", "StudyID": "Z", "StudyDate": "Z", "StudyTime": "Z", "ReferringPhysicianName": "Z",
    "ReferringPhysicianAddress": "X", "ReferringPhysicianTelephoneNumbers": "X",
    "ReferringPhysicianIdentificationSequence": "X", "PhysiciansOfRecord": "X", "NameOfPhysiciansReadingStudy": "X",
    "PerformingPhysicianName": "X", "OperatorsName": "X", "RequestingPhysician": "X",
    "ScheduledPerformingPhysicianName": "X",
    "AdmissionID": "X", "AdmittingDiagnosesDescription": "X", "CurrentPatientLocation": "X",
    "InstitutionName": "X", "InstitutionAddress": "X", "InstitutionalDepartmentName": "X", "StationName": "X",
    "DeviceSerialNumber": "X", "PlateID": "X", "DetectorID": "X", "GantryID": "X",
    "RequestAttributesSequence": "X", "RequestedProcedureID": "X", "RequestedProcedureDescription": "X",
    "PerformedProcedureStepID": "X", "PerformedProcedureStepDescription": "X", "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X", "ScheduledProcedureStepID": "X", "ReasonForStudy": "X",
    "ReasonForTheRequestedProcedure": "X", "ImageComments": "X", "TextComments": "X", "StudyComments": "X",
    "InterpretationText": "X", "OriginalAttributesSequence": "X", "ModifiedAttributesSequence": "X",
    "DigitalSignaturesSequence": "X", "MACParametersSequence": "X",
    "ContentCreatorName": "Z", "ContentDate": "Z", "ContentTime": "Z",
    "SeriesDate": "X", "SeriesTime": "X", "AcquisitionDate": "X", "AcquisitionTime": "X",
    "AcquisitionDateTime": "X", "OverlayDate": "X", "OverlayTime": "X", "CurveDate": "X", "CurveTime": "X",
    # descriptors (Clean Descriptors option: C)
    "StudyDescription": "C", "SeriesDescription": "C", "ProtocolName": "C", "DerivationDescription": "C",
    "AcquisitionComments": "C", "AcquisitionContextSequence": "X", "BodyPartExamined": "C",
    "ImageType": "K", "ContrastBolusAgent": "C",
    # orders, visits, workflow, people and places
    "AdmittingDate": "X", "AdmittingTime": "X", "IssuerOfAdmissionIDSequence": "X", "ReasonForVisit": "X",
    "VisitComments": "X", "ServiceEpisodeID": "X", "ServiceEpisodeDescription": "X",
    "DischargeDiagnosisDescription": "X", "PatientTransportArrangements": "X", "PreMedication": "X",
    "ScheduledPatientInstitutionResidence": "X", "PatientPrimaryLanguageCodeSequence": "X",
    "PatientPrimaryLanguageModifierCodeSequence": "X", "InsurancePlanIdentification": "X",
    "IdentifyingComments": "X", "StudyIDIssuer": "X", "ConsultingPhysicianName": "X",
    "PhysiciansOfRecordIdentificationSequence": "X", "PhysiciansReadingStudyIdentificationSequence": "X",
    "PerformingPhysicianIdentificationSequence": "X", "OrderCallbackPhoneNumber": "X", "OrderEnteredBy": "X",
    "OrderEntererLocation": "X", "RequestingService": "X", "ReferencedPatientSequence": "X",
    "ReferencedStudySequence": "X", "ScheduledHumanPerformersSequence": "X", "ActualHumanPerformersSequence": "X",
    "HumanPerformerName": "X", "HumanPerformerOrganization": "X", "ScheduledProcedureStepDescription": "X",
    "ScheduledProcedureStepStartDate": "X", "ScheduledProcedureStepEndDate": "X",
    "ScheduledProcedureStepLocation": "X", "ScheduledStationAETitle": "X", "ScheduledStationName": "X",
    "PerformedLocation": "X", "PerformedStationAETitle": "X", "PerformedStationName": "X",
    "PerformedStationNameCodeSequence": "X", "PerformedProcedureStepEndDate": "X",
    "PerformedProcedureStepEndTime": "X", "PersonName": "D", "PersonAddress": "X", "PersonTelephoneNumbers": "X",
    "ParticipantSequence": "X", "AuthorObserverSequence": "X", "CustodialOrganizationSequence": "X",
    "ContributionDescription": "X", "ModifyingDeviceID": "X", "ModifyingDeviceManufacturer": "X",
    "AcquisitionDeviceProcessingDescription": "X", "AcquisitionProtocolDescription": "X",
    "InstanceCreationDate": "X", "InstanceCreationTime": "X", "TimezoneOffsetFromUTC": "X",
    "FrameComments": "X", "IconImageSequence": "X", "GraphicAnnotationSequence": "X", "DataSetTrailingPadding": "X",
    # reports and results
    "ContentSequence": "X", "InterpretationAuthor": "X", "InterpretationRecorder": "X",
    "InterpretationTranscriber": "X", "InterpretationApproverSequence": "X", "ResultsDistributionListSequence": "X",
    "DistributionName": "X", "DistributionAddress": "X", "NamesOfIntendedRecipientsOfResults": "X",
    "IntendedRecipientsOfResultsIdentificationSequence": "X", "TopicTitle": "X", "TopicSubject": "X",
    "TopicAuthor": "X", "TopicKeywords": "X", "VerifyingObserverSequence": "D", "VerifyingObserverName": "D",
    "VerifyingObserverIdentificationCodeSequence": "Z", "VerifyingOrganization": "X",
    # UIDs (remapped consistently)
    "StudyInstanceUID": "U", "SeriesInstanceUID": "U", "SOPInstanceUID": "U", "FrameOfReferenceUID": "U",
    "MediaStorageSOPInstanceUID": "U", "ReferencedSOPInstanceUID": "U", "ReferencedFrameOfReferenceUID": "U",
    "DimensionOrganizationUID": "U", "IrradiationEventUID": "U", "SynchronizationFrameOfReferenceUID": "U",
    "StorageMediaFileSetUID": "U", "InstanceCreatorUID": "U",
}
#: Clean Descriptors option (113105): free-text descriptors kept, with known identifying values cut out.
DESCRIPTORS = tuple(k for k, a in BASIC_PROFILE.items() if a == "C")
#: Retain Patient Characteristics option (113108): kept as they are.
PATIENT_CHARACTERISTICS = ("PatientSex", "PatientAge", "PatientSize", "PatientWeight", "EthnicGroup",
                           "SmokingStatus", "PregnancyStatus", "PatientSexNeutered", "SpecialNeeds",
                           "AdditionalPatientHistory", "PatientState")
#: Temporal attributes the Retain Longitudinal Temporal option keeps (shifted or full).
_TEMPORAL_VRS = ("DA", "DT", "TM")
#: Dates no option retains (the age is a patient characteristic; the birth date is not).
_NEVER_RETAINED = ("PatientBirthDate", "PatientBirthTime", "LastMenstrualDate")
#: CID 7050 codes recorded in (0012,0064) De-identification Method Code Sequence.
OPTION_CODES = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "dates_full": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "dates_shifted": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "uids": ("113110", "Retain UIDs Option"),  # not offered: UIDs are always remapped here
}
#: Modalities / SOP classes whose pixels often carry burned-in text when (0028,0301) is absent.
BURN_RISK_MODALITIES = ("US", "SC", "XA", "XC", "ES", "OT", "DOC", "RF", "SM")
_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"


@dataclass
class DeidReport:
    """What :func:`deidentify` did.

    Attributes
    ----------
    out_dir : Path
        The de-identified copy.
    mapping : Path
        The mapping table (CSV), outside ``out_dir``.
    n_files : int
        Instances written.
    removed, emptied, replaced : dict
        Keyword -> number of instances where it was removed (X), emptied (Z) or
        given a dummy/remapped value (D/U, names, IDs, shifted dates).
    private_removed : int
        Private elements removed, summed over instances.
    burned_in : list of str
        Files flagged for possible burned-in annotation (pixels not cleaned).
    options : tuple of str
        The options applied (keys of :data:`OPTION_CODES`).
    """

    out_dir: Path
    mapping: Path
    n_files: int = 0
    removed: dict = field(default_factory=dict)
    emptied: dict = field(default_factory=dict)
    replaced: dict = field(default_factory=dict)
    private_removed: int = 0
    burned_in: list = field(default_factory=list)
    options: tuple = ()

    def summary(self) -> str:
        """A few lines for a notebook."""
        return (f"{self.n_files} files -> {self.out_dir.name}/; removed {len(self.removed)} attributes, "
                f"emptied {len(self.emptied)}, replaced {len(self.replaced)}, {self.private_removed} private "
                f"elements; options: {', '.join(self.options) or 'none'}; burned-in flagged: {len(self.burned_in)}")


def identifying_values(ds: Dataset, *, min_length: int = 3) -> set[str]:
    """Every value of ``ds`` (sequences included) the profile treats as identifying.

    The strings of attributes in :data:`BASIC_PROFILE` with action X, Z, D or U,
    of every PN element (and each of its ``^`` components) and every private element -- the list a leak audit greps
    the output for (descriptors, action C, are kept when cleaned).  Values shorter than ``min_length``
    characters (``"O"``, ``"1"``) are left out: they match everywhere.

    Returns
    -------
    set of str

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.PatientName = "DOE^JANE"; ds.PatientID = "MRN123"; ds.Modality = "CT"
    >>> sorted(identifying_values(ds))
    ['DOE', 'DOE^JANE', 'JANE', 'MRN123']
    """
    out: set[str] = set()

    def visit(d, elem):
        kw = elem.keyword
        if elem.VR == "SQ":
            return
        if BASIC_PROFILE.get(kw) in ("X", "Z", "D", "U") or elem.VR == "PN" or elem.tag.is_private:
            if elem.VR in ("OB", "OW", "UN") or elem.value is None:
                return
            vals = elem.value if isinstance(elem.value, (list, tuple)) or type(elem.value).__name__ == "MultiValue" \
                else [elem.value]
            for v in vals:
                s = str(v).strip()
                parts = [s] + (s.split("^") if elem.VR == "PN" else [])
                out.update(p.strip() for p in parts if len(p.strip()) >= min_length)

    ds.walk(visit)
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.walk(visit)
    return out


def _options(dates: str, clean_descriptors: bool, patient_characteristics: bool) -> tuple[str, ...]:
    if dates not in ("remove", "shift", "keep"):
        raise ValueError(f"dates={dates!r}: choose 'remove' (Basic Profile), 'shift' (Retain Longitudinal "
                         "Temporal, modified dates) or 'keep' (full dates)")
    opts = ["basic"]
    if dates == "shift":
        opts.append("dates_shifted")
    elif dates == "keep":
        opts.append("dates_full")
    if clean_descriptors:
        opts.append("clean_descriptors")
    if patient_characteristics:
        opts.append("patient_characteristics")
    return tuple(opts)


def _burn_risk(ds: Dataset) -> bool:
    flag = str(ds.get("BurnedInAnnotation", "")).upper()
    if flag == "YES":
        return True
    if flag == "NO":
        return False
    return (str(ds.get("Modality", "")) in BURN_RISK_MODALITIES
            or str(ds.get("SOPClassUID", "")).startswith(_SECONDARY_CAPTURE_PREFIX))


def _clean_text(text: str, secrets_: set[str]) -> str:
    import re

    for s in sorted(secrets_, key=len, reverse=True):
        text = re.sub(re.escape(s), "", text, flags=re.IGNORECASE)
    return " ".join(text.split())


def deidentify(source: str | os.PathLike | Iterable[str | os.PathLike], out_dir: str | os.PathLike, *,
               mapping: str | os.PathLike, dates: str = "shift", clean_descriptors: bool = True,
               patient_characteristics: bool = False, seed: str | None = None,
               on_burned_in: str = "warn") -> DeidReport:
    """Copy a DICOM series to a new folder, de-identified after PS3.15 Annex E.

    Parameters
    ----------
    source : folder, file or list of files
        The identified series (read only, never written).
    out_dir : str or Path
        New folder for the copy (must not exist; not inside ``source``).
    mapping : str or Path
        CSV file for the key (original -> new IDs and UIDs, date offset).  Must
        not be inside ``out_dir``: the key travels separately from the data.
    dates : {"shift", "remove", "keep"}
        ``"remove"``: the Basic Profile (dates emptied or removed);
        ``"shift"``: Retain Longitudinal Temporal Information with Modified
        Dates (one offset for the whole run: intervals stay true);
        ``"keep"``: the Full Dates option.
    clean_descriptors : bool
        Clean Descriptors option: keep Study/Series Description, Protocol Name,
        Body Part... with the known identifying values cut out (else removed).
    patient_characteristics : bool
        Retain Patient Characteristics option: keep sex, age, size, weight...
    seed : str, optional
        Seeds the UID/ID remapping and the date offset (default: random).  Anyone
        who knows it can recompute the mapping: treat it like the mapping table.
    on_burned_in : {"warn", "error"}
        What to do when an instance may carry burned-in text ((0028,0301)
        Burned In Annotation YES, or absent for secondary captures, US, XA...).

    Returns
    -------
    DeidReport

    Raises
    ------
    DicomSeriesError
        If ``source`` has no DICOM file, ``out_dir`` exists or is inside the
        source, the mapping would sit inside ``out_dir``, or burned-in
        annotation is found with ``on_burned_in="error"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from helpers.sample import make_sample
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     d = pathlib.Path(tmp)
    ...     src = make_sample(d / "s", size="small") / "dicom"
    ...     rep = deidentify(src, d / "deid", mapping=d / "key.csv", seed="doc")
    >>> rep.n_files, rep.removed["InstitutionName"], rep.replaced["PatientID"]
    (40, 40, 40)
    """
    from dicognito.anonymizer import Anonymizer
    from dicognito.value_keeper import ValueKeeper

    from .export import atomic_write

    opts = _options(dates, clean_descriptors, patient_characteristics)
    if on_burned_in not in ("warn", "error"):
        raise ValueError(f"on_burned_in={on_burned_in!r}: choose 'warn' or 'error'")
    out_dir, mapping = Path(out_dir), Path(mapping)
    dsets = _read_for_deid(source, out_dir, mapping)

    anon = Anonymizer(seed=seed if seed is not None else secrets.token_hex(16))
    keep = set()
    if dates == "keep":
        keep |= {e.keyword for _, d in dsets for e in d.iterall()
                 if e.VR in _TEMPORAL_VRS and e.keyword and e.keyword not in _NEVER_RETAINED}
    if patient_characteristics:
        keep |= set(PATIENT_CHARACTERISTICS)
    for kw in sorted(keep):
        anon.add_element_handler(ValueKeeper(kw))

    report = DeidReport(out_dir=out_dir, mapping=mapping, options=opts)
    tmp = out_dir.with_name(f".{out_dir.name}.partial-{secrets.token_hex(3)}")
    tmp.mkdir(parents=True)
    rows = []
    try:
        for n, (f, ds) in enumerate(dsets):
            _check_burned_in(f, ds, report, on_burned_in)
            secret = identifying_values(ds)
            before = {k: str(ds.get(k, "")) for k in ("PatientID", "PatientName", "AccessionNumber",
                                                       "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                                                       "StudyDate")}
            descr = {k: str(ds.get(k)) for k in DESCRIPTORS if k in ds and isinstance(ds[k].value, str)}
            # 1. private tags, overlays and curves: removed (Basic Profile; no Retain Safe Private option)
            _remove_private_overlays_curves(ds, report)
            # 2. dicognito: UIDs remapped, names/IDs/addresses dummies, dates shifted
            kws_before = {e.keyword for e in ds.iterall()}
            anon.anonymize(ds)
            # 3. the profile's table, on top, recursively (sequences included)
            _apply_profile(ds, dates=dates, clean_descriptors=clean_descriptors,
                           keep=keep, report=report, bump=_bump, descr=descr, secret=secret)
            _count_replaced(ds, kws_before, report)
            # 4. the record of what was done
            _record_method(ds, opts, dates)
            out = tmp / f"IM{n:05d}.dcm"
            ds.save_as(out, enforce_file_format=True)
            after = {k: str(ds.get(k, "")) for k in before}
            rows.append({**{f"original_{k}": v for k, v in before.items()},
                         **{f"new_{k}": v for k, v in after.items()}})
            report.n_files += 1
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        atomic_write(mapping, lambda t: Path(t).write_text(buf.getvalue()))
        os.replace(tmp, out_dir)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _bump(d: dict, kw: str) -> None:
    d[kw] = d.get(kw, 0) + 1


def _read_for_deid(source: str | os.PathLike | Iterable[str | os.PathLike], out_dir: Path,
                   mapping: Path) -> list:
    """``(path, dataset)`` of every DICOM file of ``source``, once the output and the mapping are safe places."""
    import pydicom

    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        files = sorted(p for p in Path(source).rglob("*") if p.is_file())
        src_root = Path(source).resolve()
    else:
        files = [Path(source)] if isinstance(source, (str, os.PathLike)) else [Path(p) for p in source]
        src_root = None
    if out_dir.exists():
        raise DicomSeriesError(f"de-identify into {out_dir}: the folder exists; choose a new one (a copy never "
                               "mixes with older files)")
    if src_root is not None and (out_dir.resolve() == src_root or src_root in out_dir.resolve().parents):
        raise DicomSeriesError(f"de-identify into {out_dir}: it is inside the source {src_root}; the source is "
                               "never written, choose a folder elsewhere")
    if out_dir.resolve() in mapping.resolve().parents:
        raise DicomSeriesError(f"mapping table {mapping} is inside the output {out_dir}: the key must be kept "
                               "apart from the de-identified data; write it elsewhere")
    dsets = []
    for f in files:
        try:
            dsets.append((f, pydicom.dcmread(f)))
        except Exception:  # a README, labels.json: not DICOM, not copied
            continue
    if not dsets:
        raise DicomSeriesError(f"de-identify {source}: no DICOM file found; point it at a series folder")
    return dsets


def _check_burned_in(f: Path, ds: Dataset, report: DeidReport, on_burned_in: str) -> None:
    """Flag (warn, or refuse) a file whose pixels may carry burned-in text: they are not cleaned here."""
    if not _burn_risk(ds):
        return
    report.burned_in.append(str(f))
    msg = (f"{f}: (0028,0301) Burned In Annotation is {ds.get('BurnedInAnnotation', 'absent')} for "
           f"modality {ds.get('Modality', '?')}: the pixels may show the patient's name; they are NOT "
           "cleaned here. Check the images by eye or exclude them")
    if on_burned_in == "error":
        raise DicomSeriesError(msg)
    warnings.warn(msg, SeriesWarning, stacklevel=3)


def _remove_private_overlays_curves(ds: Dataset, report: DeidReport) -> None:
    """Private tags, curves (50xx) and overlays (60xx): X in the Basic Profile."""
    n_priv = sum(1 for _ in _iter_private(ds))
    ds.remove_private_tags()
    report.private_removed += n_priv
    for elem in list(ds):
        if 0x5000 <= elem.tag.group <= 0x50FF or 0x6000 <= elem.tag.group <= 0x60FF:
            del ds[elem.tag]
            _bump(report.removed, f"({elem.tag.group:04X},{elem.tag.element:04X})")


def _count_replaced(ds: Dataset, kws_before: set, report: DeidReport) -> None:
    for kw in ("PatientName", "PatientID", "AccessionNumber", "StudyID"):
        if kw in ds and ds[kw].value and kw in kws_before:
            _bump(report.replaced, kw)
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        if kw in ds:
            _bump(report.replaced, kw)


def _record_method(ds: Dataset, opts: Iterable[str], dates: str) -> None:
    """(0012,0062) Patient Identity Removed, the method, its option codes, the temporal information."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "PS3.15 E.1 Basic Profile (helpers.deid + dicognito)"[:64]
    seq = []
    for o in opts:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = OPTION_CODES[o][0], "DCM", \
            OPTION_CODES[o][1]
        seq.append(code)
    ds.DeidentificationMethodCodeSequence = DicomSequence(seq)
    ds.LongitudinalTemporalInformationModified = {"remove": "REMOVED", "shift": "MODIFIED",
                                                  "keep": "UNMODIFIED"}[dates]


def _iter_private(ds):
    for elem in ds.iterall():
        if elem.tag.is_private:
            yield elem


def _apply_profile(ds, *, dates, clean_descriptors, keep, report, bump, descr, secret):
    """Apply :data:`BASIC_PROFILE` to ``ds`` and every nested item."""
    for elem in list(ds):
        kw = elem.keyword
        if elem.VR == "SQ":
            if BASIC_PROFILE.get(kw) == "X" and kw not in keep:
                del ds[elem.tag]
                bump(report.removed, kw)
                continue
            for item in elem.value:
                _apply_profile(item, dates=dates, clean_descriptors=clean_descriptors, keep=keep, report=report,
                               bump=bump, descr={}, secret=secret)
            continue
        if kw in keep:
            continue
        if elem.VR in _TEMPORAL_VRS and kw not in _NEVER_RETAINED:
            _apply_temporal(ds, elem, dates=dates, report=report, bump=bump)
        else:
            _apply_action(ds, elem, clean_descriptors=clean_descriptors, report=report, bump=bump, descr=descr,
                          secret=secret)


def _apply_temporal(ds: Dataset, elem: DataElement, *, dates: str, report: DeidReport,
                    bump: Callable[[dict, str], None]) -> None:
    """A date or time: emptied or removed (dates="remove"), else counted as shifted or kept by dicognito."""
    kw = elem.keyword
    if dates == "remove":
        if BASIC_PROFILE.get(kw) == "Z":
            elem.value = ""
            bump(report.emptied, kw)
        else:
            del ds[elem.tag]
            bump(report.removed, kw)
    else:  # shifted by dicognito (Modified Dates option) or kept (Full Dates)
        bump(report.replaced, kw)


def _apply_action(ds: Dataset, elem: DataElement, *, clean_descriptors: bool, report: DeidReport,
                  bump: Callable[[dict, str], None], descr: dict[str, str], secret: set[str]) -> None:
    """The Basic Profile's action for one element that is neither a sequence nor a date: C, X, Z, D."""
    kw = elem.keyword
    action = BASIC_PROFILE.get(kw)
    if action == "C":
        if clean_descriptors and kw in descr:
            elem.value = _clean_text(descr[kw], secret)
            bump(report.replaced, kw)
        else:
            del ds[elem.tag]
            bump(report.removed, kw)
    elif action == "X":
        del ds[elem.tag]
        bump(report.removed, kw)
    elif action == "Z" and kw not in ("PatientName", "PatientID", "AccessionNumber", "StudyID") \
            and elem.VR != "PN":
        elem.value = ""
        bump(report.emptied, kw)
    elif action == "D" and elem.VR not in ("PN", "SQ") and elem.value:
        elem.value = ""  # no meaningful dummy for free text: emptied
        bump(report.emptied, kw)
    elif elem.VR == "PN" and kw not in ("PatientName",) and elem.value:
        elem.value = ""  # dicognito made up a name; the profile empties other persons' names
        bump(report.emptied, kw)
