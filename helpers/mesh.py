"""Surface meshes from CT: marching cubes, decimation, plotly / matplotlib views, STL.

The 2017 tutorial ran ``measure.marching_cubes`` on the whole resampled scan
and drew the result with matplotlib's ``Poly3DCollection``: on a 1 mm chest CT
that is 1-5 million triangles, minutes of drawing and, in a web page, a file
of hundreds of MB.  :func:`surface_mesh` does the same marching cubes
(scikit-image, with the volume's spacing) but

* picks a marching-cubes ``step_size`` so the raw surface is at most a few
  times the triangle budget (``step_size="auto"``),
* decimates to ``max_triangles`` with quadric edge collapse
  (``fast_simplification``), which keeps the shape where it matters,
* closes surfaces that touch the edge of the scan (one voxel of padding),
* returns vertices in **patient LPS millimetres** (``x`` to the patient's
  left, ``y`` posterior, ``z`` superior) through ``volume.index_to_lps``, so the
  mesh lines up with any other object placed in patient space and a 3-D
  printer slicer or 3D Slicer (LPS by default for STL) reads it the right way
  up, with triangles wound so normals point outwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from numpy.typing import ArrayLike

from .volume import Volume, as_volume, is_mask

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "LEVELS",
    "Mesh",
    "surface_mesh",
    "decimate",
    "mesh_figure",
    "mesh_figure_matplotlib",
    "save_stl",
    "load_stl",
    "bone_mask",
    "mesh_holes",
    "crop_mesh",
]

#: Named iso-surface levels in HU.  ``"bone"``: cancellous bone starts near
#: +300 HU, so this shows ribs, spine, sternum and scapulae (calcified vessels
#: and dense contrast too).  ``"air_tissue"``: halfway between aerated lung
#: (about -850 HU) and soft tissue (about +40 HU); it gives *every* air/tissue
#: boundary -- skin, lungs, airways, bowel gas, the table cushion.  For the
#: lungs alone, mesh a lung mask instead (level 0.5).
LEVELS: dict[str, float] = {"bone": 300.0, "air_tissue": -300.0}

#: Marching cubes makes about two triangles per voxel edge that crosses the
#: level (measured on a 1 mm chest CT at 300 and -300 HU: 1.99).
TRIANGLES_PER_CROSSING = 2.0

#: Level used for boolean / 0-1 masks.
MASK_LEVEL = 0.5
#: Default Gaussian smoothing (sigma, mm) of a mask before marching cubes: removes the voxel staircase.
MASK_SMOOTH_MM = 1.0
#: A mask is cropped to its bounding box plus this many smoothing sigmas (the Gaussian's reach).
SMOOTH_REACH_SIGMAS = 3.0
#: ``step_size="auto"`` never takes a marching-cubes step larger than this (voxels).
MAX_AUTO_STEP = 8


@dataclass(repr=False, eq=False)
class Mesh:
    """A triangle surface in patient LPS millimetres.

    Parameters
    ----------
    verts : ndarray, shape (n, 3), float32
        Vertex positions ``(x, y, z)`` in LPS mm.
    faces : ndarray, shape (m, 3), int32
        Vertex indices of each triangle, counter-clockwise seen from outside.
    meta : dict
        How it was made (level, step size, raw triangle count, timings...).

    Examples
    --------
    >>> m = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32), np.array([[0, 1, 2]]))
    >>> m.n_triangles, m.n_vertices, round(m.area_mm2, 2)
    (1, 3, 0.5)
    """

    verts: np.ndarray
    faces: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.verts = np.ascontiguousarray(self.verts, dtype=np.float32).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int32).reshape(-1, 3)

    @property
    def n_triangles(self) -> int:
        """Number of triangles."""
        return int(self.faces.shape[0])

    @property
    def n_vertices(self) -> int:
        """Number of vertices."""
        return int(self.verts.shape[0])

    @property
    def bounds(self) -> np.ndarray:
        """``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` in LPS mm (float64)."""
        return np.array([self.verts.min(0), self.verts.max(0)], dtype=np.float64)

    def _corners(self):
        v = self.verts.astype(np.float64)
        return v[self.faces[:, 0]], v[self.faces[:, 1]], v[self.faces[:, 2]]

    @property
    def area_mm2(self) -> float:
        """Total surface area in mm^2."""
        a, b, c = self._corners()
        return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())

    @property
    def volume_ml(self) -> float:
        """Enclosed volume in mL (divergence theorem; meaningful for closed surfaces)."""
        a, b, c = self._corners()
        return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0 / 1000.0)

    def face_normals(self) -> np.ndarray:
        """Unit normal of every triangle, float32 ``(m, 3)`` (zero for degenerate ones)."""
        a, b, c = self._corners()
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        return (n / np.where(norm > 0, norm, 1.0)).astype(np.float32)

    def __repr__(self) -> str:
        lo, hi = self.bounds if self.n_vertices else (np.zeros(3), np.zeros(3))
        size = " x ".join(f"{s:.0f}" for s in hi - lo)
        return f"Mesh({self.n_triangles:,} triangles, {self.n_vertices:,} vertices, {size} mm (x, y, z))"


# ------------------------------------------------------------------ building
def _face_crossings(a: np.ndarray, level: float) -> int:
    """Inside voxels (``> level``) on the six faces of the array, counted once per face.

    >>> _face_crossings(np.ones((2, 3, 4)), 0.5)  # every voxel of a 2x3x4 block is on a face
    52
    """
    return int(sum(np.count_nonzero(a[(slice(None),) * ax + (end,)] > level) for ax in range(3) for end in (0, -1)))


#: Slices per block in :func:`_edge_crossings` (keeps its boolean temporaries small).
CROSSING_BLOCK_SLICES = 16


def _edge_crossings(a: np.ndarray, level: float, *, block: int = CROSSING_BLOCK_SLICES) -> int:
    """Number of voxel edges crossing the level (~ proportional to triangle count).

    Counted ``block`` slices at a time (with one slice of overlap along z), so the
    boolean temporaries are a few slices, not two copies of the volume.

    >>> a = np.zeros((5, 4, 4)); a[1:3, 1:3, 1:3] = 1
    >>> _edge_crossings(a, 0.5, block=2)  # a 2x2x2 cube: 6 faces x 4 edges
    24
    """
    total, n = 0, a.shape[0]
    for k0 in range(0, n, block):
        inside = a[k0:min(n, k0 + block + 1)] > level
        total += int(np.count_nonzero(inside[1:] != inside[:-1]))  # z edges from slices k0 .. k0 + block - 1
        core = inside[:block]
        total += int(np.count_nonzero(core[:, 1:] != core[:, :-1]))
        total += int(np.count_nonzero(core[:, :, 1:] != core[:, :, :-1]))
    return int(total)


def decimate(mesh: Mesh, max_triangles: int, *, aggressiveness: float = 7.0) -> Mesh:
    """Reduce a mesh to at most ``max_triangles`` by quadric edge collapse.

    Parameters
    ----------
    mesh : Mesh
    max_triangles : int
        Triangle budget; a mesh already within it is returned unchanged.
    aggressiveness : float, default 7.0, keyword-only
        ``fast_simplification``'s ``agg``: higher is faster and rougher.

    Returns
    -------
    Mesh
        ``meta`` gains ``decimated_from``.

    Examples
    --------
    >>> import numpy as np
    >>> z, y, x = np.mgrid[:30, :30, :30]
    >>> m = surface_mesh((z - 15) ** 2 + (y - 15) ** 2 + (x - 15) ** 2 < 100, spacing=(1, 1, 1), step_size=1,
    ...                  max_triangles=None)
    >>> decimate(m, 500).n_triangles <= 500 < m.n_triangles
    True
    """
    import fast_simplification

    if max_triangles is None or mesh.n_triangles <= max_triangles:
        return mesh
    if max_triangles < 4:
        raise ValueError(f"max_triangles must be at least 4; got {max_triangles}")
    pts, tri = fast_simplification.simplify(
        mesh.verts.astype(np.float32), mesh.faces.astype(np.int32), target_count=int(max_triangles),
        agg=aggressiveness,
    )
    meta = dict(mesh.meta, decimated_from=mesh.n_triangles)
    return Mesh(pts, tri, meta)


def surface_mesh(
    volume_or_mask: Volume | np.ndarray,
    *,
    level: float | str | None = None,
    step_size: int | str = "auto",
    max_triangles: int | None = 150_000,
    smooth_mm: float | None = None,
    spacing: tuple[float, float, float] | None = None,
    closed: bool = True,
    auto_factor: float = 4.0,
) -> Mesh:
    """Iso-surface of a CT or a mask, in LPS mm, decimated to a triangle budget.

    Parameters
    ----------
    volume_or_mask : Volume or ndarray (z, y, x)
        A CT in HU, or a mask (bool, unsigned integers or int8:
        :func:`helpers.volume.is_mask`).  A bare array needs ``spacing`` and
        is taken with the default orientation.
    level : float or str, optional, keyword-only
        Iso-value in HU, or a name from :data:`LEVELS` (``"bone"`` = 300,
        ``"air_tissue"`` = -300).  Default: 0.5 for masks; required for CT.
    step_size : int or "auto", default "auto"
        Marching-cubes step in voxels.  ``"auto"`` takes the smallest step whose
        estimated raw triangle count is at most ``auto_factor * max_triangles``
        (1 when there is no budget).  ``1`` forces full resolution.
    max_triangles : int or None, default 150000
        Decimate to this budget; ``None`` keeps every triangle.
    smooth_mm : float, optional
        Gaussian sigma in mm applied before marching cubes.  Default:
        :data:`MASK_SMOOTH_MM` (1.0 mm) for masks (removes the voxel staircase), 0 for CT.
    spacing : 3 floats, optional
        Voxel size ``(z, y, x)`` in mm of a bare array (a Volume carries its own).
    closed : bool, default True
        Pad one voxel of "outside" so surfaces cut by the scan edge are closed
        (needed for :attr:`Mesh.volume_ml` and 3-D printing).
    auto_factor : float, default 4.0
        See ``step_size``.

    Returns
    -------
    Mesh
        ``verts`` float32 LPS mm, ``faces`` int32 wound outwards; ``meta`` holds
        ``level``, ``step_size``, ``raw_triangles`` and ``smooth_mm``.

    Raises
    ------
    ValueError
        No level for a CT, unknown level name, a level outside the data range
        (no surface), or a bad step.

    Notes
    -----
    Triangle counts grow with surface area / step_size^2: the whole-scan
    air/tissue surface of a 1 mm chest CT is several million triangles (the
    2017 tutorial's ``plot_3d``), the bone surface about one million.  A web
    page needs well under 200 k (a plotly ``Mesh3d`` of 50 k triangles weighs
    about 1.3 MB).  Decimation keeps the overall shape; fine detail below
    about ``sqrt(area / max_triangles)`` mm is lost either way.

    Examples
    --------
    >>> import numpy as np
    >>> z, y, x = np.mgrid[:40, :40, :40]
    >>> from helpers.volume import Volume
    >>> ball = Volume(((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 15 ** 2), spacing=(1, 1, 1))
    >>> m = surface_mesh(ball, max_triangles=2000)
    >>> m.n_triangles <= 2000, round(m.volume_ml, 1)  # 4/3 pi 15^3 mm^3 = 14.1 mL
    (True, 13.9)
    """
    from scipy import ndimage
    from skimage.measure import marching_cubes

    vol = as_volume(volume_or_mask, spacing=spacing, name="volume_or_mask")
    arr = vol.hu
    mask_input = is_mask(arr)
    level_value = _iso_level(arr, level, mask_input=mask_input)
    if smooth_mm is None:
        smooth_mm = MASK_SMOOTH_MM if mask_input else 0.0

    if mask_input:
        work, offset = _mask_box(arr, vol.spacing, smooth_mm)
        outside = 0.0
    else:
        work, offset, outside = _ct_work(arr, level_value)
    if smooth_mm and smooth_mm > 0:
        work = ndimage.gaussian_filter(work, sigma=[smooth_mm / s for s in vol.spacing]).astype(np.float32, copy=False)
    step = _marching_step(work, level_value, step_size=step_size, max_triangles=max_triangles, closed=closed,
                          auto_factor=auto_factor)

    if closed:  # one voxel of "outside" all round, in one copy; with step > 1 marching cubes samples
        # 0, step, 2*step...: pad the far ends a little more so that the last sample is padding too
        extra = [(-(n + 1)) % step for n in work.shape]
        work = np.pad(work, [(1, 1 + e) for e in extra], mode="constant", constant_values=outside)
        offset = offset - 1.0
    verts, faces, _, _ = marching_cubes(work, level=level_value, step_size=step, allow_degenerate=False)
    raw = int(faces.shape[0])
    idx = verts.astype(np.float64) + offset  # voxel index (k, j, i) in the original volume
    lps = vol.index_to_lps(idx)
    mesh = Mesh(lps, faces, {"level": level_value, "step_size": step, "raw_triangles": raw,
                             "smooth_mm": float(smooth_mm), "source": "mask" if mask_input else "CT"})
    # scikit-image winds triangles clockwise seen from the high side in (k, j, i) index space; the
    # index -> LPS map keeps that handedness when det(direction) > 0, so flip those to point outwards
    if np.linalg.det(vol.direction) > 0:
        mesh.faces = np.ascontiguousarray(mesh.faces[:, ::-1])
    return decimate(mesh, max_triangles) if max_triangles is not None else mesh


def _iso_level(arr: np.ndarray, level: float | str | None, *, mask_input: bool) -> float:
    """The iso-value in HU (or 0.5 for a mask): a number, a name from :data:`LEVELS`, or the mask default."""
    if isinstance(level, str):
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}; expected a number in HU or one of {sorted(LEVELS)}")
        return LEVELS[level]
    if level is None:
        if not mask_input:
            raise ValueError(
                f"a CT ({arr.dtype}, values {float(arr.min()):g}..{float(arr.max()):g} HU) needs level=: "
                f"a number in HU or one of {sorted(LEVELS)}; for a mask pass a bool or uint8 array"
            )
        return MASK_LEVEL
    return float(level)


def _mask_box(arr: np.ndarray, spacing: tuple[float, float, float], smooth_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The mask cut to its bounding box plus the smoothing's reach, as float32; and the box's first index."""
    work = arr.astype(bool) if arr.dtype != bool else arr
    zs = np.flatnonzero(work.any(axis=(1, 2)))  # bounding box from per-axis projections
    if zs.size == 0:
        raise ValueError("the mask is empty: no surface to mesh")
    ys = np.flatnonzero(work.any(axis=(0, 2)))
    xs = np.flatnonzero(work.any(axis=(0, 1)))
    margin = [int(np.ceil(SMOOTH_REACH_SIGMAS * smooth_mm / s)) + 1 for s in spacing]
    lo = [max(0, r[0] - m) for r, m in zip((zs, ys, xs), margin)]
    hi = [min(n, r[-1] + 1 + m) for r, n, m in zip((zs, ys, xs), arr.shape, margin)]
    work = work[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32)
    return work, np.asarray(lo, dtype=np.float64)


def _ct_work(arr: np.ndarray, level_value: float) -> tuple[np.ndarray, np.ndarray, float]:
    """A CT as float32, no offset, and the "outside" value to pad with; refuses a level outside the data."""
    lo_v, hi_v = float(arr.min()), float(arr.max())
    if not lo_v < level_value < hi_v:
        raise ValueError(f"level {level_value:g} is outside the data range {lo_v:g}..{hi_v:g}: no surface")
    work = arr if arr.dtype == np.float32 else arr.astype(np.float32)
    return work, np.zeros(3), min(lo_v, level_value - 1.0)


def _marching_step(work: np.ndarray, level_value: float, *, step_size: int | str, max_triangles: int | None,
                   closed: bool, auto_factor: float) -> int:
    """The marching-cubes step: ``step_size`` checked, or for "auto" the smallest within the triangle budget."""
    if step_size != "auto":
        step = int(step_size)
        if step < 1:
            raise ValueError(f"step_size must be a positive integer or 'auto'; got {step_size!r}")
        return step
    if max_triangles is None:
        return 1
    crossings = _edge_crossings(work, level_value)
    if closed:  # the padding added below crosses once next to every inside voxel of each face
        crossings += _face_crossings(work, level_value)
    # marching cubes makes ~2 triangles per crossed voxel edge (measured on chest CT)
    estimate = TRIANGLES_PER_CROSSING * crossings
    step = 1
    while estimate / step**2 > auto_factor * max_triangles and step < MAX_AUTO_STEP:
        step += 1
    return step


# ------------------------------------------------------------------- figures
def mesh_figure(
    mesh: Mesh,
    *,
    color: str = "#e3d6bf",
    opacity: float = 1.0,
    title: str | None = None,
    flatshading: bool = False,
    height_px: int = 520,
) -> Any:
    """A rotatable plotly ``Mesh3d`` figure (true proportions, patient axes).

    Parameters
    ----------
    mesh : Mesh
    color : str, default a bone-like ivory, keyword-only
    opacity : float, default 1.0
        Below 1 shows inner structures but sorts badly in WebGL; use 1 for bone.
    title : str, optional
        Default: the triangle count.
    flatshading : bool, default False
    height_px : int, default 520

    Returns
    -------
    plotly.graph_objects.Figure
        ``scene.aspectmode = "data"`` so mm are mm on every axis; the camera
        looks from the front (anterior) with the head up.

    Notes
    -----
    Page weight is about 17 bytes per triangle (float32 vertices and uint16
    indices below 65 536 vertices, base64): 60 k triangles weigh about 1 MB of
    HTML.

    Examples
    --------
    >>> m = Mesh(np.eye(3, dtype=np.float32), np.array([[0, 1, 2]]))
    >>> fig = mesh_figure(m)
    >>> fig.data[0].type, fig.layout.scene.aspectmode
    ('mesh3d', 'data')
    """
    import plotly.graph_objects as go

    v = np.asarray(mesh.verts, dtype=np.float32)
    # Indices as uint16 when they fit (plotly ships typed arrays as base64): a third lighter page.
    f = np.asarray(mesh.faces)
    f = f.astype(np.uint16 if len(v) <= np.iinfo(np.uint16).max else np.uint32)
    trace = go.Mesh3d(
        x=v[:, 0], y=v[:, 1], z=v[:, 2],
        i=f[:, 0], j=f[:, 1], k=f[:, 2],
        color=color, opacity=opacity, flatshading=flatshading,
        lighting={"ambient": 0.35, "diffuse": 0.8, "specular": 0.15, "roughness": 0.7, "fresnel": 0.1},
        lightposition={"x": 0, "y": -1e5, "z": 1e5},
        hoverinfo="skip",
    )
    fig = go.Figure(trace)
    fig.update_layout(
        title={"text": title or f"{mesh.n_triangles:,} triangles", "font": {"size": 13}},
        height=height_px,
        margin={"l": 0, "r": 0, "t": 40, "b": 0},
        template="none",
        scene={
            "aspectmode": "data",
            "xaxis": {"title": {"text": "x: R -> L (mm)"}},
            "yaxis": {"title": {"text": "y: A -> P (mm)"}},
            "zaxis": {"title": {"text": "z: I -> S (mm)"}},
            "camera": {"eye": {"x": 0.0, "y": -1.9, "z": 0.35}, "up": {"x": 0, "y": 0, "z": 1}},
        },
    )
    return fig


def mesh_figure_matplotlib(
    mesh: Mesh,
    *,
    max_triangles: int = 40_000,
    color: str | tuple[float, float, float] = (0.89, 0.84, 0.75),
    elev: float = 10.0,
    azim: float = -90.0,
    size_in: float = 6.0,
    title: str | None = None,
) -> Figure:
    """A static matplotlib rendering of a mesh (for print, PDF or no WebGL).

    Parameters
    ----------
    mesh : Mesh
    max_triangles : int, default 40000, keyword-only
        Matplotlib sorts and draws every polygon on the CPU (~1 s per 40 k
        triangles here); larger meshes are decimated first.
    color : RGB tuple, default ivory
    elev, azim : float, default 10 and -90
        Camera angles in degrees; ``azim=-90`` looks from the front
        (anterior, -y in LPS) so the patient's left is on the right.
    size_in : float, default 6.0
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Faces are shaded by a fixed light (Lambert), axes in LPS mm with true
        proportions.

    Examples
    --------
    >>> m = Mesh(np.eye(3, dtype=np.float32), np.array([[0, 1, 2]]))
    >>> fig = mesh_figure_matplotlib(m)
    >>> fig.axes[0].name
    '3d'
    """
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    shown = decimate(mesh, max_triangles)
    normals = shown.face_normals()
    light = np.array([0.3, -1.0, 0.6])
    light /= np.linalg.norm(light)
    shade = 0.35 + 0.65 * np.clip(normals @ light, 0, 1)
    rgb = np.clip(np.asarray(color, dtype=float)[None, :] * shade[:, None], 0, 1)
    fig = Figure(figsize=(size_in, size_in))
    ax = fig.add_subplot(projection="3d")
    tris = shown.verts[shown.faces]
    ax.add_collection3d(Poly3DCollection(tris, facecolors=rgb, edgecolors="none", linewidths=0))
    lo, hi = shown.bounds
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect(np.maximum(hi - lo, 1e-6))
    ax.view_init(elev=elev, azim=azim)
    ax.set_xlabel("x: R -> L (mm)", fontsize=8)
    ax.set_ylabel("y: A -> P (mm)", fontsize=8)
    ax.set_zlabel("z: I -> S (mm)", fontsize=8)
    ax.tick_params(labelsize=7)
    note = "" if shown is mesh else f" (decimated from {mesh.n_triangles:,} for drawing)"
    ax.set_title(title or f"{shown.n_triangles:,} triangles{note}", fontsize=9)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.95)
    return fig


# ----------------------------------------------------------------------- STL
_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])


def save_stl(mesh: Mesh, path: str | os.PathLike[str], *, header: str = "helpers.mesh binary STL, LPS mm") -> Path:
    """Write a binary STL file, atomically (temporary file then rename).

    Parameters
    ----------
    mesh : Mesh
    path : str or Path
        Output file; its folder is created if needed.
    header : str, keyword-only
        Up to 80 ASCII characters stored in the header (must not start with
        "solid", which would make readers take it for ASCII STL).

    Returns
    -------
    Path
        The file written.

    Notes
    -----
    Binary STL: 80-byte header, uint32 triangle count, then per triangle a
    float32 normal, three float32 vertices and a uint16 attribute (0), all
    little-endian.  Coordinates are LPS mm.

    Examples
    --------
    >>> import tempfile, os
    >>> m = Mesh(np.eye(3, dtype=np.float32), np.array([[0, 1, 2]]))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = save_stl(m, os.path.join(d, "t.stl"))
    ...     p.stat().st_size, load_stl(p).n_triangles
    (134, 1)
    """
    path = Path(path)
    text = header.encode("ascii", "replace")[:80]
    if text.lower().startswith(b"solid"):
        raise ValueError("an STL binary header must not start with 'solid' (readers would take it for ASCII)")
    rec = np.zeros(mesh.n_triangles, dtype=_STL_RECORD)
    rec["normal"] = mesh.face_normals()
    rec["v"] = mesh.verts[mesh.faces]
    from .export import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(text.ljust(80, b" "))
            f.write(np.uint32(mesh.n_triangles).astype("<u4").tobytes())
            f.write(rec.tobytes())

    return atomic_write(path, write)


def load_stl(path: str | os.PathLike[str]) -> Mesh:
    """Read a binary STL file (vertices shared between triangles are merged).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    Mesh

    Raises
    ------
    ValueError
        The file is ASCII STL or its size does not match its triangle count.
    """
    data = Path(path).read_bytes()
    if len(data) < 84:
        raise ValueError(f"{path}: {len(data)} bytes is too short for a binary STL (needs >= 84)")
    n = int(np.frombuffer(data, "<u4", count=1, offset=80)[0])
    expected = 84 + n * _STL_RECORD.itemsize
    if len(data) != expected:
        hint = " (looks like ASCII STL, which is not supported)" if data[:5].lower() == b"solid" else ""
        raise ValueError(f"{path}: header says {n} triangles = {expected} bytes but the file has {len(data)}{hint}")
    rec = np.frombuffer(data, _STL_RECORD, count=n, offset=84)
    corners = rec["v"].reshape(-1, 3)
    verts, inverse = np.unique(corners, axis=0, return_inverse=True)
    return Mesh(verts, inverse.reshape(-1, 3), {"source": str(path)})


# ------------------------------------------------------- bone: closing, filling, holes counted
#: Radius of the closing ball in :func:`bone_mask` (mm): bridges gaps in the
#: cortex up to about twice this wide (partial-volume gaps of thin cortex).
BONE_CLOSING_MM = 3.0

#: In-plane holes up to this area (mm^2) are filled slice by slice in
#: :func:`bone_mask`: the marrow space of a rib or a vertebral body seen in one
#: axial slice.  The chest, the pelvic inlet and the spinal canal of a whole
#: vertebral ring are larger and stay open.
BONE_MAX_HOLE_MM2 = 150.0


def _ball_closing(mask: np.ndarray, spacing: ArrayLike, radius_mm: float) -> np.ndarray:
    """Binary closing with a ball of ``radius_mm`` in mm (an ellipsoid in voxels).

    The footprint holds every voxel offset within ``radius_mm`` (Euclidean, in
    mm), so an axis whose spacing exceeds the radius is not closed along at
    all.  The erosion treats the outside of the scan as bone, so objects at the
    scan's edge are not eaten.

    >>> m = np.zeros((1, 9, 9), bool); m[0, 3:6, 1:4] = m[0, 3:6, 5:8] = True  # a 1-voxel gap
    >>> bool(_ball_closing(m, (5.0, 1.0, 1.0), 1.5)[0, 4, 4]), bool(_ball_closing(m, (5.0, 1.0, 1.0), 0.5)[0, 4, 4])
    (True, False)
    """
    from scipy import ndimage

    spacing = np.asarray(spacing, dtype=float)
    half = [int(np.floor(radius_mm / s)) for s in spacing]
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    ball = sum((g * s / radius_mm) ** 2 for g, s in zip(grid, spacing)) <= 1.0
    dilated = ndimage.binary_dilation(mask, structure=ball)
    return ndimage.binary_erosion(dilated, structure=ball, border_value=1)


def bone_mask(
    volume: Volume,
    *,
    threshold_hu: float = LEVELS["bone"],
    closing_mm: float | None = BONE_CLOSING_MM,
    fill: bool = True,
    max_hole_mm2: float = BONE_MAX_HOLE_MM2,
) -> np.ndarray:
    """Bone as a mask with the cortex closed and the marrow filled, ready to mesh.

    A bone surface straight from a 300 HU threshold is full of holes: where the
    cortex is thinner than a voxel its HU is averaged with the marrow or soft
    tissue (partial volume) and drops below the threshold, and the marrow
    itself (fatty, below 300 HU) gives a second, inner surface.  This mask

    1. thresholds at ``threshold_hu``,
    2. closes gaps with a ball of ``closing_mm`` (in mm, so the same on any
       pixel size; along an axis whose spacing is larger than the ball,
       nothing is bridged),
    3. fills enclosed cavities in 3-D and, in each axial slice, holes up to
       ``max_hole_mm2`` (the marrow of a rib or a vertebral body).

    Parameters
    ----------
    volume : Volume
        CT in HU.
    threshold_hu : float, default 300, keyword-only
        Bone starts here (``LEVELS["bone"]``).
    closing_mm : float or None, default 3.0
        Radius of the closing ball in mm; ``None`` or 0 skips the closing.
    fill : bool, default True
        Fill cavities (3-D) and small in-plane holes (per slice).
    max_hole_mm2 : float, default 150
        Largest in-plane hole (mm^2) filled slice by slice.

    Returns
    -------
    ndarray of bool, shape of ``volume``
        Mesh it with ``surface_mesh(volume.with_array(mask))`` and count its
        holes with :func:`mesh_holes`.

    Notes
    -----
    Closing cannot bring back what the scan did not sample: on 5-8 mm slices a
    rib that runs obliquely through the slice appears in one slice and is gone
    in the next, and no ball smaller than the slice spacing joins the two.
    Thin slices (1 mm or less) are the real cure; closing and filling then mend
    the partial-volume gaps that remain.

    Examples
    --------
    >>> z, y, x = np.mgrid[:20, :40, :40]
    >>> r = np.hypot(y - 20, x - 20)
    >>> hu = np.where((r > 6) & (r < 10), 700, 50).astype(np.int16)   # a bone tube, marrow at 50 HU
    >>> hu[:, 20, 5:15] = 50                                            # a crack through its wall
    >>> tube = Volume(hu, spacing=(1, 1, 1))
    >>> raw = bone_mask(tube, closing_mm=None, fill=False)
    >>> mended = bone_mask(tube)
    >>> bool(raw[10, 20, 12]), bool(mended[10, 20, 12]), bool(mended[10, 20, 20])  # crack, marrow
    (False, True, True)
    """
    from scipy import ndimage
    from skimage.morphology import remove_small_holes

    volume = as_volume(volume)
    mask = np.asarray(volume.hu) >= threshold_hu
    if closing_mm:
        mask = _ball_closing(mask, volume.spacing, float(closing_mm))
    if fill:
        mask = ndimage.binary_fill_holes(mask)
        pixels = max_hole_mm2 / (volume.spacing[1] * volume.spacing[2])
        for k in range(mask.shape[0]):
            if mask[k].any():
                mask[k] = remove_small_holes(mask[k], max_size=int(pixels))
    return mask


def mesh_holes(mesh: Mesh) -> dict[str, int]:
    """Count what makes a surface "not watertight": pieces, tunnels, open borders.

    Parameters
    ----------
    mesh : Mesh

    Returns
    -------
    dict of int
        ``pieces``: separate surfaces (a rib broken into three fragments is
        three pieces; a hollow bone is two, the outer and the inner surface);
        ``tunnels``: holes *through* a closed surface (a doughnut has one, a
        sphere none; a gap in a bone's cortex joining the outer and the inner
        surface is one); ``open_borders``: loops of edges with a triangle on
        one side only (an open surface; 0 for :func:`surface_mesh`'s closed
        meshes); ``euler``: V - E + F; ``nonmanifold_edges``: edges shared by
        more than two triangles (then ``tunnels`` is approximate).

    Notes
    -----
    Euler's formula: for closed surfaces V - E + F = 2 x pieces - 2 x tunnels
    (each open border loop takes one more off), so counting vertices, edges
    and triangles is enough to count tunnels.  MeshLab's *Filters > Quality
    Measure and Computations > Compute Topological Measures* reports the same
    counts (as connected components, genus and holes).

    Examples
    --------
    >>> z, y, x = np.mgrid[:24, :40, :40]
    >>> ring = (np.abs(z - 12) < 4) & (np.abs(np.hypot(y - 20, x - 20) - 12) < 4)  # a doughnut
    >>> mesh_holes(surface_mesh(ring, spacing=(1, 1, 1), max_triangles=None))["tunnels"]
    1
    >>> m = Mesh(np.eye(3, dtype=np.float32), np.array([[0, 1, 2]]))        # one open triangle
    >>> {k: mesh_holes(m)[k] for k in ("pieces", "tunnels", "open_borders")}
    {'pieces': 1, 'tunnels': 0, 'open_borders': 1}
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    faces = np.asarray(mesh.faces, dtype=np.int64)
    if faces.size == 0:
        return {"pieces": 0, "tunnels": 0, "open_borders": 0, "euler": 0, "nonmanifold_edges": 0}
    used = np.unique(faces)
    n = int(used.max()) + 1
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    key = edges[:, 0] * n + edges[:, 1]
    uniq, counts = np.unique(key, return_counts=True)
    euler = used.size - uniq.size + faces.shape[0]

    def components(a, b):
        g = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
        _, lab = connected_components(g, directed=False)
        return lab

    lab = components(edges[:, 0], edges[:, 1])
    pieces = np.unique(lab[used]).size
    border = uniq[counts == 1]
    ba, bb = border // n, border % n
    open_borders = 0
    if border.size:
        blab = components(ba, bb)
        open_borders = np.unique(blab[np.unique(np.concatenate([ba, bb]))]).size
    tunnels = (2 * pieces - euler - open_borders) // 2
    return {"pieces": int(pieces), "tunnels": int(max(tunnels, 0)), "open_borders": int(open_borders),
            "euler": int(euler), "nonmanifold_edges": int(np.count_nonzero(counts > 2))}


def crop_mesh(mesh: Mesh, lo_mm: Sequence[float], hi_mm: Sequence[float]) -> Mesh:
    """The triangles of a mesh that lie inside a box (for a close-up).

    Parameters
    ----------
    mesh : Mesh
    lo_mm, hi_mm : 3 floats
        Opposite corners ``(x, y, z)`` of the box in LPS mm.

    Returns
    -------
    Mesh
        Only the triangles whose three corners are inside the box, with the
        unused vertices dropped; the cut leaves open borders.

    Examples
    --------
    >>> m = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [9, 9, 9]], np.float32), np.array([[0, 1, 2], [1, 2, 3]]))
    >>> c = crop_mesh(m, (-1, -1, -1), (2, 2, 2))
    >>> c.n_triangles, c.n_vertices
    (1, 3)
    """
    lo, hi = np.asarray(lo_mm, np.float32), np.asarray(hi_mm, np.float32)
    inside = np.all((mesh.verts >= lo) & (mesh.verts <= hi), axis=1)
    faces = mesh.faces[inside[mesh.faces].all(axis=1)]
    used, inverse = np.unique(faces, return_inverse=True)
    return Mesh(mesh.verts[used], inverse.reshape(-1, 3), dict(mesh.meta, cropped_to=[list(lo_mm), list(hi_mm)]))
