"""helpers.annotations: tumour boxes (PASCAL-VOC XML, CSV/JSON in voxels or mm) on a Volume."""
import json
import warnings

import numpy as np
import pytest

from helpers import DicomSeriesError, SeriesWarning, load_series
from helpers.annotations import (
    box_iou,
    boxes_table,
    case_boxes,
    find_annotations,
    read_box_table,
    read_boxes,
    read_voc_boxes,
    sibling_series,
)
from helpers.testing import factory


def voc(xmin, ymin, xmax, ymax, *, name="A", width=factory.COLS, height=factory.ROWS, extra_objects=()):
    objects = [(name, xmin, ymin, xmax, ymax), *extra_objects]
    body = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects
    )
    return (f'<annotation verified="no"><size><width>{width}</width><height>{height}</height>'
            f"<depth>1</depth></size>{body}</annotation>")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A factory series on disk, loaded (24 slices of 64 x 64, 2.5 mm)."""
    folder = tmp_path_factory.mktemp("ann") / "series"
    factory.write(factory.clean_datasets(), folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeriesWarning)
        return load_series(folder)


def write_boxes(folder, vol, boxes):
    """boxes: {slice index k: voc text}; files named by the slices' SOP Instance UIDs."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, text in boxes.items():
        (folder / f"{vol.meta['sop_instance_uids'][k]}.xml").write_text(text)
    return folder


class TestReadVocBoxes:
    def test_matches_by_sop_uid_and_builds_the_mask(self, case, tmp_path):
        boxes = {5: voc(10, 20, 19, 29), 6: voc(12, 21, 20, 30), 7: voc(11, 22, 21, 31)}
        d = write_boxes(tmp_path / "boxes", case, boxes)
        boxes = read_voc_boxes(d, case)
        assert [b.slice_index for b in boxes] == [5, 6, 7]
        assert boxes.boxes[0].rows == (20, 29) and boxes.boxes[0].cols == (10, 19)
        assert boxes.boxes[0].z_mm == pytest.approx(case.slice_positions[5])
        assert boxes.z_range_mm == pytest.approx((case.slice_positions[5], case.slice_positions[7]))
        assert boxes.missing_slices == [] and boxes.labels == ["A"]
        m = boxes.mask()
        assert m.dtype == bool and m.shape == case.shape
        assert m.sum() == 10 * 10 + 9 * 10 + 11 * 10
        assert m[5, 20, 10] and m[5, 29, 19] and not m[5, 30, 19] and not m[4].any()
        assert "every slice in between" in boxes.summary()

    def test_uid_order_not_file_order(self, case, tmp_path):
        # the factory's Instance Number runs head to feet; the slice index must follow position
        d = write_boxes(tmp_path / "b", case, {0: voc(1, 1, 2, 2), 23: voc(3, 3, 4, 4)})
        boxes = read_voc_boxes(d, case)
        assert [b.slice_index for b in boxes] == [0, 23]
        assert boxes.boxes[0].z_mm < boxes.boxes[1].z_mm

    def test_holes_and_several_lesions(self, case, tmp_path):
        d = write_boxes(tmp_path / "b", case, {3: voc(1, 1, 5, 5, extra_objects=[("B", 40, 40, 50, 50)]),
                                                6: voc(1, 1, 5, 5)})
        boxes = read_voc_boxes(d, case)
        assert boxes.missing_slices == [4, 5]
        assert boxes.labels == ["A", "B"] and len(boxes.for_label("B")) == 1
        assert "2 slice(s) in between carry no box" in boxes.summary()

    def test_one_based_index(self, case, tmp_path):
        d = write_boxes(tmp_path / "b", case, {2: voc(1, 1, 64, 64)})
        assert read_voc_boxes(d, case, index_base=1).boxes[0].cols == (0, 63)

    def test_box_outside_the_image(self, case, tmp_path):
        d = write_boxes(tmp_path / "b", case, {2: voc(10, 10, 70, 20)})
        with pytest.raises(DicomSeriesError, match=r"outside the image.*columns 0\.\.63.*\(0028,0011\) Columns = 64"):
            read_voc_boxes(d, case)

    def test_image_size_of_another_series(self, case, tmp_path):
        d = write_boxes(tmp_path / "b", case, {2: voc(10, 10, 20, 20, width=512, height=512)})
        with pytest.raises(DicomSeriesError, match=r"<size> is 512 x 512 pixels, the slice is 64 x 64"):
            read_voc_boxes(d, case)

    def test_annotations_of_another_series(self, case, tmp_path):
        d = tmp_path / "b"
        d.mkdir()
        (d / f"{factory.uid('sop', 'other', 3)}.xml").write_text(voc(1, 1, 2, 2))
        with pytest.raises(DicomSeriesError, match=r"none of the 1 annotation files.*another series"):
            read_voc_boxes(d, case)

    def test_files_of_a_second_series_warn_or_raise(self, case, tmp_path):
        d = write_boxes(tmp_path / "b", case, {4: voc(1, 1, 2, 2)})
        (d / f"{factory.uid('sop', 'other', 3)}.xml").write_text(voc(1, 1, 2, 2))
        with pytest.warns(SeriesWarning, match=r"1 of the 2 annotation files .* name no slice"):
            boxes = read_voc_boxes(d, case)
        assert len(boxes) == 1 and len(boxes.unmatched) == 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(read_voc_boxes(d, case, unmatched="ignore")) == 1
        with pytest.raises(DicomSeriesError, match="name no slice"):
            read_voc_boxes(d, case, unmatched="raise")

    def test_broken_files(self, case, tmp_path):
        d = write_boxes(tmp_path / "b", case, {2: "<annotation><object><bndbox>"})
        with pytest.raises(DicomSeriesError, match="is not valid XML"):
            read_voc_boxes(d, case)
        no_ymin = "<annotation><object><bndbox><xmin>1</xmin></bndbox></object></annotation>"
        d = write_boxes(tmp_path / "c", case, {2: no_ymin})
        with pytest.raises(DicomSeriesError, match=r"<bndbox> has no <xmax>"):
            read_voc_boxes(d, case)
        d = write_boxes(tmp_path / "e", case, {2: voc(9, 1, 3, 2)})
        with pytest.raises(DicomSeriesError, match=r"first column \(9\) is after its last \(3\)"):
            read_voc_boxes(d, case)
        (tmp_path / "empty").mkdir()
        with pytest.raises(DicomSeriesError, match=r"no \.xml file"):
            read_voc_boxes(tmp_path / "empty", case)

    def test_volume_without_uids(self, case, tmp_path):
        d = write_boxes(tmp_path / "b", case, {2: voc(1, 1, 2, 2)})
        bare = case.with_array(case.hu)
        bare.meta.pop("sop_instance_uids")
        with pytest.raises(DicomSeriesError, match=r"meta\['sop_instance_uids'\]"):
            read_voc_boxes(d, bare)


class TestReadBoxTable:
    def test_voxels_csv_by_index_and_by_uid(self, case, tmp_path):
        uid = case.meta["sop_instance_uids"][9]
        p = tmp_path / "boxes.csv"
        p.write_text("slice,sop_instance_uid,row_min,row_max,col_min,col_max,label\n"
                     f"8,,1,4,2,6,A\n,{uid},3,5,7,9,A\n")
        boxes = read_box_table(p, case)
        assert [(b.slice_index, b.rows, b.cols) for b in boxes] == [(8, (1, 4), (2, 6)), (9, (3, 5), (7, 9))]
        assert boxes.boxes[1].sop_instance_uid == uid

    def test_mm_json_round_trip(self, case, tmp_path):
        k, j0, j1, i0, i1 = 11, 10, 20, 30, 40
        a = case.index_to_lps((k, j0, i0))
        b = case.index_to_lps((k, j1, i1))
        rows = [{"z_mm": float(a[2]), "x_min_mm": float(min(a[0], b[0])), "x_max_mm": float(max(a[0], b[0])),
                 "y_min_mm": float(min(a[1], b[1])), "y_max_mm": float(max(a[1], b[1])), "label": "T"}]
        p = tmp_path / "boxes.json"
        p.write_text(json.dumps({"series_uid": case.meta["series_uid"], "boxes": rows}))
        box = read_boxes(p, case).boxes[0]
        assert (box.slice_index, box.rows, box.cols, box.label) == (k, (j0, j1), (i0, i1), "T")

    def test_mm_between_slices_matches_no_slice(self, case, tmp_path):
        z = float(case.slice_positions[4] + case.spacing[0] / 2)
        p = tmp_path / "b.csv"
        p.write_text(f"z_mm,x_min_mm,x_max_mm,y_min_mm,y_max_mm\n{z},-20,-10,-20,-10\n")
        with pytest.raises(DicomSeriesError, match=r"b\.csv box 1: z_mm = .* matches no slice"):
            read_box_table(p, case)

    def test_mm_outside_the_image(self, case, tmp_path):
        z = float(case.slice_positions[4])
        p = tmp_path / "b.csv"
        p.write_text(f"z_mm,x_min_mm,x_max_mm,y_min_mm,y_max_mm\n{z},-20,300,-20,-10\n")
        with pytest.raises(DicomSeriesError, match="outside the image"):
            read_box_table(p, case)

    def test_bad_rows(self, case, tmp_path):
        p = tmp_path / "b.csv"
        p.write_text("slice,row_min,row_max,col_min,col_max\n24,1,2,3,4\n")
        with pytest.raises(DicomSeriesError, match=r"slice = 24 matches no slice; expected an integer index 0\.\.23"):
            read_box_table(p, case)
        p.write_text("sop_instance_uid,row_min,row_max,col_min,col_max\n1.2.3,1,2,3,4\n")
        with pytest.raises(DicomSeriesError, match="sop_instance_uid 1.2.3 matches no slice"):
            read_box_table(p, case)
        p.write_text("slice,top,bottom\n1,2,3\n")
        with pytest.raises(DicomSeriesError, match="expected row_min, row_max"):
            read_box_table(p, case)
        p.write_text("slice,row_min,row_max,col_min,col_max\n1,a,2,3,4\n")
        with pytest.raises(DicomSeriesError, match="'row_min' is 'a'; expected a number"):
            read_box_table(p, case)

    def test_another_series(self, case, tmp_path):
        p = tmp_path / "b.json"
        p.write_text(json.dumps({"series_uid": "1.2.3.4", "boxes": [{"slice": 1, "row_min": 1, "row_max": 2,
                                                                     "col_min": 1, "col_max": 2}]}))
        with pytest.raises(DicomSeriesError, match=r"annotates series 1\.2\.3\.4, but the volume is series"):
            read_box_table(p, case)


class TestFindAnnotations:
    def test_inside_or_beside(self, tmp_path):
        series = tmp_path / "case" / "ct"
        series.mkdir(parents=True)
        assert find_annotations(series) is None
        beside = tmp_path / "case" / "tumour-boxes"
        beside.mkdir()
        assert find_annotations(series) is None  # empty folder
        (beside / "1.2.xml").write_text("<annotation/>")
        assert find_annotations(series) == beside
        inside = series / "tumour-boxes"
        inside.mkdir()
        (inside / "1.2.xml").write_text("<annotation/>")
        assert find_annotations(series) == inside


@pytest.mark.realdata
class TestRealBoxes:
    """The Lung-PET-CT-Dx boxes of subject A0002: 10 on the B40f series, 8 on the B70f series."""

    @pytest.mark.parametrize("kernel, n, top_mm", [("b40f", 10, 248.0), ("b70f", 8, 232.0)])
    def test_each_reconstruction_gets_its_own_boxes(self, real_case, kernel, n, top_mm):
        vol = load_series(real_case / f"ct-{kernel}")
        folder = find_annotations(real_case / f"ct-{kernel}")
        assert folder == real_case / "tumour-boxes"
        with pytest.warns(SeriesWarning, match=rf"{18 - n} of the 18 annotation files"):
            boxes = read_boxes(folder, vol)
        assert len(boxes) == n and len(boxes.unmatched) == 18 - n
        assert boxes.missing_slices == []
        assert boxes.z_range_mm == pytest.approx((176.0, top_mm))
        # a right hilar mass: the patient's right is on the image's left (low columns)
        assert all(b.cols[1] < vol.shape[2] // 2 for b in boxes)
        hu = vol.hu[boxes.mask()]
        assert np.mean(hu > -400) > 0.5  # mostly solid tissue inside the boxes


class TestCaseBoxes:
    def test_files_then_truth_then_nothing(self, case, tmp_path):
        series = tmp_path / "case" / "ct"
        series.mkdir(parents=True)
        truth = np.zeros(case.shape, bool)
        truth[3, 5:9, 6:10] = True
        assert case_boxes(series, case) == (None, "no tumour annotations for this scan (no tumour-boxes/ "
                                                  "folder in or beside ct)")
        boxes, text = case_boxes(series, case, truth_mask=truth)
        assert [b.rows for b in boxes] == [(5, 8)] and "ground-truth" in text
        d = write_boxes(tmp_path / "case" / "tumour-boxes", case, {4: voc(1, 1, 2, 2)})
        (d / f"{factory.uid('sop', 'other', 3)}.xml").write_text(voc(1, 1, 2, 2))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            boxes, text = case_boxes(series, case, truth_mask=truth)
        assert len(boxes) == 1 and text.startswith("1 tumour box(es) from tumour-boxes/")
        assert "1 more file(s) there name slices of another series" in text
        (d / f"{case.meta['sop_instance_uids'][4]}.xml").unlink()  # only the other series' file is left
        boxes, text = case_boxes(series, case, truth_mask=truth)
        assert boxes is None and "cannot be used for this scan" in text and "another series" in text


class TestBoxesTable:
    def test_rows_instance_numbers_and_mm(self, case, tmp_path):
        d = write_boxes(tmp_path / "b", case, {2: voc(10, 20, 19, 29), 3: voc(0, 0, 63, 63)})
        t = boxes_table(read_voc_boxes(d, case), case)
        assert t["k"].tolist() == [2, 3]
        # the factory numbers instances head to feet: index 2 of 24 is Instance Number 22
        assert t["instance_number"].tolist() == [22, 21]
        assert t["rows"].tolist() == ["20-29", "0-63"] and t["cols"].tolist() == ["10-19", "0-63"]
        assert t["width_mm"].tolist() == [pytest.approx(10 * 0.7), pytest.approx(64 * 0.7)]
        assert all(f.endswith(".dcm") for f in t["file"])


def _load(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeriesWarning)
        return load_series(folder)


class TestOtherSeries:
    """Boxes drawn on another reconstruction are placed by position (patient mm)."""

    def test_same_grid_lands_on_the_same_pixels(self, case, tmp_path):
        other = _load(factory.write(factory.clean_datasets(series="recon2"), tmp_path / "recon2"))
        d = write_boxes(tmp_path / "b", case, {5: voc(10, 20, 19, 29)})
        write_boxes(d, other, {6: voc(12, 22, 30, 40)})
        with pytest.warns(SeriesWarning, match="1 of the 2"):
            assert len(read_voc_boxes(d, case)) == 1
        boxes = read_voc_boxes(d, case, other_series=[other])
        assert [(b.slice_index, b.rows, b.cols) for b in boxes] == [(5, (20, 29), (10, 19)), (6, (22, 40), (12, 30))]
        assert "by position" in boxes.boxes[1].source and boxes.unmatched == ()

    def test_coarser_pixels_are_converted_through_mm(self, case, tmp_path):
        # half as many pixels of twice the size over the same field, same slices
        coarse = _load(factory.write(factory.clean_datasets(rows=32, cols=32, series="coarse",
                                                            spacing=(2.5, 1.4, 1.4),
                                                            hu=factory.expected_hu(24, 32, 32)),
                                     tmp_path / "coarse"))
        d = write_boxes(tmp_path / "b", coarse, {3: voc(5, 6, 9, 10, width=32, height=32)})
        b = read_voc_boxes(d, case, other_series=[coarse]).boxes[0]
        # the shared origin is a pixel centre: coarse pixel p spans fine coordinates 2p-1 .. 2p+1,
        # so coarse rows 6..10 cover fine pixel centres 11..21 (those on an edge included)
        assert (b.slice_index, b.rows, b.cols) == (3, (11, 21), (9, 19))

    def test_slices_at_other_positions(self, case, tmp_path):
        shifted = _load(factory.write(factory.clean_datasets(series="shifted",
                                                            origin=(-22.4, -22.4, -98.75)), tmp_path / "s"))
        d = write_boxes(tmp_path / "b", shifted, {3: voc(1, 1, 2, 2)})
        with pytest.raises(DicomSeriesError, match=r"matches no slice of the volume: the nearest is"):
            read_voc_boxes(d, case, other_series=[shifted])

    def test_another_frame_of_reference(self, case, tmp_path):
        other = _load(factory.write(factory.clean_datasets(series="recon3"), tmp_path / "r3"))
        other.meta["frame_of_reference_uid"] = "1.2.3.999"
        d = write_boxes(tmp_path / "b", other, {3: voc(1, 1, 2, 2)})
        with pytest.raises(DicomSeriesError, match=r"\(0020,0052\) Frame of Reference UID 1\.2\.3\.999"):
            read_voc_boxes(d, case, other_series=[other])


@pytest.mark.realdata
def test_real_b70f_boxes_on_the_b40f_series(real_case):
    b40, b70 = load_series(real_case / "ct-b40f"), load_series(real_case / "ct-b70f")
    boxes = read_voc_boxes(real_case / "tumour-boxes", b40, other_series=[b70])
    assert len(boxes) == 18 and boxes.unmatched == ()
    assert boxes.slice_indices == list(range(12, 22)) and boxes.z_range_mm == (176.0, 248.0)
    # the same geometry: a B70f box keeps its pixels on the B40f grid
    moved = [b for b in boxes if "by position" in b.source]
    assert len(moved) == 8 and all(12 <= b.slice_index <= 19 for b in moved)


class TestSiblingSeries:
    def test_finds_the_other_series_beside(self, tmp_path):
        factory.write(factory.clean_datasets(), tmp_path / "study" / "a")
        factory.write(factory.clean_datasets(series="b", description="b"), tmp_path / "study" / "b")
        vol = _load(tmp_path / "study" / "a")
        others = sibling_series(tmp_path / "study" / "a", vol)
        assert [o.meta["series_description"] for o in others] == ["b"]
        assert sibling_series(tmp_path / "study" / "a", vol, max_series=0) == []

    def test_box_iou(self):
        from helpers.annotations import Box

        a = Box(1, 0.0, (0, 9), (0, 9))
        assert box_iou(a, a) == 1.0
        assert box_iou(a, Box(1, 0.0, (10, 19), (0, 9))) == 0.0
        assert box_iou(a, Box(2, 0.0, (0, 9), (0, 9))) == 0.0
