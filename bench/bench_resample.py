"""Resampling to 1 mm: helpers.resample vs SimpleITK vs scipy vs the 2017 zoom.

Inputs: the project's synthetic chest CT (``helpers.sample``; a numpy phantom of
the same size, 512x512x120 at 0.7x0.7x2.5 mm, until the sample generator exists)
and the real B40f series in ``../shared/data`` when present.

Rows per input: our linear resample (ratio vs SimpleITK), SimpleITK linear
``sitk.Resample`` on the *same output grid*, ``scipy.ndimage.affine_transform``
(order 1, the obvious scipy route), and the 2017 ``scipy.ndimage.zoom`` (cubic,
run once, not with ``--quick``).  Notes give the mean absolute difference (MAD,
HU) against SimpleITK on the same grid: for the 2017 zoom, whose grid is
stretched, this measures how far its voxels are from where it says they are.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from . import common

REAL_B40F = common.REPO.parent / "shared" / "data" / "lung-pet-ct-dx-A0002" / "ct-b40f"
TARGET = (1.0, 1.0, 1.0)
STEP = "resample to 1 mm"


# ---------------------------------------------------------------------- inputs
def phantom(shape=(120, 512, 512), spacing=(2.5, 0.7, 0.7), seed: int = 0):
    """A cheap synthetic chest-like CT (int16 HU): body ellipse, two lungs, a spine, noise."""
    from helpers.volume import Volume

    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    z = (np.arange(nz, dtype=np.float32) / max(nz - 1, 1))[:, None, None]
    y = ((np.arange(ny, dtype=np.float32) - ny / 2) / (ny / 2))[None, :, None]
    x = ((np.arange(nx, dtype=np.float32) - nx / 2) / (nx / 2))[None, None, :]
    hu = np.full(shape, -1000, np.int16)
    body = (x / 0.85) ** 2 + (y / 0.6) ** 2 < 1
    hu[np.broadcast_to(body, shape)] = 40
    for cx in (-0.4, 0.4):
        lung = ((x - cx) / 0.3) ** 2 + ((y + 0.05) / 0.42) ** 2 + ((z - 0.6) / 0.55) ** 2 < 1
        hu[lung] = -850
    spine = (x / 0.08) ** 2 + ((y - 0.42) / 0.08) ** 2 < 1
    hu[np.broadcast_to(spine, shape)] = 700
    hu += rng.normal(0, 15, size=shape).astype(np.int16)
    origin = (-nx * spacing[2] / 2, -ny * spacing[1] / 2, -300.0)
    return Volume(hu, spacing=spacing, origin=origin, meta={"series_description": "bench phantom"})


def synthetic(quick: bool):
    """The sample CT if the generator is available, else the phantom (smaller with ``quick``)."""
    if not quick:
        try:
            from helpers.io import load_series
            from helpers.sample import ensure_sample

            folder = ensure_sample()
            vol = load_series(Path(folder) / "dicom")
            d = "x".join(str(n) for n in vol.shape[::-1])
            return vol, f"sample CT {d}, {vol.spacing[2]:.2g}x{vol.spacing[1]:.2g}x{vol.spacing[0]:.3g} mm"
        except (ImportError, AttributeError, NotImplementedError) as exc:
            print(f"[bench_resample] sample generator not available ({type(exc).__name__}); using the phantom",
                  file=sys.stderr)
    shape = (60, 256, 256) if quick else (120, 512, 512)
    spacing = (2.5, 1.4, 1.4) if quick else (2.5, 0.7, 0.7)
    vol = phantom(shape, spacing)
    d = "x".join(str(n) for n in shape[::-1])
    return vol, f"synthetic phantom {d}, {spacing[2]}x{spacing[1]}x{spacing[0]} mm, int16"


def real_b40f():
    """The real B40f series (int16/float32 HU) via the project loader, else SimpleITK; None if absent."""
    if not REAL_B40F.is_dir():
        return None, "real B40f (absent)"
    try:
        from helpers.io import load_series

        vol = load_series(REAL_B40F)
        how = "helpers.io"
    except (ImportError, NotImplementedError, TypeError):
        import SimpleITK as sitk

        from helpers.volume import Volume

        r = sitk.ImageSeriesReader()
        r.SetFileNames(r.GetGDCMSeriesFileNames(str(REAL_B40F)))
        img = r.Execute()
        d = np.asarray(img.GetDirection()).reshape(3, 3)[:, ::-1]
        vol = Volume(sitk.GetArrayFromImage(img), spacing=img.GetSpacing()[::-1], origin=img.GetOrigin(), direction=d)
        how = "SimpleITK"
    dims = "x".join(str(n) for n in vol.shape[::-1])
    sp = f"{vol.spacing[2]:.4g}x{vol.spacing[1]:.4g}x{vol.spacing[0]:.3g}"
    return vol, f"real B40f {dims}, {sp} mm ({vol.hu.dtype}, read by {how})"


# ---------------------------------------------------------------------- implementations
def to_sitk(vol):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(vol.hu)
    img.SetSpacing(tuple(float(s) for s in vol.spacing[::-1]))
    img.SetOrigin(tuple(float(o) for o in vol.origin))
    img.SetDirection(tuple(vol.direction[:, ::-1].ravel().tolist()))
    return img


def sitk_resample(img, grid, interpolator: str = "sitkLinear"):
    """SimpleITK on exactly our output grid (size, origin, spacing, direction)."""
    import SimpleITK as sitk

    shape, origin, spacing = grid
    return sitk.Resample(
        img, [int(n) for n in shape[::-1]], sitk.Transform(), getattr(sitk, interpolator), origin, spacing[::-1],
        img.GetDirection(), -1024.0, sitk.sitkFloat32,
    )


def scipy_affine(vol, grid):
    """scipy.ndimage.affine_transform, order 1, float32 output, same grid (a diagonal map)."""
    from scipy import ndimage

    shape, origin, spacing = grid
    scale = np.asarray(spacing) / np.asarray(vol.spacing)
    offset = vol.lps_to_index(origin)
    return ndimage.affine_transform(vol.hu, scale, offset=offset, output_shape=shape, output=np.float32,
                                    order=1, mode="nearest", prefilter=False)


def legacy_zoom(vol):
    """The 2017 call: helpers.legacy.resample on the int16 array with a stub slice header."""
    from pydicom.dataset import Dataset

    from helpers import legacy

    ds = Dataset()
    ds.SliceThickness = vol.spacing[0]
    ds.PixelSpacing = [vol.spacing[1], vol.spacing[2]]
    image = vol.hu if vol.hu.dtype == np.int16 else np.rint(vol.hu).astype(np.int16)
    return legacy.resample(image, [ds], list(TARGET))[0]


def grid_of(vol):
    """(shape, origin, spacing) of helpers.resample's output grid, for SimpleITK and scipy."""
    from helpers.resample import output_grid

    g = output_grid(vol, spacing=TARGET)
    return g["shape"], g["origin"], g["spacing"]


# factories for measure_in_subprocess: load the input, return the call to measure
def child_ours(path: str, order: int = 1):
    from helpers.resample import resample
    from helpers.volume import Volume

    vol = common.load_volume(path)
    resample(Volume(vol.hu[:4, :16, :16].copy(), spacing=vol.spacing), spacing=TARGET, order=order)  # warm-up
    return lambda: resample(vol, spacing=TARGET, order=order)


def child_sitk(path: str, interpolator: str = "sitkLinear"):
    vol = common.load_volume(path)
    grid = grid_of(vol)
    img = to_sitk(vol)
    del vol
    return lambda: sitk_resample(img, grid, interpolator)


def child_scipy(path: str):
    vol = common.load_volume(path)
    grid = grid_of(vol)
    return lambda: scipy_affine(vol, grid)


def child_zoom(path: str):
    vol = common.load_volume(path)
    return lambda: legacy_zoom(vol)


# ---------------------------------------------------------------------- run
def _mad(a, b) -> float:
    return float(np.mean(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


def bench_one(vol, label: str, *, quick: bool, tmp: Path) -> list[dict]:
    import SimpleITK as sitk

    from helpers.resample import estimate_memory, resample

    grid = grid_of(vol)
    est = estimate_memory(vol, spacing=TARGET)
    ours = resample(vol, spacing=TARGET)
    img = to_sitk(vol)
    ref = sitk.GetArrayFromImage(sitk_resample(img, grid))
    mad_ours = _mad(ours.hu, ref)
    out_mb = ours.hu.nbytes / common.MB
    del ours
    path = common.save_volume(vol, tmp, label.split()[0] + f"-{len(list(tmp.iterdir()))}")

    repeats = 3 if quick else 7
    times = common.alternate(
        {
            "ours": lambda: resample(vol, spacing=TARGET),
            "sitk": lambda: sitk_resample(img, grid),
        },
        repeats=repeats,
    )
    t_ours, t_sitk = common.median(times["ours"]), common.median(times["sitk"])
    mem_ours = common.measure_in_subprocess("bench.bench_resample:child_ours", path)
    mem_sitk = common.measure_in_subprocess("bench.bench_resample:child_sitk", path)
    data = label + f" -> {'x'.join(map(str, grid[0][::-1]))} at 1 mm"
    rows = [
        common.row(step=STEP, implementation="helpers.resample.resample (linear)", data=data, times=times["ours"],
                   ratio=t_ours / t_sitk, ratio_vs="SimpleITK linear", peak_mb=mem_ours["peak_mb"],
                   notes=f"MAD {mad_ours:.3g} HU vs SimpleITK; output {out_mb:.0f} MB float32, "
                         f"peak/output {mem_ours['peak_mb'] / out_mb:.2f}; estimate_memory said "
                         f"{est['peak_bytes'] / common.MB:.0f} MB"),
        common.row(step=STEP, implementation="SimpleITK sitk.Resample (sitkLinear)", data=data, times=times["sitk"],
                   ratio=t_sitk / t_ours, ratio_vs="helpers", peak_mb=mem_sitk["peak_mb"],
                   notes=f"same output grid, float32 output; SimpleITK {sitk.Version.VersionString()}, "
                         f"{sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()} threads"),
    ]
    # scipy's general affine route: one run in a fresh process (time and memory)
    sc = common.measure_in_subprocess("bench.bench_resample:child_scipy", path)
    sc_mad = _mad(scipy_affine(vol, grid), ref) if not quick else None
    rows.append(common.row(
        step=STEP, implementation="scipy.ndimage.affine_transform (order=1)", data=data, median_s=sc["time_s"],
        ratio=sc["time_s"] / t_ours, ratio_vs="helpers", peak_mb=sc["peak_mb"],
        notes="one run in a fresh process; single-threaded"
              + (f"; MAD {sc_mad:.3g} HU vs SimpleITK" if sc_mad is not None else ""),
    ))
    if not quick:
        ours3 = resample(vol, spacing=TARGET, order=3)
        ref3 = sitk.GetArrayFromImage(sitk_resample(img, grid, "sitkBSpline"))
        mad3 = _mad(ours3.hu, ref3)
        del ours3, ref3
        t3 = common.alternate(
            {"ours": lambda: resample(vol, spacing=TARGET, order=3),
             "sitk": lambda: sitk_resample(img, grid, "sitkBSpline")},
            repeats=3,
        )
        m3 = common.measure_in_subprocess("bench.bench_resample:child_ours", path, 3)
        m3s = common.measure_in_subprocess("bench.bench_resample:child_sitk", path, "sitkBSpline")
        a, b = common.median(t3["ours"]), common.median(t3["sitk"])
        rows += [
            common.row(step="resample to 1 mm, cubic", implementation="helpers.resample.resample (order=3)",
                       data=data, times=t3["ours"], ratio=a / b, ratio_vs="SimpleITK B-spline",
                       peak_mb=m3["peak_mb"], notes=f"MAD {mad3:.3g} HU vs SimpleITK sitkBSpline"),
            common.row(step="resample to 1 mm, cubic", implementation="SimpleITK sitk.Resample (sitkBSpline)",
                       data=data, times=t3["sitk"], ratio=b / a, ratio_vs="helpers", peak_mb=m3s["peak_mb"],
                       notes="same output grid"),
        ]
        z = common.measure_in_subprocess("bench.bench_resample:child_zoom", path, timeout=1800)
        old = legacy_zoom(vol)
        same = old.shape == ref.shape
        mad_zoom = _mad(old, ref) if same else None
        del old
        rows.append(common.row(
            step=STEP, implementation="2017 helpers.legacy.resample (scipy zoom, cubic)", data=data,
            median_s=z["time_s"], ratio=z["time_s"] / t_ours, ratio_vs="helpers", peak_mb=z["peak_mb"],
            notes="one run in a fresh process; int16 output; "
                  + (f"MAD {mad_zoom:.3g} HU vs SimpleITK on the grid it claims (corner-aligned zoom)"
                     if same else f"shape {old.shape} differs from {ref.shape}"),
        ))
    else:
        rows.append(common.row(step=STEP, implementation="2017 helpers.legacy.resample (scipy zoom, cubic)",
                               data=data, notes="not run with --quick (10-30 s)"))
    return rows


def run(*, quick: bool = False) -> list[dict]:
    """All rows of this benchmark (see the module docstring)."""
    tmp = common.scratch_dir()
    rows = []
    try:
        vol, label = synthetic(quick)
        rows += bench_one(vol, label, quick=quick, tmp=tmp)
        del vol
        if not quick:
            vol, label = real_b40f()
            if vol is None:
                rows.append(common.row(step=STEP, implementation="(all)", data=label,
                                       notes=f"{REAL_B40F} not found: real-data rows not measured"))
            else:
                rows += bench_one(vol, label, quick=quick, tmp=tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
