"""Tests for helpers.display: montage, orthogonal views, overlay and slice viewers."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from helpers.display import (
    axis_letters,
    montage,
    orthogonal_views,
    overlay,
    plane_image,
    slice_viewer,
    still_png,
    widget_viewer,
    widget_with_still,
)
from helpers.volume import Volume

HEAD_FIRST = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])  # z axis points to the feet


@pytest.fixture(scope="module")
def vol():
    """Thin-slice phantom: a bright block in the anterior right of the upper slices."""
    hu = np.full((40, 48, 64), -1000, np.int16)
    hu[:, 8:40, 8:56] = 40  # body
    hu[30:, 10:20, 10:20] = 1000  # marker: superior (high k), anterior (low j), right (low i)
    return Volume(hu, spacing=(2.5, 0.7, 0.7), origin=(-20.0, -15.0, 100.0))


def _tiles(fig):
    return [ax for ax in fig.axes if ax.images]


class TestAxisLetters:
    def test_default_and_flipped(self):
        assert axis_letters(np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]])) == [("I", "S"), ("A", "P"), ("R", "L")]
        assert axis_letters(HEAD_FIRST)[0] == ("S", "I")


class TestPlaneImage:
    def test_coronal_superior_up(self, vol):
        p = plane_image(vol, "coronal", 14)
        img = p["image"]
        assert img.shape == (40, 64) and p["top"] == "S" and p["left"] == "R"
        # marker is in slices 30+ (superior) -> after the flip it is in the top rows
        assert img[:10, 10:20].mean() == 1000 and img[-10:, 10:20].max() < 1000

    def test_head_first_not_flipped(self, vol):
        v = vol.with_array(vol.hu, direction=HEAD_FIRST)
        p = plane_image(v, "coronal", 14)
        assert p["top"] == "S" and not p["flip_rows"]
        assert p["image"][-10:, 10:20].mean() == 1000  # k high is now inferior: bottom of the image

    def test_errors(self, vol):
        with pytest.raises(ValueError, match="plane must be one of"):
            plane_image(vol, "oblique")
        with pytest.raises(ValueError, match="coronal index 99 is outside 0..47"):
            plane_image(vol, "coronal", 99)


class TestMontage:
    @pytest.mark.parametrize("rows,cols", [(1, 1), (2, 3), (3, 7), (6, 6), (5, 2)])
    def test_any_grid(self, vol, rows, cols):
        fig = montage(vol, rows=rows, cols=cols)
        assert len(fig.axes) == rows * cols
        assert len(_tiles(fig)) == min(rows * cols, vol.shape[0])

    def test_more_tiles_than_slices(self, vol):
        fig = montage(vol.with_array(vol.hu[:5], spacing=vol.spacing), rows=3, cols=4)
        assert len(_tiles(fig)) == 5 and len(fig.axes) == 12

    def test_evenly_spaced_first_and_last(self, vol):
        fig = montage(vol, rows=2, cols=2)
        labels = [ax.texts[0].get_text().split("\n")[0] for ax in _tiles(fig)]
        assert labels == ["0", "13", "26", "39"]

    def test_label_has_position_mm(self, vol):
        fig = montage(vol, rows=1, cols=2, start=4, stop=6)
        text = _tiles(fig)[0].texts[0].get_text()
        assert text == "4\n+110.0 mm"  # origin z 100 + 4 * 2.5

    def test_step(self, vol):
        fig = montage(vol, rows=None, cols=4, step=10)
        assert [ax.texts[0].get_text().split("\n")[0] for ax in _tiles(fig)] == ["0", "10", "20", "30"]

    def test_step_too_many(self, vol):
        with pytest.raises(ValueError, match="gives 40 slices but the grid has 2 x 3 = 6 tiles"):
            montage(vol, rows=2, cols=3, step=1)

    def test_aspect_from_spacing(self):
        v = Volume(np.zeros((3, 10, 10)), spacing=(1, 0.5, 1.0))
        ax = _tiles(montage(v, rows=1, cols=1))[0]
        assert ax.get_aspect() == pytest.approx(0.5)

    def test_bad_range(self, vol):
        with pytest.raises(ValueError, match="slice range start=30, stop=10"):
            montage(vol, start=30, stop=10)

    def test_mask_window_none(self, vol):
        mask = (vol.hu > 0).astype(np.uint8)
        fig = montage(vol.with_array(mask), rows=1, cols=2, window=None)
        assert "min-max" in fig._suptitle.get_text()
        # the values shown: min-max scaling maps the mask's 0 and 1 to black and white, pixel for pixel
        first = np.asarray(_tiles(fig)[0].images[0].get_array(), dtype=float)
        assert first.shape == mask[0].shape and set(np.unique(first)) == {0.0, 1.0}
        np.testing.assert_array_equal(first, mask[0])  # axial, default orientation: no flip


class TestOrthogonalViews:
    def test_aspects_and_letters(self, vol):
        fig = orthogonal_views(vol)
        axes = fig.axes
        assert [round(a.get_aspect(), 3) for a in axes] == [1.0, round(2.5 / 0.7, 3), round(2.5 / 0.7, 3)]
        letters = [sorted(t.get_text() for t in a.texts) for a in axes]
        assert letters == [["A", "L", "P", "R"], ["I", "L", "R", "S"], ["A", "I", "P", "S"]]

    def test_point_outside(self, vol):
        with pytest.raises(ValueError, match=r"point \(40, 0, 0\) .* outside the volume of shape \(40, 48, 64\)"):
            orthogonal_views(vol, point=(40, 0, 0))

    def test_crosshair_follows_flip(self, vol):
        fig = orthogonal_views(vol, point=(35, 15, 15))
        cor = fig.axes[1]
        hline = cor.lines[0]  # axhline is drawn first
        assert hline.get_ydata()[0] == 40 - 1 - 35  # superior slice drawn near the top


class TestOverlay:
    def test_default_index_is_largest(self, vol):
        lab = np.zeros(vol.shape, np.uint8)
        lab[5, 10:30, 10:30] = 1
        lab[20, 10:12, 10:12] = 2
        fig = overlay(vol, lab, legend={1: "big", 2: "small"})
        ax = fig.axes[0]
        assert ax.get_title().startswith("axial k=5;")
        names = [t.get_text() for t in ax.get_legend().get_texts()]
        assert names == ["big", "small (not on this slice)"]

    def test_shape_mismatch(self, vol):
        with pytest.raises(ValueError, match="mask/labels shape .* differs"):
            overlay(vol, np.zeros((2, 2, 2)))

    def test_bool_mask_coronal(self, vol):
        fig = overlay(vol, vol.hu > 500, plane="coronal")
        assert fig.axes[0].get_title().startswith("coronal j=")


class TestSliceViewer:
    def test_slider_and_size(self, vol):
        fig = slice_viewer(vol, max_slices=10)
        steps = fig.layout.sliders[0].steps
        assert len(steps) == 10 and steps[0].label == "0" and steps[-1].label == "39"
        assert steps[0].args[0]["source"][0].startswith("data:image/jpeg;base64,")
        assert len(fig.to_html(include_plotlyjs=False)) < 200_000

    def test_square_pixels_and_max_size(self, vol):
        fig = slice_viewer(vol, axis=1, max_size_px=32, image_format="png")
        img = fig.data[0]
        assert img.dx == img.dy  # resampled to square pixels
        import base64
        import io

        from PIL import Image

        src = img.source.split(",", 1)[1]
        w, h = Image.open(io.BytesIO(base64.b64decode(src))).size
        assert max(w, h) <= 32
        assert h / w == pytest.approx((40 * 2.5) / (64 * 0.7), rel=0.1)

    def test_title_has_position(self, vol):
        fig = slice_viewer(vol, max_slices=40)
        assert "axial slice 0 (z = +100.0 mm)" in fig.layout.sliders[0].steps[0].args[1]["title.text"]

    def test_errors(self, vol):
        with pytest.raises(ValueError, match="axis must be 0"):
            slice_viewer(vol, axis=3)
        with pytest.raises(ValueError, match="image_format must be"):
            slice_viewer(vol, image_format="gif", max_slices=2)


class TestWidgetViewer:
    def test_controls_update_image(self, vol):
        w = widget_viewer(vol)
        first = bytes(w.image.value)
        w.slider.value = 35
        assert bytes(w.image.value) != first
        w.dropdown.value = "bone"
        assert w.slider.max == 39

    def test_custom_window(self, vol):
        w = widget_viewer(vol, window=(0, 200))
        assert w.dropdown.value == (0.0, 200.0)

    def test_with_still(self, vol):
        w, png = widget_with_still(vol, index=3)
        assert png[:4] == b"\x89PNG" and w.slider.value == 3
        assert png == still_png(vol, index=3)


class TestCheckAspect:
    """Chapter 5 exercise checkers (helpers.book.checks)."""

    def test_planes(self, vol):
        from helpers.book.checks import check_aspect

        assert check_aspect(2.5 / 0.7, vol, "coronal").ok and check_aspect(1.0, vol, "axial").ok
        assert check_aspect(0.7 / 2.5, vol, "sagittal").ok is False


class TestCheckSliceAt:
    def test_nearest(self, vol):
        from helpers.book.checks import check_slice_at

        assert check_slice_at(4, vol, 110.4).ok  # origin z 100, 2.5 mm slices
        assert check_slice_at(5, vol, 110.4).ok is False


# ------------------------------------------------------------------ legible at the book's width, alt text
PAGE_PX = 688  # the book's content column (CSS px)
DPI = 90  # helpers.book.notebook.MPL_DEFAULTS["figure.dpi"]
MIN_TEXT_PX = 10


def _png_size(fig):
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return Image.open(io.BytesIO(buf.getvalue())).size


def _smallest_text_px(fig):
    """Smallest font of any text on the figure, in px as the page shows it (shrunk when too wide)."""
    width = _png_size(fig)[0]
    shrink = min(1.0, PAGE_PX / width)
    sizes = [t.get_fontsize() for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text"))
             if t.get_text().strip()]
    return min(sizes) * DPI / 72 * shrink


class TestLegibleAtPageWidth:
    """Drawn at the column's width, so text shows at its size in points (it was ~6 px)."""

    def test_orthogonal_views(self, vol):
        fig = orthogonal_views(vol)
        assert _png_size(fig)[0] <= PAGE_PX + 10
        assert _smallest_text_px(fig) >= MIN_TEXT_PX

    @pytest.mark.parametrize("rows,cols", [(4, 6), (2, 3), (4, 5)])
    def test_montage(self, vol, rows, cols):
        fig = montage(vol, rows=rows, cols=cols)
        assert _png_size(fig)[0] <= PAGE_PX + 20
        assert _smallest_text_px(fig) >= MIN_TEXT_PX

    def test_overlay(self, vol):
        lab = np.zeros(vol.shape, np.uint8)
        lab[5, 10:30, 10:30] = 1
        assert _smallest_text_px(overlay(vol, lab, legend={1: "lesion"})) >= MIN_TEXT_PX

    def test_slice_viewer_fills_its_column(self, vol):
        fig = slice_viewer(vol, max_slices=3)
        assert fig.layout.width is None and fig.layout.autosize  # no fixed width: shrinks on a phone


class TestAltText:
    def test_views_say_what_they_show(self, vol):
        from helpers.display import alt_text

        assert alt_text(montage(vol, rows=1, cols=3)).startswith("Montage of 3 of the 40 axial slices")
        assert "+100.0" in alt_text(montage(vol, rows=1, cols=3))  # positions in mm, from the volume
        text = alt_text(orthogonal_views(vol, point=(35, 15, 15)))
        assert "(35, 15, 15)" in text and "lung window" in text
        lab = np.zeros(vol.shape, np.uint8)
        lab[5, 10:30, 10:30] = 1
        text = alt_text(overlay(vol, lab, legend={1: "lesion"}))
        assert text.startswith("Axial slice k = 5") and "lesion (orange)" in text

    def test_made_from_titles_when_not_set(self):
        from matplotlib.figure import Figure

        from helpers.display import alt_text

        fig = Figure()
        a, b = fig.subplots(1, 2)
        a.set_title("HU")
        b.set_title("[0, 1]")
        b.set_xlabel("value (no unit)")
        assert alt_text(fig) == "Figure: 2 panels: HU; [0, 1] (x axis: value (no unit))."

    def test_png_carries_it_in_ipython(self, vol):
        """The formatter returns (png, {"alt": ...}): Jupyter stores it as the output's metadata."""
        from IPython.core.interactiveshell import InteractiveShell
        from matplotlib.figure import Figure

        from helpers.display import register_alt_text, set_alt_text

        shell = InteractiveShell.instance()
        try:
            png = shell.display_formatter.formatters["image/png"]
            png.for_type(Figure, lambda fig: b"PNG")
            assert register_alt_text(shell)
            assert register_alt_text(shell)  # twice: wrapped once
            data, md = shell.display_formatter.format(set_alt_text(Figure(), "A grey square."))
            assert data["image/png"] == b"PNG" and md["image/png"] == {"alt": "A grey square."}
        finally:
            InteractiveShell.clear_instance()

    def test_widget_still(self, vol):
        from helpers.display import ALT_TEXT_ATTR

        w = widget_viewer(vol, index=3)
        assert getattr(w, ALT_TEXT_ATTR).startswith("Still image of axial slice 3 of 40 (z = +107.5 mm)")


class TestTable:
    def test_discussed_columns_first_and_uid_wraps(self):
        from types import SimpleNamespace

        from helpers.display import table

        rows = [SimpleNamespace(series_number=2, modality="CT", description="chest", slices=120, series_uid="1.2.3")]
        t = table(rows, first=["description", "slices", "series_uid"])
        assert t.columns == ["description", "slices", "series_uid", "series_number", "modality"]
        assert "overflow-wrap:anywhere" in t._repr_html_()
