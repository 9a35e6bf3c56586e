"""Tests for helpers.mesh: marching cubes in LPS mm, decimation, figures and STL."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from helpers.mesh import LEVELS, Mesh, decimate, load_stl, mesh_figure, mesh_figure_matplotlib, save_stl, surface_mesh
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
            surface_mesh(np.zeros((4, 4, 4), bool))
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
