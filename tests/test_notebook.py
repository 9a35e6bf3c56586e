"""helpers.book.notebook: the chapters' set-up and display helpers, checked by value."""

import base64
import io
import json
import subprocess
import sys
import tempfile
import warnings

import matplotlib
import numpy as np
import pydicom
import pytest
from conftest import REPO
from PIL import Image

from helpers.book import notebook as nb
from helpers.errors import SeriesWarning
from helpers.testing import factory

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture
def series(tmp_path):
    """Four factory slices on disk (64 x 64, 2.5 mm)."""
    return factory.write(factory.clean_datasets(n=4), tmp_path / "series")


@pytest.fixture
def scratch_in_tmp(tmp_path, monkeypatch):
    """scratch_folder's folders go to tmp_path, never the system temp folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield tmp_path
    nb.remove_scratch()


@pytest.fixture
def shown(monkeypatch):
    """What the helpers pass to IPython's display(), in order; ``shown.metadata`` the metadata."""
    import IPython.display

    class Calls(list):
        metadata: list = []

    calls = Calls()
    calls.metadata = []

    def display(obj, raw=False, metadata=None):
        calls.append((obj, raw))
        calls.metadata.append(metadata)

    monkeypatch.setattr(IPython.display, "display", display)
    return calls


class TestImport:
    def test_importing_changes_nothing(self):
        code = ("import warnings, matplotlib as mpl, plotly.io as pio\n"
                "renderer, dpi, fmt = pio.renderers.default, mpl.rcParams['figure.dpi'], warnings.formatwarning\n"
                "import helpers.book.notebook\n"
                "print(pio.renderers.default == renderer, 'book' in pio.renderers, "
                "mpl.rcParams['figure.dpi'] == dpi, warnings.formatwarning is fmt)")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["True", "False", "True", "True"]


class TestSetup:
    def test_plotly_renderer_emits_a_div_without_plotly_js(self):
        import plotly.graph_objects as go
        import plotly.io as pio

        before = pio.renderers.default
        try:
            nb.setup(matplotlib=False)
            assert pio.renderers.default == nb.RENDERER_NAME == "book"
            fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
            bundle = pio.renderers["book"].to_mimebundle(fig.to_dict())
        finally:
            pio.renderers.default = before
        html = bundle["text/html"]
        assert 'class="plotly-graph-div"' in html
        assert "<script" in html and "plotly.js v" not in html  # the init script, never the 3 MB library
        assert len(html) < 20_000
        assert bundle["application/vnd.plotly.v1+json"]["data"][0]["y"] == [3, 4]

    def test_matplotlib_defaults_outside_a_kernel(self):
        fmt = warnings.formatwarning
        with matplotlib.rc_context():
            nb.setup(plotly=False)
            assert matplotlib.rcParams["figure.dpi"] == nb.MPL_DEFAULTS["figure.dpi"] == 90
            assert tuple(matplotlib.rcParams["figure.figsize"]) == (8.0, 4.0)
            assert matplotlib.rcParams["image.cmap"] == "gray"
        assert warnings.formatwarning is fmt  # only a kernel gets the short warning format

    def test_warning_format_is_one_wrapped_paragraph(self):
        text = nb._format_warning("gap of 5.0 mm between slices 11 and 12 " * 4, SeriesWarning, "io.py", 1)
        lines = text.rstrip("\n").split("\n")
        assert lines[0].startswith("SeriesWarning: gap of 5.0 mm")
        assert len(lines) == 3
        assert all(len(line) <= nb.WARNING_WIDTH for line in lines)
        assert all(line.startswith("    ") for line in lines[1:])
        assert "io.py" not in text


class TestFigurePng:
    def test_size_follows_inches_and_dpi(self):
        fig = plt.figure(figsize=(2, 1))
        png = nb.figure_png(fig, dpi=50)
        assert Image.open(io.BytesIO(png)).size == (100, 50)
        assert not plt.fignum_exists(fig.number)

    def test_close_false_keeps_the_figure(self):
        fig = plt.figure(figsize=(1, 1))
        nb.figure_png(fig, dpi=20, close=False)
        assert plt.fignum_exists(fig.number)
        plt.close(fig)


class TestWidgets:
    def test_bundle_carries_the_widget_and_the_still(self):
        import ipywidgets as w

        slider = w.IntSlider()
        b = nb.widget_bundle(slider, b"\x89PNG fake")
        assert base64.b64decode(b["image/png"]) == b"\x89PNG fake"
        assert b["application/vnd.jupyter.widget-view+json"]["model_id"] == slider.model_id
        assert "static page shows a still image" in b["text/plain"]

    def test_show_widget_displays_the_raw_bundle(self, shown):
        import ipywidgets as w

        nb.show_widget(w.IntSlider(), b"\x89PNG", alt="A grey square.")
        (obj, raw), = shown
        assert raw is True and base64.b64decode(obj["image/png"]) == b"\x89PNG"
        assert shown.metadata == [{"image/png": {"alt": "A grey square."}}]

    def test_window_level_viewer_redraws_when_a_slider_moves(self):
        hu = np.tile(np.linspace(-1000.0, 1000.0, 64), (8, 1))
        box, first = nb.window_level_viewer(hu, level=0.0, width=2000.0)
        level, width, image = box.children
        img = np.asarray(Image.open(io.BytesIO(first)))
        assert img.shape == (8, 64) and img.dtype == np.uint8
        assert img[0, 0] == 0 and img[0, -1] == 255 and 120 <= img[0, 32] <= 135  # -1000, +1000, ~0 HU
        assert image.value == first
        level.value = 1000  # the window is now 0..2000 HU: below 0 is black, +1000 HU mid-grey
        moved = np.asarray(Image.open(io.BytesIO(image.value)))
        assert moved[0, 31] == 0 and 120 <= moved[0, -1] <= 135


class TestDataSource:
    def test_nothing_for_a_folder_of_your_own(self, tmp_path, shown):
        nb.show_data_source(tmp_path)
        assert shown == []

    def test_citation_of_a_fetched_case_is_escaped(self, tmp_path, shown, monkeypatch):
        import helpers.data

        monkeypatch.setattr(helpers.data, "citation_for_path", lambda path: "Li & al. <2020>, CC BY 4.0")
        nb.show_data_source(tmp_path)
        (obj, raw), = shown
        assert obj["text/plain"] == "Data: Li & al. <2020>, CC BY 4.0"
        assert "Li &amp; al. &lt;2020&gt;" in obj["text/html"] and raw is True


class TestHeaderTable:
    def test_values_tags_and_absent(self, series):
        ds = pydicom.dcmread(series[0], stop_before_pixels=True)
        t = nb.header_table(ds, [("Modality", "m"), ("PixelSpacing", "p"), ("PixelPaddingValue", "pad")])
        assert t.rows == [("(0008,0060)", "Modality", "CT", "m"),
                          ("(0028,0030)", "PixelSpacing", "[0.7, 0.7]", "p"),
                          ("(0028,0120)", "PixelPaddingValue", "(absent)", "pad")]

    def test_long_values_are_shortened(self, series):
        ds = pydicom.dcmread(series[0], stop_before_pixels=True)
        (row,) = nb.header_table(ds, [("SeriesInstanceUID", "uid")], max_chars=12).rows
        assert row[2] == str(ds.SeriesInstanceUID)[:11] + "…"

    def test_patient_tags_never_shown_even_when_asked(self, series):
        ds = pydicom.dcmread(series[0], stop_before_pixels=True)
        ds.PatientName, ds.PatientID = "Doe^Jane", "12345"
        t = nb.header_table(ds, [("PatientName", "n"), ("PatientID", "i"), *nb.HEADER_TAGS])
        shown_text = repr(t) + t._repr_html_()
        assert "Doe" not in shown_text and "12345" not in shown_text
        assert [r[1] for r in t.rows] == [k for k, _ in nb.HEADER_TAGS]

    def test_text_columns_line_up_and_html_is_escaped(self):
        t = nb.HeaderTable([("(0001,0001)", "A", "<b>", "x"), ("(0001,0002)", "Longer", "v", "y")])
        first, second = repr(t).split("\n")
        assert first.index("<b>") == second.index("v ")
        assert "&lt;b&gt;" in t._repr_html_() and "<b>" not in t._repr_html_()


class TestScratch:
    def test_links_with_new_names_and_removal(self, series, scratch_in_tmp):
        d = nb.scratch_folder(series[:2], names=["b", "a"], prefix="test-scratch-")
        assert d.parent == scratch_in_tmp and d.name.startswith("test-scratch-")
        assert sorted(p.name for p in d.iterdir()) == ["a", "b"]
        assert (d / "b").read_bytes() == series[0].read_bytes()
        nb.remove_scratch()
        assert not d.exists()
        assert all(f.is_file() for f in series)  # the sources are never touched

    def test_names_must_match_files(self, series, scratch_in_tmp):
        with pytest.raises(ValueError, match="1 names for 2 files"):
            nb.scratch_folder(series[:2], names=["a"])


class TestSecondSeries:
    def test_same_positions_new_series(self, series, tmp_path):
        out = tmp_path / "study"
        out.mkdir()
        written = nb.add_second_series(out, series, description="sharp kernel")
        assert [p.name for p in written] == [f"second_{i:04d}.dcm" for i in (1, 2, 3, 4)]
        src = [pydicom.dcmread(f) for f in series]
        new = [pydicom.dcmread(f) for f in written]
        assert len({d.SeriesInstanceUID for d in new}) == 1
        assert new[0].SeriesInstanceUID != src[0].SeriesInstanceUID
        assert len({d.SOPInstanceUID for d in new} | {d.SOPInstanceUID for d in src}) == 8
        assert [d.InstanceNumber for d in new] == [1, 2, 3, 4]
        assert {d.SeriesDescription for d in new} == {"sharp kernel"}
        assert [list(d.ImagePositionPatient) for d in new] == [list(d.ImagePositionPatient) for d in src]
        assert all(d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID for d in new)


class TestSampleTruth:
    def _sample(self, folder, shape):
        lungs = np.zeros(shape, np.uint8)
        lungs[1:3, 2:6, 2:5], lungs[1:3, 2:6, 8:11] = 1, 2
        tissue = np.zeros(shape, np.uint8)
        tissue[2, 3:5, 3:5] = 7
        (folder / "dicom").mkdir(parents=True)
        np.savez(folder / "labels.npz", lungs=lungs, tissue=tissue)
        (folder / "labels.json").write_text(json.dumps({"legend": {"tumour": 7, "nodule": 8}}))
        return folder / "dicom"

    def test_truth_of_the_sample(self, tmp_path):
        from helpers.volume import Volume

        dicom = self._sample(tmp_path / "sample", (4, 8, 12))
        truth = nb.sample_truth(dicom, Volume(np.zeros((4, 8, 12), np.int16), spacing=(2.5, 0.7, 0.7)))
        assert truth["tumour"].sum() == 4 and not truth["nodule"].any()
        assert truth["tumour_index"] == (2, 4, 4)  # centre of rows 3-4, columns 3-4, rounded half to even
        assert np.count_nonzero(truth["lungs"] == 2) == 24

    def test_none_for_other_data_or_another_shape(self, tmp_path):
        from helpers.volume import Volume

        dicom = self._sample(tmp_path / "sample", (4, 8, 12))
        assert nb.sample_truth(dicom, Volume(np.zeros((4, 8, 13), np.int16), spacing=(1, 1, 1))) is None
        (tmp_path / "own" / "dicom").mkdir(parents=True)
        assert nb.sample_truth(tmp_path / "own" / "dicom", Volume(np.zeros((4, 8, 12)), spacing=(1, 1, 1))) is None
