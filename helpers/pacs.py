"""A real PACS on this machine, and the two ways to talk to one: DICOMweb and DIMSE.

* :func:`orthanc_server` -- a context manager that starts Orthanc on 127.0.0.1
  (free ports picked at run time, a throw-away storage folder, a configuration
  written here with a per-run HTTP user/password, a fixed AE title and the
  remote modalities listed explicitly) and stops it by PID.
* DIMSE (``pynetdicom``): :func:`c_echo`, :func:`c_store`, :func:`c_find`,
  :func:`c_get_series`.
* DICOMweb (``dicomweb-client``): :func:`qido`, :func:`wado_series`,
  :func:`stow`.

Every failure -- server unreachable, wrong credentials, unknown AE title, a
query that matches nothing, a retrieve cut off half way, a malformed answer --
raises :class:`~helpers.errors.DicomSeriesError` naming the server, the request
and what to check.  A retrieve writes into a hidden temporary folder next to
the destination and renames it only when every instance has arrived, so a
partial retrieve never looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .errors import DicomSeriesError

if TYPE_CHECKING:
    import pydicom

__all__ = [
    "Orthanc", "OrthancNotInstalled", "find_orthanc", "orthanc_server",
    "LOCAL_AET", "PACS_AET", "LEVELS", "QUERY_KEYS",
    "c_echo", "c_store", "c_find", "c_get_series",
    "dicomweb_client", "qido", "wado_series", "stow", "table", "skip_cells_without_orthanc", "first_header",
]

#: AE title of the PACS this project starts (fixed, as a hospital's is).
PACS_AET = "ORTHANC"
#: AE title this project's DIMSE client uses; the PACS knows it (``DicomModalities``).
LOCAL_AET = "BOOKSCU"
#: Port of this computer's storage SCP, as registered at the PACS (a C-MOVE destination).
LOCAL_PORT = 11112
#: Orthanc's start-up line, waited for instead of sleeping.
STARTED_LINE = "Orthanc has started"
#: Where Debian puts Orthanc and its DICOMweb plugin.
ORTHANC_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins")
#: Query/retrieve levels, top to bottom, and the keys a resident types at each.
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
QUERY_KEYS = {
    "PATIENT": ("PatientID", "PatientName"),
    "STUDY": ("PatientID", "AccessionNumber", "StudyDate", "StudyDescription", "ModalitiesInStudy",
              "StudyInstanceUID"),
    "SERIES": ("Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID"),
    "IMAGE": ("InstanceNumber", "SOPInstanceUID"),
}
#: Attributes asked back at each level (return keys).
_RETURN_KEYS = {
    "PATIENT": ("PatientID", "PatientName", "NumberOfPatientRelatedStudies"),
    "STUDY": ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "AccessionNumber",
              "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances"),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "NumberOfSeriesRelatedInstances"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}


class OrthancNotInstalled(RuntimeError):
    """Orthanc (Debian package ``orthanc`` + ``orthanc-dicomweb``) is not on this machine."""


@dataclass(frozen=True)
class Orthanc:
    """Where a running PACS answers, and how to log in.

    Attributes
    ----------
    host : str
        Always ``127.0.0.1`` here.
    http_port, dicom_port : int
        DICOMweb/REST port and DIMSE port.
    aet : str
        The PACS's AE title (the "called AE").
    user, password : str
        HTTP credentials (generated for each run).
    storage : Path
        The throw-away storage folder.
    pid : int
        Process id (0 for a server this project did not start).
    modalities : dict
        The remote AE titles the PACS accepts: name -> (AET, host, port).
    """

    host: str
    http_port: int
    dicom_port: int
    aet: str
    user: str
    password: str = field(repr=False)
    storage: Path = Path(".")
    pid: int = 0
    modalities: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        """REST root, e.g. ``http://127.0.0.1:8042``."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.url}/dicom-web"

    @property
    def dimse(self) -> str:
        """``AET@host:port``, how a PACS admin writes a DIMSE address."""
        return f"{self.aet}@{self.host}:{self.dicom_port}"


# ============================================================================ the server
def find_orthanc() -> tuple[Path, Path] | None:
    """The Orthanc binary and its DICOMweb plugin, or ``None`` when either is missing.

    Returns
    -------
    (Path, Path) or None
        ``(binary, libOrthancDicomWeb.so)``.

    Examples
    --------
    >>> found = find_orthanc()
    >>> found is None or found[0].name == "Orthanc"
    True
    """
    binary = next((Path(p) for p in ORTHANC_CANDIDATES if Path(p).is_file()), None)
    found = shutil.which("Orthanc")
    if binary is None and found:
        binary = Path(found)
    plugin = next((Path(d) / "libOrthancDicomWeb.so" for d in PLUGIN_DIRS
                   if (Path(d) / "libOrthancDicomWeb.so").is_file()), None)
    if binary is None or plugin is None:
        return None
    return binary, plugin


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: SIGTERM to Orthanc when the Python that started it dies (a killed kernel)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _config(storage: Path, plugin: Path, *, http_port: int, dicom_port: int, aet: str, user: str,
            password: str, modalities: dict) -> dict:
    return {
        "Name": "dicom-book-pacs",
        "StorageDirectory": str(storage / "db"),
        "IndexDirectory": str(storage / "db"),
        "StorageCompression": False,
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "DicomCheckCalledAet": True,          # a wrong "called AE" is refused, as in a hospital
        "RemoteAccessAllowed": False,         # HTTP from 127.0.0.1 only
        "AuthenticationEnabled": True,
        "RegisteredUsers": {user: password},  # generated per run: no default credentials left open
        # Orthanc 1.10 listens on every interface and has no bind address: the DICOM port only
        # serves the AE titles listed below, and only from the host they are listed with.
        "DicomCheckModalityHost": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomModalities": {
            name: {"AET": a, "Host": h, "Port": p, "AllowEcho": True, "AllowFind": True, "AllowGet": True,
                   "AllowMove": True, "AllowStore": True}
            for name, (a, h, p) in modalities.items()
        },
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "StudiesMetadata": "Full"},
        "HttpDescribeErrors": True,
        "SaveJobs": False,
        "ConcurrentJobs": 1,
        "LimitFindResults": 0,
    }


@contextlib.contextmanager
def orthanc_server(*, workdir: str | os.PathLike | None = None, aet: str = PACS_AET, local_aet: str = LOCAL_AET,
                   local_port: int = LOCAL_PORT, startup_timeout_s: float = 60.0,
                   stop_timeout_s: float = 10.0) -> Iterator[Orthanc]:
    """Start a throw-away Orthanc on 127.0.0.1; stop it (by PID) and delete its storage on exit.

    Parameters
    ----------
    workdir : str or Path, optional
        Folder for the configuration, the log and the storage (created, removed
        on exit); default a new folder in the system's temporary directory.
    aet : str
        The PACS's AE title.
    local_aet : str
        The AE title of this computer; it is the one remote modality the PACS
        accepts for C-FIND/C-GET/C-STORE (any other title is refused).
    local_port : int
        The port this computer would listen on as a C-MOVE destination (C-GET
        and C-FIND do not use it; the PACS needs one to register the AE title).
    startup_timeout_s, stop_timeout_s : float
        Seconds to wait for the ``"Orthanc has started"`` log line, and for the
        process to end after SIGTERM (then SIGKILL).

    Yields
    ------
    Orthanc
        Ports, AE title, the generated user/password, the PID.

    Raises
    ------
    OrthancNotInstalled
        If the ``orthanc`` / ``orthanc-dicomweb`` packages are missing.
    DicomSeriesError
        If Orthanc exits or stays silent during start-up (the message quotes its log).

    Examples
    --------
    >>> import tempfile
    >>> if find_orthanc():
    ...     with tempfile.TemporaryDirectory() as d, orthanc_server(workdir=f"{d}/pacs") as pacs:
    ...         ok = c_echo(pacs)
    ... else:
    ...     ok = True
    >>> ok
    True
    """
    found = find_orthanc()
    if found is None:
        raise OrthancNotInstalled(
            "Orthanc is not installed: install the Debian packages `orthanc` and `orthanc-dicomweb` "
            "(./tasks.sh setup does it) to run the PACS chapter")
    binary, plugin = found
    own_tmp = workdir is None
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="orthanc-"))
    root.mkdir(parents=True, exist_ok=True)
    host = "127.0.0.1"
    http_port, dicom_port = _free_port(host), _free_port(host)
    while dicom_port == http_port:
        dicom_port = _free_port(host)
    user, password = "book-" + secrets.token_hex(4), secrets.token_urlsafe(18)
    modalities = {"book": (local_aet, host, local_port)}
    cfg = root / "orthanc.json"
    cfg.write_text(json.dumps(_config(root, plugin, http_port=http_port, dicom_port=dicom_port, aet=aet,
                                      user=user, password=password, modalities=modalities), indent=1))
    os.chmod(cfg, 0o600)  # the password is in it
    log_path = root / "orthanc.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(binary), str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=root, preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            text = log_path.read_text(errors="replace")
            if STARTED_LINE in text:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(text.splitlines()[-15:])
                why = (f"exited with code {proc.returncode}" if proc.poll() is not None
                       else f"did not log {STARTED_LINE!r} within {startup_timeout_s:g} s")
                raise DicomSeriesError(f"Orthanc ({binary}, config {cfg}) {why}; its log ends:\n{tail}")
            time.sleep(0.05)
        yield Orthanc(host, http_port, dicom_port, aet, user, password, root, proc.pid, modalities)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if own_tmp:
            shutil.rmtree(root, ignore_errors=True)
        else:
            shutil.rmtree(root / "db", ignore_errors=True)
            cfg.unlink(missing_ok=True)


# ============================================================================ DIMSE
def _ae(local_aet: str, *, timeout_s: float) -> Any:
    from pynetdicom import AE

    ae = AE(ae_title=local_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    return ae


def _associate(ae: Any, pacs: Orthanc, request: str, local_aet: str, **kw: Any) -> Any:
    """Open an association or raise a message that says what to check."""
    try:
        assoc = ae.associate(pacs.host, pacs.dicom_port, ae_title=pacs.aet, **kw)
    except OSError as exc:  # pragma: no cover - pynetdicom logs rather than raises
        assoc = None
        detail = str(exc)
    else:
        detail = ""
    if assoc is not None and assoc.is_established:
        return assoc
    if assoc is not None and assoc.is_rejected:
        raise DicomSeriesError(
            f"{request}: the PACS {pacs.dimse} rejected the association from calling AE {local_aet!r}; "
            f"check that the PACS admin registered your AE title {local_aet!r} (with your IP and port) "
            f"and that the called AE title is {pacs.aet!r}")
    raise DicomSeriesError(
        f"{request}: no DICOM association with {pacs.dimse} (calling AE {local_aet!r}) {detail}; the PACS is "
        "unreachable or aborted: check the host, the DICOM port, the firewall and that the server is running")


def _no_answer(request: str, pacs: Orthanc, local_aet: str) -> str:
    return (f"{request}: {pacs.dimse} closed the association without an answer; a PACS does this when it does "
            f"not know the calling AE title {local_aet!r} or does not allow it this service: ask the PACS admin to "
            "register your AE title, IP and port, then check the network and the PACS's timeouts")


def c_echo(pacs: Orthanc, *, local_aet: str = LOCAL_AET, timeout_s: float = 10.0) -> bool:
    """C-ECHO ("DICOM ping"): True when the PACS answers with status Success.

    Raises
    ------
    DicomSeriesError
        Unreachable server or refused association.
    """
    from pynetdicom.sop_class import Verification

    ae = _ae(local_aet, timeout_s=timeout_s)
    ae.add_requested_context(Verification)
    assoc = _associate(ae, pacs, "C-ECHO", local_aet)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    return bool(status) and status.Status == 0x0000


def _dicom_files(source: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return sorted(p for p in Path(source).rglob("*") if p.is_file() and not p.name.startswith("."))
    if isinstance(source, (str, os.PathLike)):
        return [Path(source)]
    return [Path(p) for p in source]


def c_store(source: str | os.PathLike | Iterable[str | os.PathLike], pacs: Orthanc, *, local_aet: str = LOCAL_AET,
            timeout_s: float = 30.0) -> int:
    """Send DICOM files to the PACS with C-STORE (what a modality or a workstation does).

    Parameters
    ----------
    source : folder, file or list of files
        Read only; files that are not DICOM are skipped.
    pacs : Orthanc
    local_aet : str
        Calling AE title (must be registered at the PACS).

    Returns
    -------
    int
        Number of instances stored.

    Raises
    ------
    DicomSeriesError
        Unreachable server, refused association, or an instance the PACS refused
        (the message names the file and the status).
    """
    import pydicom
    from pynetdicom import StoragePresentationContexts

    ae = _ae(local_aet, timeout_s=timeout_s)
    dsets = []
    for f in _dicom_files(source):
        try:
            dsets.append((f, pydicom.dcmread(f)))
        except Exception:  # not DICOM (a README, labels.json): nothing to send
            continue
    if not dsets:
        raise DicomSeriesError(f"C-STORE to {pacs.dimse}: no DICOM files in {source}; point it at a series folder")
    classes = sorted({str(ds.SOPClassUID) for _, ds in dsets})
    contexts = [c.abstract_syntax for c in StoragePresentationContexts]
    for uid in classes:
        if uid not in contexts:
            contexts.append(uid)
    for uid in contexts[:128]:
        ae.add_requested_context(uid)
    assoc = _associate(ae, pacs, f"C-STORE of {len(dsets)} files", local_aet)
    n = 0
    try:
        for f, ds in dsets:
            status = assoc.send_c_store(ds)
            if not status or status.Status not in (0x0000, 0xB000, 0xB007, 0xB006):
                code = f"0x{status.Status:04X}" if status else "no answer"
                raise DicomSeriesError(
                    f"C-STORE of {f} to {pacs.dimse} failed (status {code}); check the PACS log and that "
                    f"it accepts (0008,0016) SOP Class UID {ds.SOPClassUID}")
            n += 1
    finally:
        assoc.release()
    return n


def _shown(keys: dict) -> str:
    """Query keys for a message; identifying values hidden (messages end up in logs)."""
    return ", ".join(f"{k}=(hidden)" if k in HIDDEN_COLUMNS else f"{k}={v!r}" for k, v in keys.items()) or "no keys"


def first_header(source: str | os.PathLike | Iterable[str | os.PathLike]) -> pydicom.Dataset:
    """The header (no pixels) of the first DICOM file of a folder, searched recursively.

    Raises
    ------
    DicomSeriesError
        If no file of ``source`` is DICOM.
    """
    import pydicom

    for f in _dicom_files(source):
        try:
            return pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # a README, a licence, labels.json
            continue
    raise DicomSeriesError(f"no DICOM file in {source}; point it at a series folder")


def _flat(ds: Any, keys: Iterable[str]) -> dict:
    return {k: (str(ds.get(k, "")) if ds.get(k) is not None else "") for k in keys}


def c_find(pacs: Orthanc, level: str = "STUDY", *, allow_empty: bool = False, local_aet: str = LOCAL_AET,
           timeout_s: float = 30.0, **keys: Any) -> list[dict]:
    """DIMSE C-FIND (Study Root): the query a PACS workstation sends.

    Parameters
    ----------
    pacs : Orthanc
    level : {"PATIENT", "STUDY", "SERIES", "IMAGE"}
        Query level (``PATIENT`` uses the Patient Root model).
    allow_empty : bool
        Return ``[]`` instead of raising when nothing matches.
    **keys
        Matching keys by DICOM keyword, e.g. ``PatientID="SYN0001"``,
        ``StudyDate="20170101-20171231"`` (a range), ``SeriesDescription="*B40f*"``
        (wildcards), ``Modality="CT"``.  Empty values are return keys.

    Returns
    -------
    list of dict
        One dict per match (keyword -> string).

    Raises
    ------
    DicomSeriesError
        Unknown level or keyword, unreachable server, refused AE title, a failed
        query, or nothing matched (unless ``allow_empty``).
    """
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind as PatientFind
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as StudyFind

    level = level.upper()
    if level not in LEVELS:
        raise DicomSeriesError(f"C-FIND level {level!r} is not one of {LEVELS}")
    bad = [k for k in keys if tag_for_keyword(k) is None]
    if bad:
        raise DicomSeriesError(f"C-FIND keys {bad} are not DICOM keywords; use e.g. PatientID, AccessionNumber, "
                               "StudyDate, Modality, SeriesDescription")
    query = Dataset()
    query.QueryRetrieveLevel = level
    wanted = list(dict.fromkeys([*_RETURN_KEYS[level], *keys]))
    for k in wanted:
        setattr(query, k, keys.get(k, ""))
    model = PatientFind if level == "PATIENT" else StudyFind
    ae = _ae(local_aet, timeout_s=timeout_s)
    ae.add_requested_context(model)
    shown = _shown(keys)
    request = f"C-FIND at {level} level ({shown})"
    assoc = _associate(ae, pacs, request, local_aet)
    out = []
    try:
        for status, ident in assoc.send_c_find(query, model):
            if not status:
                raise DicomSeriesError(_no_answer(request, pacs, local_aet))
            if status.Status in (0xFF00, 0xFF01) and ident is not None:
                out.append(_flat(ident, wanted))
            elif status.Status != 0x0000:
                raise DicomSeriesError(f"{request}: {pacs.dimse} answered status 0x{status.Status:04X}; check "
                                       "that your AE title may query (C-FIND) and the keys are valid at this level")
    finally:
        assoc.release()
    if not out and not allow_empty:
        raise DicomSeriesError(
            f"{request}: nothing matched on {pacs.dimse}; check the spelling, use * wildcards, "
            "dates as YYYYMMDD or a range YYYYMMDD-YYYYMMDD, and the level")
    return out


def _finish(tmp: Path, out_dir: Path, expected: int, request: str, pacs_name: str) -> Path:
    """Rename the temporary folder onto ``out_dir`` only when every instance is there."""
    got = sum(1 for p in tmp.iterdir() if p.suffix == ".dcm")
    if got != expected:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DicomSeriesError(
            f"{request}: {got} of {expected} instances arrived from {pacs_name}; the partial copy was "
            "deleted. Check the network and the PACS log, then retrieve again")
    if out_dir.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        raise DicomSeriesError(f"{request}: {out_dir} already exists; choose a new folder (a retrieve never "
                               "mixes with older files)")
    os.replace(tmp, out_dir)
    return out_dir


def _new_tmp(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise DicomSeriesError(f"retrieve into {out_dir}: the folder already exists; choose a new folder "
                               "(a retrieve never mixes with older files)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))


def _write_instance(ds: Any, folder: Path) -> Path:
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def c_get_series(pacs: Orthanc, study_uid: str, series_uid: str, out_dir: str | os.PathLike, *,
                 local_aet: str = LOCAL_AET, timeout_s: float = 60.0) -> Path:
    """Retrieve one series with DIMSE C-GET into a new folder.

    The PACS sends the instances back over the same association (C-STORE
    sub-operations), so no port has to be opened on this computer -- unlike
    C-MOVE, where the PACS connects to an SCP it knows by AE title, host and port.

    Parameters
    ----------
    pacs : Orthanc
    study_uid, series_uid : str
        (0020,000D) Study Instance UID and (0020,000E) Series Instance UID.
    out_dir : str or Path
        New folder (must not exist); one ``<SOP Instance UID>.dcm`` per instance.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    DicomSeriesError
        Unreachable server, refused AE title, no such series, or fewer instances
        arrived than the PACS announced (nothing is left in ``out_dir``).
    """
    from pydicom.dataset import Dataset
    from pynetdicom import StoragePresentationContexts, build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as StudyGet

    out_dir = Path(out_dir)
    request = f"C-GET of series {series_uid}"
    expected = c_find(pacs, "SERIES", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid,
                      local_aet=local_aet, allow_empty=True)
    if not expected:
        raise DicomSeriesError(f"{request}: {pacs.dimse} has no such series in study {study_uid}; "
                               "query it first (c_find(..., 'SERIES')) and copy its UIDs")
    n_expected = int(expected[0].get("NumberOfSeriesRelatedInstances") or 0)
    tmp = _new_tmp(out_dir)
    failed: list[str] = []

    def on_store(event):
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            _write_instance(ds, tmp)
        except Exception as exc:  # reported as a failed sub-operation, then as one clear error
            failed.append(str(exc))
            return 0xA700
        return 0x0000

    ae = _ae(local_aet, timeout_s=timeout_s)
    ae.add_requested_context(StudyGet)
    roles = []
    for cx in StoragePresentationContexts[:120]:
        ae.add_requested_context(cx.abstract_syntax)
        roles.append(build_role(cx.abstract_syntax, scp_role=True))
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = series_uid
    try:
        assoc = _associate(ae, pacs, request, local_aet, ext_neg=roles,
                           evt_handlers=[(evt.EVT_C_STORE, on_store)])
        last = None
        try:
            for status, _ident in assoc.send_c_get(query, StudyGet):
                if status:
                    last = status
        finally:
            assoc.release()
        if last is None:
            raise DicomSeriesError(_no_answer(request, pacs, local_aet) + "; the partial copy was deleted")
        if last.Status not in (0x0000, 0xB000) or failed:
            n_failed = int(last.get("NumberOfFailedSubOperations", len(failed)) or len(failed))
            raise DicomSeriesError(
                f"{request}: {pacs.dimse} finished with status 0x{last.Status:04X}, {n_failed} instances failed"
                + (f" (first: {failed[0]})" if failed else "")
                + "; the partial copy was deleted. Check the disk space here and the PACS log, then retry")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _finish(tmp, out_dir, n_expected, request, pacs.dimse)


# ============================================================================ DICOMweb
def _literal_wildcard_session():
    """A ``requests.Session`` that sends ``*``, ``?`` and ``^`` in QIDO-RS query values literally.

    dicomweb-client percent-encodes them (``PatientName=DOE%5EJ%2A``), which the
    standard allows, but Orthanc's DICOMweb plugin 1.7 then matches nothing: a
    real interoperability quirk, measured here.
    """
    import requests

    class Session(requests.Session):
        def request(self, method, url, *args, **kwargs):
            if "?" in url:
                base, query = url.split("?", 1)
                for enc, lit in (("%2A", "*"), ("%3F", "?"), ("%5E", "^")):
                    query = query.replace(enc, lit)
                url = f"{base}?{query}"
            return super().request(method, url, *args, **kwargs)

    return Session()


def dicomweb_client(pacs: Orthanc, *, user: str | None = None, password: str | None = None,
                    attempts: int = 2, backoff_ms: int = 200) -> Any:
    """A ``dicomweb_client.DICOMwebClient`` logged in to the PACS (HTTP basic auth).

    ``attempts`` tries per request, waiting ``backoff_ms`` (doubling) in between:
    dicomweb-client's default (5 tries, 1 s doubling) makes a wrong URL take 30 s
    to report.

    A hospital's DICOMweb gateway usually wants a bearer token instead: build
    the client with ``headers={"Authorization": "Bearer ..."}``.
    """
    from dicomweb_client.api import DICOMwebClient

    session = _literal_wildcard_session()
    session.auth = (user if user is not None else pacs.user, password if password is not None else pacs.password)
    client = DICOMwebClient(url=pacs.dicomweb_url, session=session)
    client.set_http_retry_params(retry=True, max_attempts=attempts, wait_exponential_multiplier=backoff_ms)
    return client


@contextlib.contextmanager
def _web_errors(pacs: Orthanc, request: str) -> Iterator[None]:
    import requests

    try:
        yield
    except requests.exceptions.HTTPError as exc:
        code: int | str = exc.response.status_code if exc.response is not None else "?"
        what: dict[int | str, str] = {
            401: "the user name/password (or token) was refused: check the credentials the PACS admin gave you",
            403: "this account may not do that: ask the PACS admin for the right",
            404: "the server has no such resource: check the UIDs and the DICOMweb root (/dicom-web)"}
        raise DicomSeriesError(f"{request} to {pacs.dicomweb_url}: HTTP {code}; "
                               f"{what.get(code, 'check the server log and the request')}") from None
    except requests.exceptions.ConnectionError:
        raise DicomSeriesError(f"{request} to {pacs.dicomweb_url}: no answer (connection refused); check that the "
                               "server is running, the host and port, the firewall and any proxy") from None
    except requests.exceptions.Timeout:
        raise DicomSeriesError(f"{request} to {pacs.dicomweb_url}: timed out; check the network and retry "
                               "with fewer results (add keys)") from None
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        if isinstance(exc, DicomSeriesError):
            raise
        raise DicomSeriesError(f"{request} to {pacs.dicomweb_url}: the answer is not valid DICOMweb "
                               f"({type(exc).__name__}: {str(exc)[:120]}); check that the URL points at the "
                               "DICOMweb root of a PACS and not at a login page or a proxy") from None


def qido(pacs: Orthanc, level: str = "STUDY", *, study_uid: str | None = None, allow_empty: bool = False,
         client: Any = None, **keys: Any) -> list[dict]:
    """QIDO-RS search (``GET /studies``, ``/series``, ``/instances``), flattened to keyword dicts.

    Parameters
    ----------
    pacs : Orthanc
    level : {"STUDY", "SERIES", "IMAGE"}
    study_uid : str, optional
        Search within one study.
    allow_empty : bool
        Return ``[]`` instead of raising when nothing matches.
    client : DICOMwebClient, optional
        Default :func:`dicomweb_client` with the run's credentials.
    **keys
        Matching keys by keyword, as for :func:`c_find` (``PatientID``, ``StudyDate``
        ranges, ``*`` wildcards, ``Modality``...).

    Returns
    -------
    list of dict

    Raises
    ------
    DicomSeriesError
        Unreachable server, wrong credentials, malformed answer, nothing matched.
    """
    from pydicom.dataset import Dataset

    level = level.upper()
    if level not in ("STUDY", "SERIES", "IMAGE"):
        raise DicomSeriesError(f"QIDO-RS level {level!r}: use STUDY, SERIES or IMAGE (patients are found "
                               "through studies, by PatientID)")
    client = client or dicomweb_client(pacs)
    fields = list(dict.fromkeys([*_RETURN_KEYS[level]]))
    shown = _shown(keys)
    path = {"STUDY": "/studies", "SERIES": "/series", "IMAGE": "/instances"}[level]
    if study_uid:
        path = f"/studies/{study_uid}{path}"
    request = f"QIDO-RS GET {path}?{shown}"
    with _web_errors(pacs, request):
        search = {"STUDY": client.search_for_studies, "SERIES": client.search_for_series,
                  "IMAGE": client.search_for_instances}[level]
        kw = {"study_instance_uid": study_uid} if study_uid and level != "STUDY" else {}
        found = search(search_filters=dict(keys), fields=fields, **kw)
        if not isinstance(found, list):
            raise ValueError(f"expected a JSON list, got {type(found).__name__}")
        out = [_flat(Dataset.from_json(item), fields) for item in found]
    if not out and not allow_empty:
        raise DicomSeriesError(f"{request} on {pacs.dicomweb_url}: nothing matched; check the spelling, use * "
                               "wildcards, dates as YYYYMMDD or YYYYMMDD-YYYYMMDD")
    return out


def wado_series(pacs: Orthanc, study_uid: str, series_uid: str, out_dir: str | os.PathLike, *,
                client: Any = None) -> Path:
    """Retrieve one series with WADO-RS into a new folder (one file per instance).

    Parameters
    ----------
    pacs : Orthanc
    study_uid, series_uid : str
    out_dir : str or Path
        New folder (must not exist).
    client : DICOMwebClient, optional

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    DicomSeriesError
        Unreachable server, wrong credentials, no such series, a malformed
        multipart answer, or fewer instances than QIDO-RS announced (nothing is
        left in ``out_dir``).
    """
    out_dir = Path(out_dir)
    client = client or dicomweb_client(pacs)
    request = f"WADO-RS GET /studies/{study_uid}/series/{series_uid}"
    listed = qido(pacs, "IMAGE", study_uid=study_uid, client=client, allow_empty=True,
                  SeriesInstanceUID=series_uid)
    if not listed:
        raise DicomSeriesError(f"{request} on {pacs.dicomweb_url}: no such series (QIDO-RS lists no instance); "
                               "query the study's series first and copy the UIDs")
    tmp = _new_tmp(out_dir)
    try:
        with _web_errors(pacs, request):
            for ds in client.iter_series(study_uid, series_uid):
                _write_instance(ds, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _finish(tmp, out_dir, len(listed), request, pacs.dicomweb_url)


def stow(source: str | os.PathLike | Iterable[str | os.PathLike], pacs: Orthanc, *, client: Any = None) -> list[str]:
    """Send DICOM files to the PACS with STOW-RS (``POST /studies``).

    Parameters
    ----------
    source : file, folder or list of files / datasets
    pacs : Orthanc
    client : DICOMwebClient, optional

    Returns
    -------
    list of str
        SOP Instance UIDs stored.

    Raises
    ------
    DicomSeriesError
        Unreachable server, wrong credentials, or an instance the PACS refused.
    """
    import pydicom

    items = source if isinstance(source, (list, tuple)) else _dicom_files(source)
    dsets = [d if isinstance(d, pydicom.Dataset) else pydicom.dcmread(d) for d in items]
    client = client or dicomweb_client(pacs)
    request = f"STOW-RS POST /studies ({len(dsets)} instances)"
    with _web_errors(pacs, request):
        answer = client.store_instances(datasets=dsets)
    failed = answer.get("FailedSOPSequence") if answer is not None else None
    if failed:
        raise DicomSeriesError(f"{request} to {pacs.dicomweb_url}: {len(failed)} instances refused; check the "
                               "PACS log (SOP class accepted? study already locked?)")
    return [str(d.SOPInstanceUID) for d in dsets]


def timed(fn, *args, **kwargs):
    """``(result, seconds)`` of one call (for the chapter's route comparison)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def iter_files(folder: str | os.PathLike) -> Iterable[Path]:
    """The files of a retrieved folder, sorted."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file())


#: Columns :func:`table` hides: a built page of the book may be published.
HIDDEN_COLUMNS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber")


#: Columns :func:`table` shows first, when present: what a reader compares (on a phone the
#: others are a sideways scroll away); then the rest, hidden identifiers and UIDs last.
TABLE_FIRST = ("StudyDate", "StudyDescription", "ModalitiesInStudy", "Modality", "SeriesNumber",
               "SeriesDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
               "NumberOfSeriesRelatedInstances", "InstanceNumber")


def table(rows: list[dict], *, hide: Iterable[str] = HIDDEN_COLUMNS, uid_chars: int = 24,
          first: Iterable[str] = TABLE_FIRST) -> Any:
    """Query results as a pandas DataFrame for a notebook, identifiers hidden, UIDs shortened.

    Parameters
    ----------
    rows : list of dict
        From :func:`qido` or :func:`c_find`.
    hide : sequence of str
        Columns shown as ``"(hidden)"``.
    uid_chars : int
        UIDs longer than this are cut to their last ``uid_chars`` characters.
    first : sequence of str, default :data:`TABLE_FIRST`
        Columns shown first, in this order (those present); the other columns follow in
        their own order, the hidden ones and the UIDs last.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> table([{"PatientID": "MRN1", "Modality": "CT"}]).to_dict("records")
    [{'Modality': 'CT', 'PatientID': '(hidden)'}]
    >>> list(table([{"SeriesInstanceUID": "1.2", "SeriesNumber": 3, "SeriesDescription": "lung"}]).columns)
    ['SeriesNumber', 'SeriesDescription', 'SeriesInstanceUID']
    """
    import pandas as pd

    df = pd.DataFrame(rows)
    hide = tuple(hide)
    front = [c for c in first if c in df.columns]
    back = [c for c in df.columns if c in hide or c.endswith("UID")]
    df = df[front + [c for c in df.columns if c not in front and c not in back]
            + [c for c in back if c not in front]]
    for c in df.columns:
        if c in hide:
            df[c] = "(hidden)"
        elif c.endswith("UID"):
            df[c] = [("…" + v[-uid_chars:]) if isinstance(v, str) and len(v) > uid_chars else v for v in df[c]]
    return df


def skip_cells_without_orthanc() -> bool:
    """For a notebook: True when Orthanc is installed; otherwise say so in one line and turn
    every later cell of the notebook into a no-op (so the chapter still builds).

    Returns
    -------
    bool
    """
    if find_orthanc() is not None:
        return True
    print("Orthanc is not installed on this machine (Debian packages orthanc, orthanc-dicomweb; "
          "./tasks.sh setup installs them): the cells of this chapter were not run.")
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    ip = get_ipython()
    if ip is not None:
        ip.input_transformers_post.append(lambda lines: ["pass\n"])
    return False
