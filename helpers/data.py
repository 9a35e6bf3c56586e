"""Fetch public, de-identified CT cases listed in ``data/manifest.json``.

The bundled synthetic sample lets the book build anywhere; this module brings a
*real* patient's scan when there is internet.  One command::

    python -m helpers.data list                      # what exists, what is here
    python -m helpers.data fetch lung-dx-a0002-b40f  # download, verify, extract
    python -m helpers.data verify lung-dx-a0002-b40f # re-hash what is on disk

and the chapters run on it with ``DATASET=lung-dx-a0002-b40f`` (or
``DICOM_DIR=data/lung-dx-a0002-b40f``).

How a fetch works
-----------------
1. Each download of the dataset is streamed to ``data/.partial/NAME/ID.zip.part``
   with a progress bar.  An interrupted download resumes with an HTTP
   ``Range: bytes=N-`` request; a server that ignores ``Range`` (answers 200)
   makes it restart from zero.  Network errors are retried a bounded number of
   times with exponential back-off.
2. The archive is checked against its SHA-256 when the manifest gives one
   (archives generated on the fly by an API are not byte-stable, so the
   manifest usually does not).
3. Every member is extracted into a temporary sibling folder and hashed.  Each
   file listed in the manifest must be found **by content** (SHA-256 and size);
   it is written under the manifest's file name, so it does not matter how the
   server named the members.  Members that are not in the manifest are left out
   (and named in a note).
4. A completion marker (``.complete.json``, with the citation) is written and
   the folder is moved into place with :func:`os.replace`: ``data/NAME/``
   either holds a complete, verified case or does not exist.

A case may have several downloads, each into its own ``subdir``: the Lung-PET-CT-Dx
entries add the collection's tumour-box archive (PASCAL-VOC XML, every subject),
of which only the files listed for that case are kept, in ``tumour-boxes/``
(read them with :func:`helpers.annotations.read_boxes`).

A failure names the URL tried, the file, the expected and the actual hash, and
what to do next.  Tests never use the internet: ``base_url=`` or the
``HELPERS_DATA_MIRROR`` environment variable sends every request to a mirror
(a local test server, a course server, or a ``file://`` folder).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from .errors import DicomSeriesError

__all__ = [
    "DatasetError",
    "citation",
    "citation_for_path",
    "fetch",
    "hash_folder",
    "list_datasets",
    "load_manifest",
    "main",
    "verify",
]

#: A manifest: the path of a JSON file, the dict it holds, or None for the repository's ``data/manifest.json``.
Manifest = str | os.PathLike | dict | None

#: The repository root (the one definition; ``helpers.book.notebooks`` and ``helpers.book.pdfbook`` import it).
REPO = Path(__file__).resolve().parents[1]
#: The data root: the folder that holds ``NAME/`` for every fetched dataset (and ``.partial/``).
DATA_DIR = REPO / "data"
#: The manifest shipped with the repository.
MANIFEST_PATH = DATA_DIR / "manifest.json"
#: Environment variable naming a mirror that replaces the manifest's host.
MIRROR_ENV = "HELPERS_DATA_MIRROR"
#: Completion marker written inside ``data/NAME/`` once every file is verified.
MARKER = ".complete.json"
#: Folder (inside the data folder) holding interrupted downloads.
PARTIAL_DIR = ".partial"
#: Bytes read from the network (and from disk when hashing) per step.
CHUNK_BYTES = 1 << 16
#: Seconds to wait for a server before giving up on one attempt.
TIMEOUT_S = 30.0
#: Extra attempts after a network failure (each resumes where the last stopped).
RETRIES = 3
#: First back-off in seconds; doubled at each retry and capped at ``MAX_BACKOFF_S``.
BACKOFF_S = 2.0
MAX_BACKOFF_S = 30.0
USER_AGENT = "dicom-teaching-helpers (python urllib; +data/manifest.json)"


class DatasetError(DicomSeriesError):
    """A public case cannot be fetched or verified as the manifest describes.

    Subclasses :class:`helpers.errors.DicomSeriesError` (hence ``ValueError``).
    The message names the dataset, the URL tried, the file, the expected and the
    actual SHA-256, and what to do next.
    """


class _Interrupted(Exception):
    """One download attempt ended early (retried, then reported as DatasetError)."""


# --------------------------------------------------------------------------- manifest


def load_manifest(manifest: Manifest = None) -> dict:
    """Read and check a dataset manifest.

    Parameters
    ----------
    manifest : path or dict, optional
        A JSON file or an already-parsed dict.  Default: ``data/manifest.json``.

    Returns
    -------
    dict
        ``{"datasets": {name: entry, ...}, ...}`` as in the file.

    Raises
    ------
    DatasetError
        When the file is missing or an entry lacks a URL, a file list, or a
        SHA-256/size for a file.

    Examples
    --------
    >>> m = load_manifest()
    >>> "lung-dx-a0002-b40f" in m["datasets"]
    True
    """
    source = "the manifest given as a dict"
    if manifest is None:
        manifest = MANIFEST_PATH
    if not isinstance(manifest, dict):
        source = str(manifest)
        try:
            manifest = json.loads(Path(manifest).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"manifest {source} not found; pass manifest=PATH") from None
        except json.JSONDecodeError as exc:
            raise DatasetError(f"manifest {source} is not valid JSON: {exc}") from None
    manifest = cast(dict, manifest)  # the dict given, or what the JSON file holds
    datasets = manifest.get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        raise DatasetError(f"{source} has no 'datasets' mapping; expected {{name: entry}}")
    for name, entry in datasets.items():
        _check_entry(name, entry, source)
    return manifest


def _check_entry(name: str, entry: dict, source: str) -> None:
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise DatasetError(f"{source}: dataset name {name!r} must be a plain folder name")
    downloads = entry.get("downloads")
    if not downloads:
        raise DatasetError(f"{source}: dataset {name!r} has no 'downloads'")
    ids = set()
    for i, dl in enumerate(downloads):
        where = f"{source}: dataset {name!r}, download {i}"
        if not dl.get("url"):
            raise DatasetError(f"{where} has no 'url'")
        dl_id = dl.get("id", f"part{i}")
        if dl_id in ids or "/" in dl_id:
            raise DatasetError(f"{where}: id {dl_id!r} is repeated or contains '/'")
        ids.add(dl_id)
        files = dl.get("files")
        if not files:
            raise DatasetError(f"{where} lists no 'files' (name, sha256, size)")
        for f in files:
            _check_file_entry(f, where)


def _check_file_entry(f: dict, where: str) -> None:
    """One file of a manifest download: a plain name, a 64-hex-digit SHA-256, a size in bytes."""
    fname = f.get("name", "")
    if not fname or "/" in fname or "\\" in fname or fname.startswith("."):
        raise DatasetError(f"{where}: file name {fname!r} must be a plain name")
    sha = str(f.get("sha256", ""))
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise DatasetError(f"{where}: file {fname!r} needs a 64-hex-digit 'sha256'")
    if not isinstance(f.get("size"), int):
        raise DatasetError(f"{where}: file {fname!r} needs an integer 'size' in bytes")


def _entry(name: str, manifest: Manifest) -> dict:
    datasets = load_manifest(manifest)["datasets"]
    if name not in datasets:
        raise DatasetError(
            f"no dataset called {name!r} in the manifest; available: "
            f"{', '.join(sorted(datasets))} (python -m helpers.data list)"
        )
    return datasets[name]


def _entry_digest(entry: dict) -> str:
    """SHA-256 of what the marker vouches for: every download's file list."""
    files = [
        [dl.get("subdir", ""), f["name"], f["sha256"], f["size"]]
        for dl in entry["downloads"]
        for f in dl["files"]
    ]
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def citation(name: str, *, manifest: Manifest = None) -> str:
    """The citation (with DOI and licence) to show wherever the dataset is used.

    Parameters
    ----------
    name : str
        Dataset name in the manifest.
    manifest : path or dict, optional
        Default ``data/manifest.json``.

    Returns
    -------
    str
        One paragraph: citation text, DOI link and licence.

    Raises
    ------
    DatasetError
        When ``name`` is not in the manifest.

    Examples
    --------
    >>> "https://doi.org/10.7937/TCIA.2020.NNC2-0461" in citation("lung-dx-a0002-b40f")
    True
    """
    return _citation_text(_entry(name, manifest))


def _citation_text(entry: dict) -> str:
    text = entry.get("citation", "").strip()
    doi = entry.get("doi", "")
    if doi and doi not in text:
        text += f" https://doi.org/{doi}"
    licence = entry.get("licence")
    if licence:
        text += f" Licence: {licence}"
        if entry.get("licence_url"):
            text += f" ({entry['licence_url']})"
        text += "."
    return text


def citation_for_path(path: str | os.PathLike) -> str | None:
    """The citation of the fetched dataset that contains ``path``, or ``None``.

    A chapter calls this with the folder it reads (for example
    ``helpers.sample.default_dicom_dir()``) and prints the result when it is not
    ``None``: the synthetic sample needs no citation, a real case always does.

    Parameters
    ----------
    path : path
        A fetched dataset folder, or any file or folder inside one.

    Returns
    -------
    str or None
        The citation recorded in the dataset's completion marker.

    Examples
    --------
    >>> citation_for_path("/nonexistent/folder") is None
    True
    """
    p = Path(path).resolve()
    for folder in (p, *p.parents):
        marker = folder / MARKER
        if marker.is_file():
            try:
                return json.loads(marker.read_text(encoding="utf-8")).get("citation")
            except (OSError, json.JSONDecodeError):
                return None
    return None


# --------------------------------------------------------------------------- hashing


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def hash_folder(folder: str | os.PathLike, *, pattern: str = "*.dcm") -> list[dict]:
    """``[{name, sha256, size}, ...]`` for the files of a folder, for a manifest entry.

    Parameters
    ----------
    folder : path
        A folder holding one series (files directly inside it).
    pattern : str, optional
        Glob of the files to list (default ``"*.dcm"``).

    Returns
    -------
    list of dict
        Sorted by name; ``size`` in bytes.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     d = pathlib.Path(tmp)
    ...     _ = (d / "1-01.dcm").write_bytes(b"abc")
    ...     hash_folder(d)[0]["sha256"][:12], hash_folder(d)[0]["size"]
    ('ba7816bf8f01', 3)
    """
    return [
        {"name": p.name, "sha256": _sha256_file(p), "size": p.stat().st_size}
        for p in sorted(Path(folder).glob(pattern))
        if p.is_file()
    ]


# --------------------------------------------------------------------------- locations


def _resolve_url(dl: dict, base_url: str | None) -> str:
    """The URL to request: the manifest's, or the same path on a mirror."""
    base = base_url or os.environ.get(MIRROR_ENV) or ""
    if not base:
        return dl["url"]
    if dl.get("mirror_path"):
        return base.rstrip("/") + "/" + dl["mirror_path"].lstrip("/")
    u, b = urlsplit(dl["url"]), urlsplit(base)
    return urlunsplit((b.scheme, b.netloc, b.path.rstrip("/") + u.path, u.query, ""))


def _dest_for(name: str, dest: str | os.PathLike | None) -> Path:
    return Path(dest) if dest is not None else DATA_DIR / name


def _partial_dir(dest: Path, name: str) -> Path:
    return dest.parent / PARTIAL_DIR / name


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


# --------------------------------------------------------------------------- download


def _backoff_sleep(attempt: int, backoff: float) -> None:
    if backoff > 0:
        time.sleep(min(backoff * 2**attempt, MAX_BACKOFF_S))


def _download(
    url: str,
    part: Path,
    *,
    label: str,
    progress: bool,
    retries: int,
    backoff: float,
    timeout: float,
    say: Callable[[str], None],
) -> tuple[Path, bool]:
    """Stream ``url`` into ``part`` (resuming it); return (part, resumed)."""
    part.parent.mkdir(parents=True, exist_ok=True)
    validator_file = part.with_name(part.name + ".json")
    resumed = False
    last_error = "no attempt made"
    for attempt in range(retries + 1):
        if attempt:
            _backoff_sleep(attempt - 1, backoff)
        offset = part.stat().st_size if part.exists() else 0
        headers = _request_headers(offset, validator_file)
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=timeout
            ) as resp:
                length = resp.headers.get("Content-Length")
                offset, mode = _resume_or_restart(resp, offset, part, validator_file, url=url, label=label, say=say)
                resumed = resumed or mode == "ab"
                total = offset + int(length) if length is not None else None
                _stream(resp, part, mode, offset=offset, total=total, label=label, progress=progress)
                got = part.stat().st_size
                if total is not None and got != total:
                    raise _Interrupted(f"connection closed after {got} of {total} bytes")
                return part, resumed
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                size = _content_range_total(exc.headers.get("Content-Range"))
                if size == offset:  # the .part file was already complete
                    return part, True
                part.unlink(missing_ok=True)
                last_error = "HTTP 416 (the partial file does not fit the server's copy)"
                continue
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise DatasetError(
                    f"{url} answered HTTP {exc.code} {exc.reason} for {label}. "
                    "Check the URL in data/manifest.json (the archive may have moved), "
                    f"or set {MIRROR_ENV} to a mirror."
                ) from None
            last_error = f"HTTP {exc.code} {exc.reason}"
        except (_Interrupted, urllib.error.URLError, http.client.HTTPException,
                ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            last_error = f"{type(exc).__name__}: {reason}"
        say(f"  attempt {attempt + 1} of {retries + 1} for {label} failed: {last_error}")
    kept = part.stat().st_size if part.exists() else 0
    if not kept:  # nothing to resume: leave no empty folders behind
        _remove_empty_partial(part, validator_file)
    raise DatasetError(
        f"download of {label} from {url} failed after {retries + 1} attempt(s): "
        f"{last_error}. {kept} bytes are kept in {part}; run the same command again "
        "to resume (check your internet connection, or set "
        f"{MIRROR_ENV} to a mirror)."
    )


def _request_headers(offset: int, validator_file: Path) -> dict[str, str]:
    """GET headers: no compression; from byte ``offset`` on when resuming, if the copy is still the same."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        try:
            saved = json.loads(validator_file.read_text())
        except (OSError, json.JSONDecodeError):
            saved = {}
        if saved.get("etag") or saved.get("last_modified"):
            headers["If-Range"] = saved.get("etag") or saved["last_modified"]
    return headers


def _resume_or_restart(resp: Any, offset: int, part: Path, validator_file: Path, *, url: str, label: str,
                       say: Callable[[str], None]) -> tuple[int, str]:
    """``(offset, file mode)``: append after a 206 from ``offset``; else restart at 0 and record the validators."""
    status = getattr(resp, "status", None) or 200
    if offset and status == 206:
        start = _content_range_start(resp.headers.get("Content-Range"))
        if start != offset:  # unusable answer: start again from zero next time
            part.unlink(missing_ok=True)
            raise _Interrupted(
                f"asked for bytes from {offset}, the server sent "
                f"Content-Range {resp.headers.get('Content-Range')!r}"
            )
        say(f"  resuming {label} at {offset / 1e6:.1f} MB")
        return offset, "ab"
    if offset:
        say(
            f"  the server ignored the Range request for {label} "
            "(answered 200): restarting from the first byte"
        )
    validator_file.write_text(
        json.dumps(
            {
                "url": url,
                "etag": resp.headers.get("ETag"),
                "last_modified": resp.headers.get("Last-Modified"),
            }
        )
    )
    return 0, "wb"


def _stream(resp: Any, part: Path, mode: str, *, offset: int, total: int | None, label: str, progress: bool) -> None:
    """Copy the response body into ``part`` block by block, with a progress bar."""
    from tqdm.auto import tqdm

    with open(part, mode) as fh, tqdm(
        total=total,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        disable=not progress,
        file=sys.stderr,
        leave=False,
    ) as bar:
        while True:
            block = resp.read(CHUNK_BYTES)
            if not block:
                break
            fh.write(block)
            bar.update(len(block))


def _remove_empty_partial(part: Path, validator_file: Path) -> None:
    part.unlink(missing_ok=True)
    validator_file.unlink(missing_ok=True)
    for folder in (part.parent, part.parent.parent):
        try:
            folder.rmdir()
        except OSError:
            break


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    if value is None:
        return None
    try:
        return int(value.split()[1].split("-")[0])
    except (AttributeError, IndexError, ValueError):
        return None


def _content_range_total(value: str | None) -> int | None:
    # "bytes */200"
    if value is None:
        return None
    try:
        return int(value.rsplit("/", 1)[1])
    except (AttributeError, IndexError, ValueError):
        return None


# --------------------------------------------------------------------------- extraction


def _open_zip(archive: Path, url: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        head = archive.read_bytes()[:60]
        raise DatasetError(
            f"the download from {url} ({archive.stat().st_size} bytes) is not a complete "
            f"zip archive; it starts with {head!r}. It was deleted. The connection may "
            "have dropped, or the server sent an error page: run the fetch again later, "
            "or check the URL in data/manifest.json."
        ) from None


def _extract_verified(
    archive: Path, dl: dict, url: str, out: Path, staging: Path, say: Callable[[str], None]
) -> None:
    """Extract ``archive`` and place every manifest file of ``dl`` under ``out``."""
    wanted = {f["sha256"]: f for f in dl["files"]}
    by_name = {f["name"]: f for f in dl["files"]}
    found: dict[str, Path] = {}
    seen_names: dict[str, str] = {}  # member base name -> actual sha256
    extras: list[str] = []
    staging.mkdir(parents=True, exist_ok=True)
    with _open_zip(archive, url) as zf:
        for i, info in enumerate(zf.infolist()):
            if info.is_dir():
                continue
            base = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
            tmp = staging / f"{i:06d}"
            h = hashlib.sha256()
            try:
                with zf.open(info) as src, open(tmp, "wb") as dst:
                    for block in iter(lambda: src.read(CHUNK_BYTES), b""):
                        h.update(block)
                        dst.write(block)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                expect = by_name.get(base)
                hint = f" (expected sha256 {expect['sha256']})" if expect else ""
                raise DatasetError(
                    f"the archive downloaded from {url} is corrupt: member "
                    f"{info.filename!r}{hint} fails its check ({exc}). The corrupt "
                    f"archive was deleted; run the fetch again to download it anew."
                ) from None
            digest = h.hexdigest()
            seen_names[base] = digest
            if digest in wanted and digest not in found:
                found[digest] = tmp
            else:
                extras.append(info.filename)
                tmp.unlink()
    missing = [f for sha, f in wanted.items() if sha not in found]
    if missing:
        raise _mismatch_error(missing, len(wanted), seen_names, url)
    out.mkdir(parents=True, exist_ok=True)
    for sha, tmp in found.items():
        f = wanted[sha]
        if tmp.stat().st_size != f["size"]:  # same hash, other size: cannot happen
            raise DatasetError(f"{f['name']}: size {tmp.stat().st_size}, expected {f['size']}")
        os.replace(tmp, out / f["name"])
    if extras:
        shown = ", ".join(extras[:5]) + (" ..." if len(extras) > 5 else "")
        say(f"  left out {len(extras)} file(s) not listed in the manifest: {shown}")


def _mismatch_error(missing: list[dict], n_wanted: int, seen_names: dict[str, str], url: str) -> DatasetError:
    """The error for manifest files whose content the download lacks: each one's expected and actual SHA-256."""
    lines = []
    for f in missing[:5]:
        actual = seen_names.get(f["name"])
        got = (
            f"the download's {f['name']} has sha256 {actual}"
            if actual
            else "no file in the download has this content"
        )
        lines.append(f"{f['name']}: expected sha256 {f['sha256']} ({f['size']} bytes); {got}")
    more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
    return DatasetError(
        f"{len(missing)} of {n_wanted} files from {url} do not match the "
        f"manifest{more}:\n  " + "\n  ".join(lines) + "\nThe download was deleted "
        "and nothing was installed. If this repeats, the archive changed on the "
        "server: report it (the manifest needs new hashes)."
    )


def _verify_dir(folder: Path, entry: dict, name: str) -> list[str]:
    """Problems found when re-hashing ``folder`` against ``entry`` (empty: all good)."""
    problems = []
    for dl in entry["downloads"]:
        sub = folder / dl.get("subdir", "")
        for f in dl["files"]:
            p = sub / f["name"]
            if not p.is_file():
                problems.append(f"{p}: missing (expected sha256 {f['sha256']})")
                continue
            size = p.stat().st_size
            if size != f["size"]:
                problems.append(f"{p}: {size} bytes, expected {f['size']}")
                continue
            actual = _sha256_file(p)
            if actual != f["sha256"]:
                problems.append(f"{p}: sha256 {actual}, expected {f['sha256']}")
    return problems


# --------------------------------------------------------------------------- public API


def _check_existing(dest: Path, entry: dict, name: str, digest: str) -> None:
    """Refuse a ``dest`` that is not a completed, verified download of this manifest entry."""
    marker = _read_marker(dest)
    if marker is None:
        raise DatasetError(
            f"{dest} exists but is not a completed download of {name!r} (no "
            f"{MARKER}); move it away, or fetch with force=True / --force to replace it"
        )
    problems = _verify_dir(dest, entry, name) if marker.get("digest") == digest else [
        "it was fetched with a different manifest entry"
    ]
    if problems:
        raise DatasetError(
            f"{dest} does not match the manifest for {name!r}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + "; fetch with force=True / --force to download it again"
        )


def _fetch_download(dl: dict, dl_id: str, url: str, part: Path, tmp: Path, *, label: str, progress: bool,
                    retries: int, backoff: float, timeout: float, say: Callable[[str], None]) -> None:
    """Download one archive of the entry (resuming ``part``), check it and extract its files into ``tmp``."""
    for round_ in range(2):  # a resumed archive that proves corrupt is refetched once
        part, resumed = _download(
            url, part, label=label, progress=progress,
            retries=retries, backoff=backoff, timeout=timeout, say=say,
        )
        try:
            _check_archive(part, dl, url)
            _extract_verified(
                part, dl, url, tmp / dl.get("subdir", ""), tmp / ".staging" / dl_id, say
            )
            return
        except DatasetError:
            part.unlink(missing_ok=True)
            part.with_name(part.name + ".json").unlink(missing_ok=True)
            if not (resumed and round_ == 0):
                raise
            say(f"  the resumed archive for {dl_id} is inconsistent "
                "(the server's copy changed?): downloading it again from the start")


def fetch(
    name: str,
    *,
    dest: str | os.PathLike | None = None,
    manifest: Manifest = None,
    base_url: str | None = None,
    progress: bool = True,
    force: bool = False,
    retries: int = RETRIES,
    backoff: float = BACKOFF_S,
    timeout: float = TIMEOUT_S,
    quiet: bool = False,
) -> Path:
    """Download, verify and install a public case into ``data/NAME/``.

    Parameters
    ----------
    name : str
        Dataset name in the manifest (``python -m helpers.data list``).
    dest : path, optional
        Folder to install into (default ``data/NAME``).  Interrupted downloads
        are kept in ``<dest's parent>/.partial/NAME/``.
    manifest : path or dict, optional
        Default ``data/manifest.json``.
    base_url : str, optional
        Mirror replacing the manifest's scheme and host (or, when a download has a
        ``mirror_path``, the URL is ``base_url/mirror_path``).  Default: the
        ``HELPERS_DATA_MIRROR`` environment variable, else the manifest's URLs.
    progress : bool, optional
        Show a tqdm progress bar per download.
    force : bool, optional
        Download and replace even when ``dest`` exists (modified or foreign).
    retries : int, optional
        Extra attempts after a network failure; each resumes the partial file.
    backoff : float, optional
        Seconds before the first retry, doubled each time (capped at 30 s).
    timeout : float, optional
        Seconds to wait for the server on each attempt.
    quiet : bool, optional
        Print nothing (the citation included).

    Returns
    -------
    pathlib.Path
        The installed folder; every file in it matched its SHA-256.

    Raises
    ------
    DatasetError
        Unknown name; ``dest`` exists but is not this verified dataset (use
        ``force=True``); a download failed (the URL, the bytes kept and how to
        resume are named); a file's hash differs (the URL, the file, the expected
        and the actual hash are named).  Nothing is left in ``dest`` on failure.

    Notes
    -----
    An already present and verified dataset is not downloaded again.  The
    citation is printed after every fetch; a chapter shows it with
    :func:`citation_for_path`.
    """
    entry = _entry(name, manifest)
    dest = _dest_for(name, dest)
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, flush=True))
    cite = _citation_text(entry)
    digest = _entry_digest(entry)

    if dest.exists() and not force:
        _check_existing(dest, entry, name, digest)
        say(f"{name} is already in {dest} (all {_n_files(entry)} files verified).")
        say(f"Please cite: {cite}")
        return dest

    partial = _partial_dir(dest, name)
    size_mb = sum(f["size"] for dl in entry["downloads"] for f in dl["files"]) / 1e6
    say(f"Fetching {name}: {entry.get('description', '')} "
        f"({_n_files(entry)} files, {size_mb:.1f} MB)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=dest.parent))
    try:
        for i, dl in enumerate(entry["downloads"]):
            dl_id = dl.get("id", f"part{i}")
            url = _resolve_url(dl, base_url)
            say(f"  {dl_id}: {url}")
            _fetch_download(dl, dl_id, url, partial / f"{dl_id}.zip.part", tmp, label=f"{name}/{dl_id}",
                            progress=progress, retries=retries, backoff=backoff, timeout=timeout, say=say)
        shutil.rmtree(tmp / ".staging", ignore_errors=True)
        problems = _verify_dir(tmp, entry, name)
        if problems:  # defensive: extraction already matched every hash
            raise DatasetError(f"{name}: verification after extraction failed: {problems[0]}")
        marker = {
            "name": name,
            "digest": digest,
            "files": _n_files(entry),
            "fetched_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "urls": [_resolve_url(dl, base_url) for dl in entry["downloads"]],
            "citation": cite,
            "licence": entry.get("licence"),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        old = None
        if dest.exists():  # force=True: move the old folder aside, then swap
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.parent.rmdir()  # only when empty
    except OSError:
        pass
    say(f"Installed {name} in {dest} (all {_n_files(entry)} files verified).")
    say(f"Please cite: {cite}")
    return dest


def _n_files(entry: dict) -> int:
    return sum(len(dl["files"]) for dl in entry["downloads"])


def _check_archive(part: Path, dl: dict, url: str) -> None:
    """Archive-level size/SHA-256, checked only when the manifest gives them."""
    if dl.get("size") is not None and part.stat().st_size != dl["size"]:
        raise DatasetError(
            f"the archive from {url} has {part.stat().st_size} bytes, the manifest "
            f"expects {dl['size']}; the download was deleted, run the fetch again"
        )
    if dl.get("sha256"):
        actual = _sha256_file(part)
        if actual != dl["sha256"]:
            raise DatasetError(
                f"the archive from {url} has sha256 {actual}, the manifest expects "
                f"{dl['sha256']}; the download was deleted, run the fetch again "
                "(if this repeats, the archive changed on the server)"
            )


def verify(name: str, *, dest: str | os.PathLike | None = None, manifest: Manifest = None) -> Path:
    """Re-hash an installed dataset against the manifest.

    Parameters
    ----------
    name : str
        Dataset name in the manifest.
    dest : path, optional
        Installed folder (default ``data/NAME``).
    manifest : path or dict, optional
        Default ``data/manifest.json``.

    Returns
    -------
    pathlib.Path
        The folder, when every file matches.

    Raises
    ------
    DatasetError
        When the folder is absent, or a file is missing, has the wrong size or the
        wrong SHA-256 (each named with expected and actual values).
    """
    entry = _entry(name, manifest)
    dest = _dest_for(name, dest)
    if not dest.is_dir():
        raise DatasetError(f"{dest} does not exist; run: python -m helpers.data fetch {name}")
    problems = _verify_dir(dest, entry, name)
    if problems:
        raise DatasetError(
            f"{len(problems)} problem(s) in {dest}:\n  " + "\n  ".join(problems[:10])
            + f"\nRun: python -m helpers.data fetch {name} --force"
        )
    return dest


def list_datasets(*, manifest: Manifest = None, data_dir: str | os.PathLike | None = None) -> list[dict]:
    """What the manifest offers and what is already here.

    Parameters
    ----------
    manifest : path or dict, optional
        Default ``data/manifest.json``.
    data_dir : path, optional
        Folder holding the datasets (default ``data/``).

    Returns
    -------
    list of dict
        One dict per dataset: ``name``, ``description``, ``files`` (count),
        ``size_mb``, ``status`` (``"present"``, ``"absent"``, ``"partial: x MB"``,
        ``"present, other manifest entry"`` or ``"folder exists, unverified"``)
        and ``path``.  ``present`` trusts the completion marker; use
        :func:`verify` to re-hash.

    Examples
    --------
    >>> rows = list_datasets()
    >>> sorted(rows[0])
    ['description', 'files', 'name', 'path', 'size_mb', 'status']
    """
    data_dir = Path(data_dir) if data_dir is not None else DATA_DIR
    rows = []
    for name, entry in load_manifest(manifest)["datasets"].items():
        path = data_dir / name
        marker = _read_marker(path) if path.is_dir() else None
        partial = data_dir / PARTIAL_DIR / name
        if marker is not None:
            status = "present" if marker.get("digest") == _entry_digest(entry) else (
                "present, other manifest entry")
        elif path.exists():
            status = "folder exists, unverified"
        elif partial.is_dir() and any(partial.glob("*.part")):
            got = sum(p.stat().st_size for p in partial.glob("*.part"))
            status = f"partial: {got / 1e6:.1f} MB"
        else:
            status = "absent"
        rows.append({
            "name": name,
            "description": entry.get("description", ""),
            "files": _n_files(entry),
            "size_mb": round(sum(f["size"] for dl in entry["downloads"]
                                 for f in dl["files"]) / 1e6, 1),
            "status": status,
            "path": str(path),
        })
    return rows


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m helpers.data {list,fetch,verify,cite,hash}``.

    Returns the exit status (0 on success, 1 on a :class:`DatasetError`, whose
    message is printed to stderr without a traceback).
    """
    parser = argparse.ArgumentParser(
        prog="python -m helpers.data",
        description="Fetch public de-identified CT cases listed in data/manifest.json.",
    )
    parser.add_argument("--manifest", help="manifest JSON (default data/manifest.json)")
    parser.add_argument("--data-dir", help="folder holding the datasets (default data/)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="datasets in the manifest and whether they are here")
    p_fetch = sub.add_parser("fetch", help="download, verify and install NAME")
    p_fetch.add_argument("name")
    p_fetch.add_argument("--mirror", help=f"mirror base URL (default ${MIRROR_ENV})")
    p_fetch.add_argument("--force", action="store_true", help="replace an existing folder")
    p_fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_fetch.add_argument("--retries", type=int, default=RETRIES)
    p_fetch.add_argument("--timeout", type=float, default=TIMEOUT_S)
    p_verify = sub.add_parser("verify", help="re-hash an installed NAME")
    p_verify.add_argument("name")
    p_cite = sub.add_parser("cite", help="print NAME's citation")
    p_cite.add_argument("name")
    p_hash = sub.add_parser("hash", help="print a manifest 'files' list for a folder")
    p_hash.add_argument("folder")
    args = parser.parse_args(argv)

    def dest_of(name):
        return Path(args.data_dir) / name if args.data_dir else None

    try:
        if args.command == "list":
            rows = list_datasets(manifest=args.manifest, data_dir=args.data_dir)
            width = max(len(r["name"]) for r in rows)
            print(f"{'name':<{width}}  {'files':>5}  {'MB':>6}  status")
            for r in rows:
                print(f"{r['name']:<{width}}  {r['files']:>5}  {r['size_mb']:>6.1f}  {r['status']}")
                print(f"{'':<{width}}  {r['description']}")
            print("\nFetch one with: python -m helpers.data fetch NAME;"
                  " run the book on it with DATASET=NAME.")
        elif args.command == "fetch":
            fetch(args.name, dest=dest_of(args.name), manifest=args.manifest,
                  base_url=args.mirror, progress=not args.no_progress, force=args.force,
                  retries=args.retries, timeout=args.timeout)
            print(f"Run the chapters on it with: DATASET={args.name}")
        elif args.command == "verify":
            path = verify(args.name, dest=dest_of(args.name), manifest=args.manifest)
            print(f"{args.name}: every file in {path} matches the manifest.")
        elif args.command == "cite":
            print(citation(args.name, manifest=args.manifest))
        elif args.command == "hash":
            print(json.dumps(hash_folder(args.folder), indent=2))
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
