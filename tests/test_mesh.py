"""Tests for helpers.mesh: marching cubes in LPS mm, decimation, figures and STL."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from helpers.mesh import (
    LEVELS,
    Mesh,
    bone_mask,
    crop_mesh,
    decimate,
    load_stl,
    mesh_figure,
    mesh_figure_matplotlib,
    mesh_holes,
    save_stl,
    surface_mesh,
)
from helpers.volume import Volume

HEAD_FIRST = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])


def ball_volume(radius_mm=12.0, spacing=(2.5, 0.7, 0.7), shape=(24, 60, 60), hu_in=700, hu_out=-50, **geometry):
    z, y, x = np.indices(shape, dtype=np.float64)
    c = (np.array(shape) - 1) / 2
    d2 = sum(((g - cc) * s) ** 2 for g, cc, s in zip((z, y, x), c, spacing))
    hu = np.where(d2 <= radius_mm**2, hu_in, hu_out).astype(np.int16)
    return Volume(hu, spacing=spacing, **geometry)


def edges_shared_twice(mesh):
    e = np.sort(np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]], mesh.faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    return np.all(counts == 2)


class TestMesh:
    def test_properties(self):
        m = Mesh(np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0]]), np.array([[0, 1, 2]]))
        assert m.verts.dtype == np.float32 and m.faces.dtype == np.int32
        assert m.n_triangles == 1 and m.area_mm2 == pytest.approx(2.0)
        np.testing.assert_allclose(m.face_normals(), [[0, 0, 1]])
        assert "1 triangles" in repr(m)


class TestSurfaceMesh:
    def test_ct_ball_volume_and_outward_normals(self):
        v = ball_volume()
        m = surface_mesh(v, level=300, step_size=1, max_triangles=None)
        true_ml = 4 / 3 * np.pi * 12**3 / 1000
        assert m.volume_ml == pytest.approx(true_ml, rel=0.08)  # positive: normals point outwards
        assert edges_shared_twice(m)  # closed, manifold
        assert m.meta["level"] == 300 and m.meta["source"] == "CT"

    def test_vertices_in_lps_mm(self):
        v = ball_volume(origin=(-10.0, 20.0, 300.0), direction=HEAD_FIRST)
        m = surface_mesh(v, level=300, step_size=1, max_triangles=None)
        centre = v.index_to_lps((np.array(v.shape) - 1) / 2)
        np.testing.assert_allclose(m.verts.mean(0), centre, atol=0.5)
        extent = m.bounds[1] - m.bounds[0]
        np.testing.assert_allclose(extent, [24, 24, 24], atol=3.0)  # a ball, whatever the spacing
        assert m.volume_ml > 0  # winding fixed even though direction flips handedness

    def test_named_level_and_budget(self):
        m = surface_mesh(ball_volume(), level="bone", max_triangles=300)
        assert m.n_triangles <= 300 and m.meta["decimated_from"] > 300
        assert LEVELS["bone"] == 300

    def test_auto_step_grows_with_small_budget(self):
        v = ball_volume(spacing=(1.0, 1.0, 1.0), shape=(60, 60, 60), radius_mm=25)
        assert surface_mesh(v, level=300, max_triangles=None).meta["step_size"] == 1
        assert surface_mesh(v, level=300, max_triangles=500).meta["step_size"] > 1
        assert surface_mesh(v, level=300, max_triangles=500, step_size=1).meta["step_size"] == 1

    def test_mask_smoothed_and_cropped(self):
        v = ball_volume()
        mask = v.with_array(v.hu > 0)
        m = surface_mesh(mask, max_triangles=None)
        assert m.meta["source"] == "mask" and m.meta["smooth_mm"] == 1.0
        assert m.volume_ml == pytest.approx(4 / 3 * np.pi * 12**3 / 1000, rel=0.1)
        np.testing.assert_allclose(m.verts.mean(0), v.index_to_lps((np.array(v.shape) - 1) / 2), atol=0.5)

    @pytest.mark.parametrize("step", [1, 2, 3])
    def test_touching_border_is_closed(self, step):
        hu = np.full((10, 12, 16), -1000, np.int16)
        hu[:, :, :12] = 1000  # "bone" cut by five faces of the scan box
        m = surface_mesh(Volume(hu, spacing=(1, 1, 1)), level=300, step_size=step, max_triangles=None)
        assert edges_shared_twice(m)
        assert m.volume_ml == pytest.approx(10 * 12 * 12 / 1000, rel=0.35)  # outward normals, about the box

    def test_array_with_spacing(self):
        z, y, x = np.mgrid[:20, :20, :20]
        m = surface_mesh((z - 10) ** 2 + (y - 10) ** 2 + (x - 10) ** 2 < 36, spacing=(2, 1, 1), max_triangles=None)
        ext = m.bounds[1] - m.bounds[0]
        assert ext[2] > 1.6 * ext[0]  # z (LPS) is the array z axis, stretched by 2 mm spacing

    def test_errors(self):
        v = ball_volume()
        with pytest.raises(ValueError, match="needs level=.*'air_tissue', 'bone'"):
            surface_mesh(v)
        with pytest.raises(ValueError, match="unknown level 'lung'"):
            surface_mesh(v, level="lung")
        with pytest.raises(ValueError, match="level 2000 is outside the data range -50..700"):
            surface_mesh(v, level=2000)
        with pytest.raises(ValueError, match="the mask is empty"):
            surface_mesh(np.zeros((4, 4, 4), bool), spacing=(1, 1, 1))
        with pytest.raises(ValueError, match=r"volume_or_mask is a bare array .* no voxel size.*spacing"):
            surface_mesh(np.ones((4, 4, 4), bool))  # no silent 1 mm
        with pytest.raises(ValueError, match="step_size must be a positive integer"):
            surface_mesh(v, level=300, step_size=0)


class TestDecimate:
    def test_within_budget_unchanged(self):
        m = surface_mesh(ball_volume(), level=300, max_triangles=None)
        assert decimate(m, m.n_triangles) is m
        small = decimate(m, 200)
        assert small.n_triangles <= 200 and small.volume_ml == pytest.approx(m.volume_ml, rel=0.15)

    def test_too_small(self):
        m = surface_mesh(ball_volume(), level=300, max_triangles=None)
        with pytest.raises(ValueError, match="at least 4"):
            decimate(m, 2)


class TestMeshFigure:
    def test_plotly(self):
        m = surface_mesh(ball_volume(), level=300, max_triangles=500)
        fig = mesh_figure(m, color="red", opacity=0.5)
        t = fig.data[0]
        assert t.type == "mesh3d" and fig.layout.scene.aspectmode == "data"
        assert len(t.i) == m.n_triangles and t.opacity == 0.5
        assert fig.layout.scene.camera.eye.y < 0  # looking from the front (anterior = -y)

    def test_matplotlib_decimates(self):
        m = surface_mesh(ball_volume(), level=300, max_triangles=None)
        fig = mesh_figure_matplotlib(m, max_triangles=100)
        assert "decimated from" in fig.axes[0].get_title()
        assert fig.axes[0].name == "3d"


class TestStl:
    def test_round_trip(self, tmp_path):
        m = surface_mesh(ball_volume(), level=300, max_triangles=400)
        p = save_stl(m, tmp_path / "ball.stl")
        assert p.stat().st_size == 84 + 50 * m.n_triangles
        back = load_stl(p)
        assert back.n_triangles == m.n_triangles
        np.testing.assert_allclose(np.sort(back.verts, axis=0), np.sort(m.verts, axis=0), atol=1e-5)
        assert back.volume_ml == pytest.approx(m.volume_ml, rel=1e-5)
        assert [q.name for q in tmp_path.iterdir()] == ["ball.stl"]  # no temporary file left

    def test_normals_stored(self, tmp_path):
        m = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]]), np.array([[0, 1, 2]]))
        data = save_stl(m, tmp_path / "t.stl").read_bytes()
        np.testing.assert_allclose(np.frombuffer(data, "<f4", count=3, offset=84), [0, 0, 1])

    def test_bad_files(self, tmp_path):
        (tmp_path / "a.stl").write_bytes(b"solid x\nfacet normal 0 0 1\n" + b" " * 100)
        with pytest.raises(ValueError, match="ASCII STL"):
            load_stl(tmp_path / "a.stl")
        with pytest.raises(ValueError, match="must not start with 'solid'"):
            save_stl(Mesh(np.eye(3), [[0, 1, 2]]), tmp_path / "b.stl", header="solid thing")


class TestCheckMeshBudget:
    """Chapter 6 exercise checker (helpers.book.checks)."""

    def test_verdicts(self):
        from helpers.book.checks import check_mesh_budget

        m = surface_mesh(ball_volume(), level=300, max_triangles=300)
        assert check_mesh_budget(m, 300, level=300).ok
        assert check_mesh_budget(m, 100).ok is False
        assert "level 300" in check_mesh_budget(m, 300, level=-300).message
        assert check_mesh_budget("mesh", 300).ok is False
        assert check_mesh_budget(..., 300).ok is None


class TestEdgeCrossings:
    def test_blocks_count_like_whole_volume_diffs(self):
        """Counting in blocks of slices gives the whole-volume count (the earlier formula)."""
        from helpers.mesh import _edge_crossings

        rng = np.random.default_rng(1)
        a = rng.normal(size=(37, 20, 23)).astype(np.float32)
        inside = a > 0.3
        want = sum(int(np.count_nonzero(np.diff(inside, axis=ax))) for ax in range(3))
        assert {_edge_crossings(a, 0.3, block=b) for b in (1, 2, 5, 16, 36, 37, 100)} == {want}

    def test_padding_crossings_counted_without_padding(self):
        """surface_mesh pads once, after choosing the step: the count it uses equals the padded array's."""
        from helpers.mesh import _edge_crossings, _face_crossings

        rng = np.random.default_rng(2)
        a = rng.normal(size=(9, 12, 11)).astype(np.float32)
        padded = np.pad(a, 1, mode="constant", constant_values=float(a.min()) - 1)
        assert _edge_crossings(padded, 0.2) == _edge_crossings(a, 0.2) + _face_crossings(a, 0.2)


def hollow_bone(spacing=(1.0, 0.5, 0.5), crack_mm=1.0):
    """A tube of cortex (700 HU, 2 mm thick) round fatty marrow (-50 HU), capped at both ends,
    in soft tissue (40 HU), with two cracks ``crack_mm`` wide through the wall (front and back)."""
    shape = (int(60 / spacing[0]), int(40 / spacing[1]), int(40 / spacing[2]))
    z, y, x = (np.indices(shape, dtype=np.float64) * np.reshape(spacing, (3, 1, 1, 1)))
    r = np.hypot(y - 20, x - 20)
    inside = (r < 12) & (z > 8) & (z < 52)
    marrow = (r < 10) & (z > 10) & (z < 50)
    hu = np.full(shape, 40, np.int16)
    hu[inside] = 700
    hu[marrow] = -50
    hu[inside & (np.abs(x - 20) < crack_mm / 2) & (z > 10) & (z < 50)] = 40
    return Volume(hu, spacing=spacing)


class TestMeshHoles:
    def test_sphere_torus_and_two_pieces(self):
        z, y, x = np.mgrid[:24, :60, :40]
        ball = (z - 12) ** 2 + (y - 12) ** 2 + (x - 20) ** 2 < 64
        ring = (np.abs(z - 12) < 4) & (np.abs(np.hypot(y - 40, x - 20) - 11) < 4)
        counts = mesh_holes(surface_mesh(ball | ring, spacing=(1, 1, 1), max_triangles=None))
        assert counts["pieces"] == 2 and counts["tunnels"] == 1 and counts["open_borders"] == 0
        assert counts["euler"] == 2 * 2 - 2 * 1 and counts["nonmanifold_edges"] == 0

    def test_open_surface_has_borders(self):
        # a square of two triangles and a separate triangle: two pieces, two open border loops
        verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [5, 5, 5], [6, 5, 5], [5, 6, 5]], np.float32)
        counts = mesh_holes(Mesh(verts, np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]])))
        assert (counts["pieces"], counts["open_borders"], counts["tunnels"]) == (2, 2, 0)

    def test_empty(self):
        assert mesh_holes(Mesh(np.zeros((0, 3)), np.zeros((0, 3))))["pieces"] == 0


class TestCropMesh:
    def test_half_a_ball(self):
        m = surface_mesh(ball_volume(), level=300, step_size=1, max_triangles=None)
        lo, hi = m.bounds
        centre = (lo + hi) / 2
        half = crop_mesh(m, lo, [centre[0], hi[1], hi[2]])  # the right half (x below the centre)
        assert half.verts[:, 0].max() <= centre[0] + 1e-4
        assert 0.4 < half.n_triangles / m.n_triangles < 0.6
        assert half.area_mm2 == pytest.approx(m.area_mm2 / 2, rel=0.1)
        assert mesh_holes(half)["open_borders"] == 1  # the cut
        assert crop_mesh(m, lo - 1, hi + 1).n_triangles == m.n_triangles


class TestBoneMask:
    def test_raw_threshold_has_a_tunnel_and_an_inner_surface(self):
        v = hollow_bone()
        raw = mesh_holes(surface_mesh(v, level=300, max_triangles=None))
        # the first crack joins the inner (marrow) surface to the outer one, the second makes a tunnel
        assert raw["pieces"] == 1 and raw["tunnels"] == 1
        intact = hollow_bone(crack_mm=0)
        assert mesh_holes(surface_mesh(intact, level=300, max_triangles=None))["pieces"] == 2  # outer + inner

    def test_closing_and_filling_make_it_solid(self):
        v = hollow_bone()
        mask = bone_mask(v)
        counts = mesh_holes(surface_mesh(v.with_array(mask), max_triangles=None))
        assert counts == {"pieces": 1, "tunnels": 0, "open_borders": 0, "euler": 2, "nonmanifold_edges": 0}
        solid = (v.hu >= 300) | (v.hu == -50)
        assert mask[solid].all()  # marrow filled, cortex kept
        assert np.count_nonzero(mask & ~solid) < 0.03 * mask.sum()  # the cracks and the staircase of the voxels

    def test_closing_is_in_mm(self):
        # the same 1 mm crack is bridged by a 1 mm ball whatever the pixel size
        for spacing in [(1.0, 0.25, 0.25), (1.0, 0.5, 0.5)]:
            v = hollow_bone(spacing=spacing)
            closed = bone_mask(v, closing_mm=1.0, fill=False)
            k, j = int(30 / spacing[0]), int(9 / spacing[1])
            assert closed[k, j, int(20 / spacing[2])]  # the crack, in the wall
            assert not bone_mask(v, closing_mm=None, fill=False)[k, j, int(20 / spacing[2])]

    def test_thick_slices_cannot_be_bridged(self):
        # two bone plates 8 mm apart along z (one slice missing in between): a 3 mm ball cannot join them
        hu = np.full((5, 20, 20), 40, np.int16)
        hu[1, 5:15, 5:15] = hu[3, 5:15, 5:15] = 700
        v = Volume(hu, spacing=(4.0, 1.0, 1.0))
        assert not bone_mask(v, closing_mm=3.0)[2].any()
        assert bone_mask(v, closing_mm=5.0)[2, 10, 10]  # a ball bigger than the slice spacing does
        assert mesh_holes(surface_mesh(v.with_array(bone_mask(v)), max_triangles=None))["pieces"] == 2

    def test_large_in_plane_holes_stay_open(self):
        # a ring of bone round 40 x 40 mm of soft tissue (like the chest in one slice) is not filled
        hu = np.full((3, 60, 60), 40, np.int16)
        yy, xx = np.mgrid[:60, :60]
        r = np.hypot(yy - 30, xx - 30)
        hu[:, (r > 20) & (r < 23)] = 700
        v = Volume(hu, spacing=(1.0, 1.0, 1.0))
        mask = bone_mask(v, closing_mm=None)
        assert not mask[1, 30, 30]
        assert bone_mask(v, closing_mm=None, max_hole_mm2=2000)[1, 30, 30]

    @pytest.mark.realdata
    def test_real_case_fewer_pieces_and_tunnels(self, real_case):
        """On the 8 mm real case, closing and filling halve the pieces and the tunnels of the 300 HU
        surface (409 -> 200 pieces, 118 -> 44 tunnels when written), but many rib pieces remain:
        the 3 mm ball reaches no neighbouring slice."""
        import warnings

        from helpers.io import load_series

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vol = load_series(real_case / "ct-b40f")
        raw = mesh_holes(surface_mesh(vol.with_array(vol.hu >= 300), step_size=1, max_triangles=None))
        mended = mesh_holes(surface_mesh(vol.with_array(bone_mask(vol)), step_size=1, max_triangles=None))
        assert mended["pieces"] < 0.6 * raw["pieces"] and mended["tunnels"] < 0.5 * raw["tunnels"]
        assert mended["pieces"] > 50  # thick slices: the ribs stay cut into pieces
