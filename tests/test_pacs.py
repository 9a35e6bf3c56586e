"""helpers.pacs against a real Orthanc on 127.0.0.1 (skipped when Orthanc is not installed)."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest

from helpers import pacs
from helpers.errors import DicomSeriesError
from helpers.io import load_series
from helpers.testing import factory as F

needs_orthanc = pytest.mark.skipif(pacs.find_orthanc() is None, reason="Orthanc is not installed")


class TestWithoutOrthanc:
    def test_chapter_cells_become_no_ops(self, monkeypatch, capsys):
        import IPython
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell()
        monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
        monkeypatch.setattr(pacs, "find_orthanc", lambda: None)
        assert pacs.skip_cells_without_orthanc() is False
        assert "Orthanc is not installed" in capsys.readouterr().out
        shell.run_cell("server = 1 / 0")
        assert "server" not in shell.user_ns

    def test_orthanc_server_says_how_to_install(self, monkeypatch):
        monkeypatch.setattr(pacs, "find_orthanc", lambda: None)
        with pytest.raises(pacs.OrthancNotInstalled, match="orthanc-dicomweb"):
            with pacs.orthanc_server():
                pass


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("series")
    F.write(F.clean_datasets(), d)
    return d


@pytest.fixture(scope="module")
def server(tmp_path_factory, series_dir):
    with pacs.orthanc_server(workdir=tmp_path_factory.mktemp("orthanc")) as p:
        assert pacs.c_store(series_dir, p) == F.N
        yield p


@pytest.fixture(scope="module")
def uids(series_dir):
    ds = pydicom.dcmread(next(series_dir.iterdir()))
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


@needs_orthanc
class TestOrthancServer:
    def test_running_on_localhost_with_generated_password(self, server):
        assert server.host == "127.0.0.1" and server.pid > 0
        assert len(server.password) >= 16 and "password" not in repr(server)
        assert pacs.c_echo(server)

    def test_stopped_and_cleaned(self, tmp_path):
        with pacs.orthanc_server(workdir=tmp_path / "o") as p:
            pid = p.pid
        import os

        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert not (tmp_path / "o" / "db").exists() and not (tmp_path / "o" / "orthanc.json").exists()


@needs_orthanc
class TestQuery:
    def test_qido_and_cfind_agree(self, server, uids):
        web = pacs.qido(server, "SERIES", StudyInstanceUID=uids[0])
        dimse = pacs.c_find(server, "SERIES", StudyInstanceUID=uids[0])
        assert [r["SeriesInstanceUID"] for r in web] == [r["SeriesInstanceUID"] for r in dimse] == [uids[1]]
        assert web[0]["NumberOfSeriesRelatedInstances"] == dimse[0]["NumberOfSeriesRelatedInstances"] == str(F.N)

    def test_keys_a_resident_types(self, server):
        assert pacs.c_find(server, "STUDY", PatientID="F0001")
        assert pacs.qido(server, "STUDY", PatientName="Factory*")
        assert pacs.c_find(server, "SERIES", Modality="CT", SeriesDescription="clean*")
        assert pacs.c_find(server, "PATIENT", PatientID="F0001")

    def test_nothing_matches(self, server):
        with pytest.raises(DicomSeriesError, match=r"C-FIND at STUDY level \(PatientID=\(hidden\)\).*nothing matched"):
            pacs.c_find(server, "STUDY", PatientID="NOPE")
        with pytest.raises(DicomSeriesError, match="QIDO-RS GET /studies.*nothing matched"):
            pacs.qido(server, "STUDY", PatientID="NOPE")
        assert pacs.qido(server, "STUDY", PatientID="NOPE", allow_empty=True) == []
        with pytest.raises(DicomSeriesError, match=r"\(SeriesDescription='nope\*', PatientID=\(hidden\)\)") as err:
            pacs.c_find(server, "SERIES", SeriesDescription="nope*", PatientID="F0001")
        assert "F0001" not in str(err.value)  # identifiers stay out of messages (they end up in logs)

    def test_bad_keyword(self, server):
        with pytest.raises(DicomSeriesError, match="not DICOM keywords"):
            pacs.c_find(server, "STUDY", PatientId="F0001")


@needs_orthanc
class TestRetrieve:
    @pytest.mark.parametrize("route", ["wado", "cget"])
    def test_series_to_folder(self, server, uids, series_dir, tmp_path, route):
        fn = pacs.wado_series if route == "wado" else pacs.c_get_series
        out = fn(server, *uids, tmp_path / route)
        assert len(list(out.iterdir())) == F.N
        assert [p.name for p in tmp_path.iterdir()] == [route]  # no temporary folder left
        a, b = load_series(series_dir), load_series(out)
        assert np.array_equal(a.hu, b.hu) and a.spacing == b.spacing

    def test_existing_folder_refused(self, server, uids, tmp_path):
        (tmp_path / "x").mkdir()
        with pytest.raises(DicomSeriesError, match="already exists"):
            pacs.c_get_series(server, *uids, tmp_path / "x")

    def test_unknown_series(self, server, uids, tmp_path):
        with pytest.raises(DicomSeriesError, match="no such series"):
            pacs.wado_series(server, uids[0], "1.2.3.4", tmp_path / "w")
        with pytest.raises(DicomSeriesError, match="no such series"):
            pacs.c_get_series(server, uids[0], "1.2.3.4", tmp_path / "g")
        assert list(tmp_path.iterdir()) == []

    def test_wado_cut_off_half_way(self, server, uids, tmp_path):
        class Truncating:
            """A client whose multipart stream ends after 5 instances."""

            def __init__(self, real):
                self.real = real

            def __getattr__(self, name):
                return getattr(self.real, name)

            def iter_series(self, *a, **k):
                for i, ds in enumerate(self.real.iter_series(*a, **k)):
                    if i == 5:
                        return
                    yield ds

        client = Truncating(pacs.dicomweb_client(server))
        with pytest.raises(DicomSeriesError, match=f"5 of {F.N} instances arrived.*partial copy was deleted"):
            pacs.wado_series(server, *uids, tmp_path / "w", client=client)
        assert list(tmp_path.iterdir()) == []

    def test_cget_cut_off_half_way(self, server, uids, tmp_path, monkeypatch):
        real, calls = pacs._write_instance, []

        def failing(ds, folder):
            calls.append(1)
            if len(calls) > 5:
                raise OSError("No space left on device")
            return real(ds, folder)

        monkeypatch.setattr(pacs, "_write_instance", failing)
        with pytest.raises(DicomSeriesError, match="instances failed.*No space left.*partial copy was deleted"):
            pacs.c_get_series(server, *uids, tmp_path / "g")
        assert list(tmp_path.iterdir()) == []


@needs_orthanc
class TestSegRoundTrip:
    def test_seg_stored_found_retrieved_and_overlays_the_ct(self, server, uids, series_dir, tmp_path):
        """The SEG goes back by STOW-RS, is found as a series of the same study, comes back by WADO-RS,
        and highdicom reads each frame onto the CT image it references."""
        import highdicom as hd

        from helpers.export import save_dicom_seg

        vol = load_series(series_dir)
        mask = np.zeros(vol.shape, np.uint8)
        mask[5:15, 10:40, 20:50] = 1
        seg_file = save_dicom_seg(mask, vol, tmp_path / "seg.dcm", legend={0: "background", 1: "lung"})
        pacs.stow(seg_file, server)
        found = pacs.qido(server, "SERIES", study_uid=uids[0], Modality="SEG")
        assert len(found) == 1 and found[0]["StudyInstanceUID"] == uids[0]
        back = pacs.wado_series(server, uids[0], found[0]["SeriesInstanceUID"], tmp_path / "back")
        seg = hd.seg.segread(next(back.iterdir()))
        sops = vol.meta["sop_instance_uids"]
        planes = seg.get_pixels_by_source_instance(source_sop_instance_uids=sops, segment_numbers=[1],
                                                   ignore_spatial_locations=True)
        assert np.array_equal(planes[..., 0], mask)


@needs_orthanc
class TestStow:
    def test_stored_and_found_again(self, server, uids, series_dir, tmp_path):
        ds = pydicom.dcmread(next(series_dir.iterdir()))
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.SeriesDescription = "stowed"
        assert pacs.stow([ds], server) == [ds.SOPInstanceUID]
        found = pacs.qido(server, "SERIES", study_uid=uids[0], SeriesDescription="stowed")
        assert [r["SeriesInstanceUID"] for r in found] == [ds.SeriesInstanceUID]


@needs_orthanc
class TestBadServer:
    def test_unreachable(self, server):
        gone = pacs.Orthanc("127.0.0.1", pacs._free_port(), pacs._free_port(), "ORTHANC", "u", "p")
        with pytest.raises(DicomSeriesError, match=r"QIDO-RS GET /studies.*127\.0\.0\.1.*connection refused"):
            pacs.qido(gone)
        with pytest.raises(DicomSeriesError, match="C-ECHO: no DICOM association with ORTHANC@127.0.0.1.*firewall"):
            pacs.c_echo(gone, timeout_s=2)

    def test_wrong_credentials(self, server):
        with pytest.raises(DicomSeriesError, match="HTTP 401.*credentials"):
            pacs.qido(server, client=pacs.dicomweb_client(server, password="wrong"))

    def test_unknown_calling_ae(self, server):
        with pytest.raises(DicomSeriesError,
                           match="rejected the association from calling AE 'STRANGER'.*registered your AE title"):
            pacs.c_find(server, "STUDY", PatientID="F0001", local_aet="STRANGER")

    def test_wrong_called_ae(self, server):
        other = pacs.Orthanc(server.host, server.http_port, server.dicom_port, "NOTORTHANC", "u", "p")
        with pytest.raises(DicomSeriesError, match="rejected the association.*called AE title is 'NOTORTHANC'"):
            pacs.c_echo(other)

    def test_malformed_dicomweb_answer(self):
        class LoginPage(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"<html>Please log in</html>"
                self.send_response(200)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LoginPage)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            fake = pacs.Orthanc("127.0.0.1", httpd.server_address[1], 1, "ORTHANC", "u", "p")
            with pytest.raises(DicomSeriesError, match="not valid DICOMweb.*login page"):
                pacs.qido(fake, PatientID="F0001")
        finally:
            httpd.shutdown()
            httpd.server_close()
