"""helpers.data: fetch public cases with verified hashes, offline.

Nothing here touches the internet: every request goes to a threaded HTTP server
on 127.0.0.1 (random port) that serves zips built from ../shared/data when it is
present, else from a small series written with pydicom in a temporary folder.
The server can cut a response short, ignore ``Range`` and count the bytes it
sends, so interruption and resumption are tested for real.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from helpers import data as hd
from helpers.data import DatasetError
from helpers.hu import PADDING_BELOW_HU

SERIES_UID = "1.2.826.0.1.3680043.8.498.1"
FAKE_URL = f"https://tcia.invalid/nbia-api/services/v1/getImage?SeriesInstanceUID={SERIES_UID}"
ROUTE = urlsplit(FAKE_URL).path + "?" + urlsplit(FAKE_URL).query
CITE = "Doe, J. (2026). A test case [Data set]."
SOCKET_TIMEOUT_S = 5.0  # every request in these tests, bounded


# --------------------------------------------------------------------------- fixtures


def _tiny_series(folder: Path, n: int = 4) -> Path:
    """``n`` tiny CT slices written with pydicom, named like TCIA's downloads."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    study, series = generate_uid(), SERIES_UID
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = "CT", study, series
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.Rows = ds.Columns = 64
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = rng.integers(0, 2000, (64, 64), dtype=np.int16).tobytes()
        ds.save_as(folder / f"1-{k + 1:02d}.dcm", enforce_file_format=True)
    return folder


@pytest.fixture(scope="session")
def series(request, tmp_path_factory) -> dict[str, bytes]:
    """{file name: bytes} of one series: the real B40f series when present, else tiny."""
    try:
        folder = request.getfixturevalue("real_case") / "ct-b40f"
    except pytest.skip.Exception:
        folder = _tiny_series(tmp_path_factory.mktemp("tiny") / "series")
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.dcm"))}


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return buf.getvalue()


def _files(series: dict[str, bytes]) -> list[dict]:
    return [
        {"name": n, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
        for n, b in series.items()
    ]


def _manifest(series, **download) -> dict:
    dl = {"id": "ct", "url": FAKE_URL, "files": _files(series), **download}
    return {
        "datasets": {
            "case": {
                "description": "test series",
                "citation": CITE,
                "doi": "10.0000/TEST",
                "licence": "CC BY 4.0",
                "downloads": [dl],
            }
        }
    }


class _State:
    def __init__(self):
        self.routes: dict[str, bytes] = {}
        self.cuts: list[int] = []  # bytes to send before closing, one per coming response
        self.ignore_range = False
        self.send_length = True  # False: like an API streaming a zip it is still building
        self.requests: list[tuple[str, str | None]] = []
        self.bytes_sent = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the connection closes after each response

    def do_GET(self):  # noqa: N802 (http.server API)
        st: _State = self.server.state
        rng = self.headers.get("Range")
        with st.lock:
            st.requests.append((self.path, rng))
            body = st.routes.get(self.path)
            cut = st.cuts.pop(0) if st.cuts else None
        if body is None:
            self.send_error(404, "no such series")
            return
        start = 0
        if rng and not st.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        if st.send_length:
            self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", '"v1"')
        self.end_headers()
        payload = body[start:] if cut is None else body[start : start + cut]
        self.wfile.write(payload)
        with st.lock:
            st.bytes_sent += len(payload)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = _State()
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    httpd.state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Refuse any request that is not to 127.0.0.1 or a local file; no mirror from the env."""
    monkeypatch.delenv(hd.MIRROR_ENV, raising=False)
    real = urllib.request.urlopen

    def guarded(req, *args, **kwargs):
        url = req.full_url if isinstance(req, urllib.request.Request) else req
        parts = urlsplit(url)
        assert parts.scheme == "file" or parts.hostname == "127.0.0.1", f"test tried {url}"
        kwargs["timeout"] = min(kwargs.get("timeout") or SOCKET_TIMEOUT_S, SOCKET_TIMEOUT_S)
        return real(req, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


def _fetch(server, tmp_path, manifest, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("retries", 0)
    kw.setdefault("backoff", 0)
    return hd.fetch("case", dest=tmp_path / "data" / "case", manifest=manifest,
                    base_url=server.url, **kw)


def _leftovers(tmp_path):
    """Temporary folders fetch may have left beside data/case (there must be none)."""
    return [p.name for p in (tmp_path / "data").glob(".case*")]


# --------------------------------------------------------------------------- fetch


class TestFetch:
    def test_happy_path_verifies_installs_and_prints_citation(self, server, series, tmp_path, capsys):
        server.routes[ROUTE] = _zip(series)
        dest = _fetch(server, tmp_path, _manifest(series))
        assert dest == tmp_path / "data" / "case"
        for name, blob in series.items():
            assert (dest / name).read_bytes() == blob
        marker = json.loads((dest / hd.MARKER).read_text())
        assert marker["files"] == len(series) and CITE in marker["citation"]
        out = capsys.readouterr().out
        assert CITE in out and "https://doi.org/10.0000/TEST" in out and "CC BY 4.0" in out
        assert not (tmp_path / "data" / ".partial").exists()
        assert _leftovers(tmp_path) == []
        assert server.requests == [(ROUTE, None)]

    def test_progress_bar_goes_to_stderr(self, server, series, tmp_path, capsys):
        server.routes[ROUTE] = _zip(series)
        _fetch(server, tmp_path, _manifest(series), progress=True)
        assert "case/ct" in capsys.readouterr().err

    def test_members_are_matched_by_content_and_extras_left_out(self, server, series, tmp_path, capsys):
        members = {f"{SERIES_UID}/{i:03d}.dcm": b for i, b in enumerate(reversed(series.values()))}
        members["LICENSE"] = b"CC BY 4.0"
        server.routes[ROUTE] = _zip(members)
        dest = _fetch(server, tmp_path, _manifest(series))
        assert sorted(p.name for p in dest.iterdir() if p.name != hd.MARKER) == sorted(series)
        assert (dest / "1-01.dcm").read_bytes() == series["1-01.dcm"]
        assert "left out 1 file(s) not listed in the manifest: LICENSE" in capsys.readouterr().out

    def test_present_and_verified_is_not_downloaded_again(self, server, series, tmp_path, capsys):
        server.routes[ROUTE] = _zip(series)
        _fetch(server, tmp_path, _manifest(series))
        sent = server.bytes_sent
        _fetch(server, tmp_path, _manifest(series))
        assert server.bytes_sent == sent and len(server.requests) == 1
        out = capsys.readouterr().out
        assert "already in" in out and out.count(CITE) == 2

    def test_modified_install_needs_force(self, server, series, tmp_path):
        server.routes[ROUTE] = _zip(series)
        dest = _fetch(server, tmp_path, _manifest(series))
        victim = dest / "1-02.dcm"
        blob = bytearray(victim.read_bytes())
        blob[-1] ^= 0xFF
        victim.write_bytes(bytes(blob))
        with pytest.raises(DatasetError, match=r"1-02\.dcm: sha256 [0-9a-f]{64}, expected .*--force"):
            _fetch(server, tmp_path, _manifest(series))
        _fetch(server, tmp_path, _manifest(series), force=True)
        assert victim.read_bytes() == series["1-02.dcm"]
        assert _leftovers(tmp_path) == []

    def test_foreign_folder_is_not_overwritten(self, server, series, tmp_path):
        (tmp_path / "data" / "case").mkdir(parents=True)
        (tmp_path / "data" / "case" / "mine.txt").write_text("keep me")
        with pytest.raises(DatasetError, match="not a completed download.*force"):
            _fetch(server, tmp_path, _manifest(series))
        assert server.requests == []

    def test_corrupted_download_names_url_file_and_expected_hash(self, server, series, tmp_path):
        blob = bytearray(_zip(series))
        first = zipfile.ZipFile(io.BytesIO(bytes(blob))).infolist()[0]
        blob[first.header_offset + 30 + len(first.filename) + 200] ^= 0x01  # inside 1-01.dcm's data
        server.routes[ROUTE] = bytes(blob)
        expected = hashlib.sha256(series["1-01.dcm"]).hexdigest()
        with pytest.raises(DatasetError) as err:
            _fetch(server, tmp_path, _manifest(series))
        msg = str(err.value)
        assert server.url + ROUTE in msg and "'1-01.dcm'" in msg and expected in msg
        assert "run the fetch again" in msg
        assert not (tmp_path / "data" / "case").exists()
        assert not list((tmp_path / "data").rglob("*.part"))
        assert _leftovers(tmp_path) == []

    def test_altered_file_in_valid_archive_names_both_hashes(self, server, series, tmp_path):
        altered = dict(series)
        blob = bytearray(altered["1-03.dcm"])
        blob[-2] ^= 0x01
        altered["1-03.dcm"] = bytes(blob)
        server.routes[ROUTE] = _zip(altered)
        want = hashlib.sha256(series["1-03.dcm"]).hexdigest()
        got = hashlib.sha256(altered["1-03.dcm"]).hexdigest()
        with pytest.raises(DatasetError, match=rf"1-03\.dcm: expected sha256 {want} .*has sha256 {got}"):
            _fetch(server, tmp_path, _manifest(series))
        assert not (tmp_path / "data" / "case").exists()

    def test_wrong_hash_in_manifest(self, server, series, tmp_path):
        server.routes[ROUTE] = _zip(series)
        manifest = _manifest(series)
        wrong = "0" * 64
        manifest["datasets"]["case"]["downloads"][0]["files"][1]["sha256"] = wrong
        with pytest.raises(DatasetError) as err:
            _fetch(server, tmp_path, manifest)
        msg = str(err.value)
        assert f"1-02.dcm: expected sha256 {wrong}" in msg
        assert hashlib.sha256(series["1-02.dcm"]).hexdigest() in msg
        assert server.url + ROUTE in msg and "nothing was installed" in msg
        assert not (tmp_path / "data" / "case").exists()
        assert _leftovers(tmp_path) == []

    def test_archive_hash_is_checked_when_given(self, server, series, tmp_path):
        archive = _zip(series)
        server.routes[ROUTE] = archive
        bad = _manifest(series, sha256="f" * 64)
        with pytest.raises(DatasetError, match=rf"archive from .* has sha256 {hashlib.sha256(archive).hexdigest()}"):
            _fetch(server, tmp_path, bad)
        good = _manifest(series, sha256=hashlib.sha256(archive).hexdigest(), size=len(archive))
        assert (_fetch(server, tmp_path, good) / "1-01.dcm").is_file()

    def test_interrupted_then_resumed_without_downloading_twice(self, server, series, tmp_path):
        archive = _zip(series)
        half = len(archive) // 2
        server.routes[ROUTE] = archive
        server.cuts = [half]
        with pytest.raises(DatasetError, match=rf"{half} of {len(archive)} bytes.*"
                                               r"run the same command again to resume"):
            _fetch(server, tmp_path, _manifest(series))
        part = tmp_path / "data" / ".partial" / "case" / "ct.zip.part"
        assert part.stat().st_size == half
        assert not (tmp_path / "data" / "case").exists()
        status = hd.list_datasets(manifest=_manifest(series), data_dir=tmp_path / "data")[0]["status"]
        assert status.startswith("partial")

        server.bytes_sent = 0
        dest = _fetch(server, tmp_path, _manifest(series))
        assert server.requests[-1] == (ROUTE, f"bytes={half}-")
        assert server.bytes_sent == len(archive) - half
        assert (dest / "1-01.dcm").read_bytes() == series["1-01.dcm"]
        assert not part.exists()

    def test_retry_resumes_within_one_fetch(self, server, series, tmp_path, capsys):
        archive = _zip(series)
        server.routes[ROUTE] = archive
        server.cuts = [len(archive) // 3]
        _fetch(server, tmp_path, _manifest(series), retries=2)
        assert [r for _, r in server.requests] == [None, f"bytes={len(archive) // 3}-"]
        assert server.bytes_sent == len(archive)
        assert "attempt 1 of 3" in capsys.readouterr().out

    def test_server_ignoring_range_restarts_from_zero(self, server, series, tmp_path, capsys):
        archive = _zip(series)
        server.routes[ROUTE] = archive
        server.cuts = [len(archive) // 2]
        with pytest.raises(DatasetError):
            _fetch(server, tmp_path, _manifest(series))
        server.ignore_range, server.bytes_sent = True, 0
        dest = _fetch(server, tmp_path, _manifest(series))
        assert server.requests[-1][1] == f"bytes={len(archive) // 2}-"  # asked...
        assert server.bytes_sent == len(archive)  # ...but got (and kept) the whole file
        assert "ignored the Range request" in capsys.readouterr().out
        assert (dest / "1-02.dcm").read_bytes() == series["1-02.dcm"]

    def test_resumed_archive_that_changed_on_the_server_is_fetched_again(self, server, series, tmp_path, capsys):
        first = _zip(series)
        server.routes[ROUTE] = first
        server.cuts = [len(first) // 2]
        with pytest.raises(DatasetError):
            _fetch(server, tmp_path, _manifest(series))
        # the API regenerates the zip: same files, other order, other bytes
        server.routes[ROUTE] = _zip(dict(reversed(list(series.items()))))
        dest = _fetch(server, tmp_path, _manifest(series))
        assert [r for _, r in server.requests[1:]] == [f"bytes={len(first) // 2}-", None]
        assert "downloading it again from the start" in capsys.readouterr().out
        assert (dest / "1-01.dcm").read_bytes() == series["1-01.dcm"]

    def test_http_error_names_url_and_is_not_retried(self, server, series, tmp_path):
        with pytest.raises(DatasetError, match=re.escape(server.url + ROUTE) + ".*HTTP 404"):
            _fetch(server, tmp_path, _manifest(series), retries=3)
        assert len(server.requests) == 1

    def test_no_content_length(self, server, series, tmp_path):
        server.routes[ROUTE], server.send_length = _zip(series), False
        dest = _fetch(server, tmp_path, _manifest(series), progress=True)
        assert (dest / "1-01.dcm").read_bytes() == series["1-01.dcm"]

    def test_truncated_without_content_length_is_reported(self, server, series, tmp_path):
        archive = _zip(series)
        server.routes[ROUTE], server.send_length, server.cuts = archive, False, [len(archive) // 2]
        with pytest.raises(DatasetError, match="not a complete zip archive.*run the fetch again"):
            _fetch(server, tmp_path, _manifest(series))
        assert not (tmp_path / "data" / "case").exists()

    def test_not_a_zip(self, server, series, tmp_path):
        server.routes[ROUTE] = b"<html>Service unavailable</html>"
        with pytest.raises(DatasetError, match=r"not a complete zip archive; it starts with b'<html>"):
            _fetch(server, tmp_path, _manifest(series))
        assert not (tmp_path / "data" / "case").exists()

    def test_unreachable_mirror_is_retried_then_reported(self, series, tmp_path):
        with _free_port() as port:
            url = f"http://127.0.0.1:{port}"
        with pytest.raises(DatasetError, match=r"failed after 2 attempt\(s\)"):
            hd.fetch("case", dest=tmp_path / "case", manifest=_manifest(series), base_url=url,
                     progress=False, quiet=True, retries=1, backoff=0, timeout=2)
        assert list(tmp_path.iterdir()) == []  # no empty .partial or temporary folders

    def test_unknown_name_lists_the_available_ones(self):
        with pytest.raises(DatasetError, match=r"no dataset called 'nope'.*lung-dx-a0002-b40f"):
            hd.fetch("nope")

    def test_mirror_from_environment(self, server, series, tmp_path, monkeypatch):
        server.routes[ROUTE] = _zip(series)
        monkeypatch.setenv(hd.MIRROR_ENV, server.url)
        hd.fetch("case", dest=tmp_path / "case", manifest=_manifest(series), progress=False,
                 quiet=True, retries=0)
        assert server.requests == [(ROUTE, None)]

    def test_static_mirror_path_and_file_urls(self, series, tmp_path):
        mirror = tmp_path / "mirror"
        (mirror / "case").mkdir(parents=True)
        (mirror / "case" / "ct.zip").write_bytes(_zip(series))
        manifest = _manifest(series, mirror_path="case/ct.zip")
        dest = hd.fetch("case", dest=tmp_path / "out" / "case", manifest=manifest,
                        base_url=mirror.as_uri(), progress=False, quiet=True, retries=0)
        assert (dest / "1-04.dcm").read_bytes() == series["1-04.dcm"]

    def test_several_downloads_go_to_their_subfolders(self, server, series, tmp_path):
        manifest = _manifest(series, subdir="a")
        other = dict(manifest["datasets"]["case"]["downloads"][0], id="b", subdir="b",
                     url=FAKE_URL + "9")
        manifest["datasets"]["case"]["downloads"].append(other)
        server.routes[ROUTE] = server.routes[ROUTE + "9"] = _zip(series)
        dest = _fetch(server, tmp_path, manifest)
        assert {p.parent.name for p in dest.rglob("*.dcm")} == {"a", "b"}
        assert json.loads((dest / hd.MARKER).read_text())["files"] == 2 * len(series)


class TestFetchedCaseLoads:
    def test_load_series_reads_a_fetched_case_without_warnings(self, server, series, tmp_path):
        """The completion marker inside data/NAME must not disturb the loader."""
        import warnings

        from helpers.io import load_series

        server.routes[ROUTE] = _zip(series)
        dest = _fetch(server, tmp_path, _manifest(series))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            vol = load_series(dest)
        assert vol.shape[0] == len(series)
        # the same HU as pydicom's modality LUT on the fetched files, plane by plane in position order
        import pydicom
        from pydicom.pixels import apply_modality_lut

        dss = sorted((pydicom.dcmread(p) for p in dest.glob("*.dcm")), key=lambda d: float(d.ImagePositionPatient[2]))
        ref = np.stack([apply_modality_lut(d.pixel_array, d) for d in dss])
        tissue = ref >= PADDING_BELOW_HU  # padding outside the field of view becomes -1024 HU in the loader
        assert tissue.mean() > 0.5
        np.testing.assert_array_equal(vol.hu[tissue], ref[tissue])


class _free_port:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""

    def __enter__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


class TestRealManifest:
    @pytest.mark.realdata
    def test_manifest_hashes_match_the_shared_tcia_copy(self, real_case, server, tmp_path, capsys):
        manifest = hd.load_manifest()
        for dl in manifest["datasets"]["lung-dx-a0002"]["downloads"]:
            folder = real_case / dl["id"]
            pattern = "*.xml" if dl.get("kind") == "annotations" else "*.dcm"
            server.routes["/" + dl["mirror_path"]] = _zip(
                {f"{dl.get('series_uid', 'A0002')}/{p.name}": p.read_bytes() for p in sorted(folder.glob(pattern))}
            )
        dest = hd.fetch("lung-dx-a0002", dest=tmp_path / "lung-dx-a0002", base_url=server.url,
                        progress=False, retries=0)
        assert len(list(dest.rglob("*.dcm"))) == 60 and len(list(dest.rglob("*.xml"))) == 18
        assert "10.7937/TCIA.2020.NNC2-0461" in capsys.readouterr().out
        assert hd.verify("lung-dx-a0002", dest=dest) == dest

    def test_every_entry_is_cited_licensed_and_points_at_tcia(self):
        for name, entry in hd.load_manifest()["datasets"].items():
            assert entry["licence"] == "CC BY 4.0" and entry["doi"], name
            assert "Lung-PET-CT-Dx" in entry["citation"] and entry["annotations"], name
            boxes = [dl for dl in entry["downloads"] if dl.get("kind") == "annotations"]
            assert len(boxes) == 1 and boxes[0]["subdir"] == "tumour-boxes", name
            assert boxes[0]["url"].startswith("https://www.cancerimagingarchive.net/"), name
            assert all(f["name"].endswith(".xml") for f in boxes[0]["files"]), name
            for dl in entry["downloads"]:
                if dl is boxes[0]:
                    continue
                assert dl["url"].startswith(
                    "https://services.cancerimagingarchive.net/nbia-api/services/v1/getImage?SeriesInstanceUID="
                ) and dl["url"].endswith(dl["series_uid"]), name
                assert len(dl["files"]) == 30, name

    @pytest.mark.realdata
    @pytest.mark.parametrize("name, series_dirs, n_boxes", [
        ("lung-dx-a0002-b40f", ["ct-b40f"], 10),
        ("lung-dx-a0002", ["ct-b40f", "ct-b70f"], 18),
    ])
    def test_tumour_boxes_come_with_the_case(self, real_case, server, tmp_path, name, series_dirs, n_boxes):
        """The annotation archive (every subject) is fetched; this case's boxes land in tumour-boxes/."""
        import warnings

        from helpers.annotations import find_annotations, read_boxes
        from helpers.io import load_series

        entry = hd.load_manifest()["datasets"][name]
        for dl in entry["downloads"]:
            if dl.get("kind") == "annotations":
                members = {f"Lung-PET-CT-Dx-Annotations-XML-Files-rev12222020/Annotation/A0002/{p.name}": p.read_bytes()
                           for p in sorted((real_case / "tumour-boxes").glob("*.xml"))}
                xml = "Lung-PET-CT-Dx-Annotations-XML-Files-rev12222020/Annotation/A0001/1.2.3.xml"
                members[xml] = b"<annotation/>"
            else:
                members = {p.name: p.read_bytes() for p in sorted((real_case / dl["id"]).glob("*.dcm"))}
            server.routes["/" + dl["mirror_path"]] = _zip(members)
        dest = hd.fetch(name, dest=tmp_path / name, base_url=server.url, progress=False, retries=0, quiet=True)
        assert len(list((dest / "tumour-boxes").glob("*.xml"))) == n_boxes
        assert not (dest / "tumour-boxes" / "1.2.3.xml").exists()  # another subject's box: left out
        series = dest / ("ct-b40f" if len(series_dirs) > 1 else "")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the XML files beside the slices disturb nothing
            vol = load_series(series)
        assert find_annotations(series) == dest / "tumour-boxes"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the combined case also holds the B70f boxes
            assert len(read_boxes(find_annotations(series), vol)) == 10

    def test_mirror_rewrites_scheme_and_host_only(self):
        dl = {"url": FAKE_URL}
        assert hd._resolve_url(dl, "http://127.0.0.1:9/tcia/") == (
            "http://127.0.0.1:9/tcia" + ROUTE
        )
        assert hd._resolve_url(dl, None) == FAKE_URL


# --------------------------------------------------------------------------- verify, list, citation


class TestVerify:
    def test_verified_and_tampered(self, server, series, tmp_path):
        server.routes[ROUTE] = _zip(series)
        manifest = _manifest(series)
        dest = _fetch(server, tmp_path, manifest)
        assert hd.verify("case", dest=dest, manifest=manifest) == dest
        (dest / "1-01.dcm").write_bytes(b"x" * len(series["1-01.dcm"]))
        (dest / "1-02.dcm").unlink()
        with pytest.raises(DatasetError, match=r"(?s)2 problem\(s\).*1-01\.dcm: sha256 .*1-02\.dcm: missing"):
            hd.verify("case", dest=dest, manifest=manifest)

    def test_absent(self, series, tmp_path):
        with pytest.raises(DatasetError, match="does not exist; run: python -m helpers.data fetch case"):
            hd.verify("case", dest=tmp_path / "case", manifest=_manifest(series))


class TestListDatasets:
    def test_statuses(self, server, series, tmp_path):
        manifest = _manifest(series)
        rows = hd.list_datasets(manifest=manifest, data_dir=tmp_path / "data")
        assert rows[0]["status"] == "absent" and rows[0]["files"] == len(series)
        server.routes[ROUTE] = _zip(series)
        _fetch(server, tmp_path, manifest)
        assert hd.list_datasets(manifest=manifest, data_dir=tmp_path / "data")[0]["status"] == "present"

    def test_cli_list(self, tmp_path, capsys):
        assert hd.main(["--data-dir", str(tmp_path), "list"]) == 0
        out = capsys.readouterr().out
        for name in ("lung-dx-a0002-b40f", "lung-dx-a0002-b70f", "lung-dx-a0002"):
            assert name in out
        assert "absent" in out and "DATASET=NAME" in out


class TestCitation:
    def test_citation_has_doi_and_licence(self):
        text = hd.citation("lung-dx-a0002-b70f")
        assert "Lung-PET-CT-Dx" in text and "CC BY 4.0" in text
        assert "https://doi.org/10.7937/TCIA.2020.NNC2-0461" in text

    def test_citation_for_path_inside_a_fetched_case(self, server, series, tmp_path):
        server.routes[ROUTE] = _zip(series)
        dest = _fetch(server, tmp_path, _manifest(series))
        assert CITE in hd.citation_for_path(dest / "1-01.dcm")
        assert hd.citation_for_path(tmp_path) is None

    def test_chapters_show_the_citation_of_a_fetched_case(self, server, series, tmp_path, monkeypatch):
        import IPython.display

        from helpers.book.notebook import show_data_source

        shown = []
        monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
        server.routes[ROUTE] = _zip(series)
        dest = _fetch(server, tmp_path, _manifest(series))
        show_data_source(dest)
        show_data_source(tmp_path)  # not a fetched case (the sample, your own folder): nothing
        assert len(shown) == 1
        assert CITE in shown[0]["text/plain"] and "CC BY 4.0" in shown[0]["text/html"]
        chapters = sorted((Path(__file__).parents[1] / "book").glob("0[1-7]*_*.md"))  # 07b_tumour too
        missing = [c.name for c in chapters if "show_data_source(DICOM_DIR)" not in c.read_text()]
        assert len(chapters) == 8 and not missing, missing


class TestLoadManifest:
    @pytest.mark.parametrize(
        "edit, message",
        [
            (lambda f: f.pop("sha256"), "needs a 64-hex-digit 'sha256'"),
            (lambda f: f.update(size="12"), "integer 'size'"),
            (lambda f: f.update(name="../evil.dcm"), "must be a plain name"),
        ],
    )
    def test_bad_file_entries(self, series, edit, message):
        manifest = _manifest(series)
        edit(manifest["datasets"]["case"]["downloads"][0]["files"][0])
        with pytest.raises(DatasetError, match=message):
            hd.load_manifest(manifest)

    def test_missing_file(self, tmp_path):
        with pytest.raises(DatasetError, match="not found"):
            hd.load_manifest(tmp_path / "nope.json")


class TestHashFolder:
    def test_matches_hashlib(self, series, tmp_path):
        for name, blob in series.items():
            (tmp_path / name).write_bytes(blob)
        assert hd.hash_folder(tmp_path) == _files(series)


class TestMain:
    def test_cli_fetch_verify_and_failure(self, server, series, tmp_path, capsys):
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps(_manifest(series)))
        server.routes[ROUTE] = _zip(series)
        base = ["--manifest", str(path), "--data-dir", str(tmp_path / "data")]
        assert hd.main(base + ["fetch", "case", "--mirror", server.url, "--no-progress"]) == 0
        assert "DATASET=case" in capsys.readouterr().out
        assert hd.main(base + ["verify", "case"]) == 0
        (tmp_path / "data" / "case" / "1-01.dcm").unlink()
        assert hd.main(base + ["verify", "case"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "1-01.dcm: missing" in err and "Traceback" not in err


class TestDefaultDicomDir:
    def test_dataset_switch_points_at_data_name(self, monkeypatch, tmp_path):
        """DATASET=NAME is data/NAME under the one data root, helpers.data.DATA_DIR."""
        from helpers import sample

        monkeypatch.setattr(hd, "DATA_DIR", tmp_path / "data")
        monkeypatch.delenv("DICOM_DIR", raising=False)
        monkeypatch.setenv("DATASET", "lung-dx-a0002-b40f")
        with pytest.raises(FileNotFoundError, match=r"python -m helpers.data fetch lung-dx-a0002-b40f"):
            sample.default_dicom_dir()  # not fetched yet: the message says how
        (tmp_path / "data" / "lung-dx-a0002-b40f").mkdir(parents=True)
        assert sample.default_dicom_dir() == tmp_path / "data" / "lung-dx-a0002-b40f"

    def test_chapters_read_a_fetched_case_with_dataset(self, server, series, tmp_path, monkeypatch):
        """fetch -> DATASET=NAME -> default_dicom_dir -> load_series, citation shown."""
        from helpers import sample
        from helpers.io import load_series

        server.routes[ROUTE] = _zip(series)
        dest = _fetch(server, tmp_path, _manifest(series))  # tmp_path/data/case
        monkeypatch.setattr(hd, "DATA_DIR", tmp_path / "data")
        monkeypatch.delenv("DICOM_DIR", raising=False)
        monkeypatch.setenv("DATASET", "case")
        folder = sample.default_dicom_dir()
        assert Path(folder) == dest
        assert load_series(folder).shape[0] == len(series)
        assert CITE in hd.citation_for_path(folder)


class TestPostBuild:
    """The Binder hook: the student notebooks and Jupyter settings always; the prefetch is opt-in
    and never fails the build (no network used here)."""

    def _run(self, repo, tmp_path, **env):
        import subprocess
        import sys

        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        full = {"PATH": path, "HOME": os.environ.get("HOME", str(tmp_path)), "NOTEBOOK_DIR": str(tmp_path / "nb"),
                "JUPYTER_PREFIX": str(tmp_path / "env"), **env}
        return subprocess.run(["bash", str(repo / "postBuild")], env=full, capture_output=True,
                              text=True, timeout=120)

    def test_no_prefetch_unless_asked(self, repo, tmp_path):
        done = self._run(repo, tmp_path)
        assert done.returncode == 0, done.stderr
        assert "postBuild: prefetching" not in done.stdout
        assert re.search(r"\d+ notebooks written", done.stdout), done.stdout
        assert (tmp_path / "nb" / "02_normalize.ipynb").is_file()
        assert (tmp_path / "env" / "etc" / "jupyter" / "jupyter_server_config.json").is_file()

    def test_a_failed_prefetch_is_a_note_not_an_error(self, repo, tmp_path):
        done = self._run(repo, tmp_path, HELPERS_PREFETCH_DATASET="no-such-case")
        assert done.returncode == 0
        assert "note: could not prefetch no-such-case" in done.stdout
        assert "no dataset called 'no-such-case'" in done.stderr
