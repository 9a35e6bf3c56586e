"""Surface meshes of a 1 mm chest CT: helpers.mesh vs plain marching cubes (the 2017 way).

Inputs: the synthetic sample CT (or bench_resample's numpy phantom until the
generator exists) and the real B40f series in ``../shared/data`` when present,
each resampled to 1 mm isotropic with ``helpers.resample.resample`` (linear).
The resampling is not part of the timed step.

Rows per input and level (bone 300 HU, air/tissue -300 HU):

* ``helpers.mesh.surface_mesh`` with its defaults (auto step, decimated to
  150 000 triangles) -- the issue-5 target is under 3 s;
* the same with ``step_size=1`` (full-resolution marching cubes, then
  decimation), to show what the auto step saves;
* plain ``skimage.measure.marching_cubes`` at step 1 on the whole scan (the
  2017 ``plot_3d``), no decimation.

Notes give the triangle count, the HTML weight of a plotly ``Mesh3d`` of the
result (measured with ``fig.to_html`` for the decimated meshes, computed from
the array sizes for the raw one: 12 bytes per vertex and per face, base64) and,
for the auto-step mesh, the mean distance of its vertices to the
full-resolution surface (how much shape the coarser step lost).
"""

from __future__ import annotations

import shutil

import numpy as np

from . import common
from .bench_resample import real_b40f, synthetic

STEP = "surface mesh of a 1 mm chest CT"
LEVELS = {"bone 300 HU": 300.0, "air/tissue -300 HU": -300.0}
BUDGET = 150_000


def _plain(hu, spacing, level):
    from skimage.measure import marching_cubes

    return marching_cubes(hu, level=level, spacing=spacing, step_size=1, allow_degenerate=False)


def _html_mb(mesh) -> float:
    from helpers.mesh import mesh_figure

    return len(mesh_figure(mesh).to_html(include_plotlyjs=False, full_html=False)) / common.MB


def _raw_html_mb(n_verts: int, n_faces: int) -> float:
    return (n_verts * 12 + n_faces * 12) * 4 / 3 / common.MB


def _mean_distance(a, b) -> float:
    from scipy.spatial import cKDTree

    return float(cKDTree(b.verts).query(a.verts, k=1)[0].mean())


# factories for measure_in_subprocess
def child_ours(path: str, level: float, step: str = "auto"):
    from helpers.mesh import surface_mesh

    vol = common.load_volume(path)
    step_size = step if step == "auto" else int(step)
    return lambda: surface_mesh(vol, level=level, step_size=step_size, max_triangles=BUDGET)


def child_plain(path: str, level: float):
    vol = common.load_volume(path)
    return lambda: _plain(vol.hu, vol.spacing, level)


def bench_one(vol, label: str, *, quick: bool, tmp) -> list[dict]:
    import time

    from helpers.mesh import surface_mesh
    from helpers.resample import resample

    t0 = time.perf_counter()
    iso = resample(vol, spacing=(1.0, 1.0, 1.0))
    t_res = time.perf_counter() - t0
    iso = iso.with_array(iso.hu.astype(np.float32))
    path = common.save_volume(iso, tmp, f"iso-{len(list(tmp.iterdir()))}")
    dims = "x".join(str(n) for n in iso.shape[::-1])
    data = f"{label} -> {dims} at 1 mm (helpers.resample, {t_res:.1f} s, not timed)"
    rows = []
    repeats = 2 if quick else 5
    for name, level in LEVELS.items():
        auto = surface_mesh(iso, level=level, max_triangles=BUDGET)
        full = surface_mesh(iso, level=level, step_size=1, max_triangles=BUDGET)
        verts, faces, _, _ = _plain(iso.hu, iso.spacing, level)
        n_plain_v, n_plain_f = len(verts), len(faces)
        del verts, faces
        times = common.alternate(
            {
                "auto": lambda level=level: surface_mesh(iso, level=level, max_triangles=BUDGET),
                "full": lambda level=level: surface_mesh(iso, level=level, step_size=1, max_triangles=BUDGET),
                "plain": lambda level=level: _plain(iso.hu, iso.spacing, level),
            },
            repeats=repeats,
        )
        t_auto, t_full, t_plain = (common.median(times[k]) for k in ("auto", "full", "plain"))
        mem = {k: common.measure_in_subprocess(f"bench.bench_mesh:{fn}", path, level, *extra)["peak_mb"]
               for k, fn, extra in (("auto", "child_ours", ()), ("full", "child_ours", ("1",)),
                                    ("plain", "child_plain", ()))}
        dist = _mean_distance(auto, full)
        step = f"{STEP}, {name}"
        rows += [
            common.row(step=step, implementation="helpers.mesh.surface_mesh (auto step, 150k budget)", data=data,
                       times=times["auto"], ratio=t_auto / t_plain, ratio_vs="plain marching cubes",
                       peak_mb=mem["auto"],
                       notes=f"{auto.n_triangles:,} triangles (step {auto.meta['step_size']}, raw "
                             f"{auto.meta['raw_triangles']:,}); plotly HTML {_html_mb(auto):.1f} MB; "
                             f"mean vertex distance to the step-1 mesh {dist:.2f} mm; target < 3 s"),
            common.row(step=step, implementation="helpers.mesh.surface_mesh (step_size=1, 150k budget)", data=data,
                       times=times["full"], ratio=t_full / t_plain, ratio_vs="plain marching cubes",
                       peak_mb=mem["full"],
                       notes=f"{full.n_triangles:,} triangles (raw {full.meta['raw_triangles']:,}); "
                             f"plotly HTML {_html_mb(full):.1f} MB"),
            common.row(step=step, implementation="skimage marching_cubes, step 1, whole scan (2017)", data=data,
                       times=times["plain"], ratio=1.0, ratio_vs="itself", peak_mb=mem["plain"],
                       notes=f"{n_plain_f:,} triangles, {n_plain_v:,} vertices; plotly HTML would be "
                             f"~{_raw_html_mb(n_plain_v, n_plain_f):.0f} MB (computed from array sizes)"),
        ]
        if quick:
            break
    return rows


def run(*, quick: bool = False) -> list[dict]:
    """All rows of this benchmark (see the module docstring)."""
    tmp = common.scratch_dir()
    rows: list[dict] = []
    try:
        vol, label = synthetic(quick)
        rows += bench_one(vol, label, quick=quick, tmp=tmp)
        del vol
        if not quick:
            vol, label = real_b40f()
            if vol is None:
                rows.append(common.row(step=STEP, implementation="(all)", data=label,
                                       notes="real case not found: real-data rows not measured"))
            else:
                rows += bench_one(vol, label, quick=quick, tmp=tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    import json
    import sys

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
