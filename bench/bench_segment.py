"""Benchmark: lung segmentation -- ``segment_lungs`` against the two 2017 methods, same run.

Data
----
* **synthetic 512x512x130**: the bundled sample when ``helpers.sample`` can build
  it (ground truth from ``load_labels``), else the numpy chest phantom of
  ``helpers/testing/lung_phantom.py`` at 512x512, 0.70 mm pixels, 2.5 mm slices, 130
  slices, 20 HU noise (ground truth known by construction).  Dice and HD95 per
  lung, share of the tumour and nodule inside the mask, trachea and heart
  inside the mask.
* **real B40f / B70f** (../shared/data/lung-pet-ct-dx-A0002, 30 slices of 8 mm;
  skipped when absent): lung volumes, lung_qc flags, and the share of the
  annotated tumour boxes' solid tissue (HU > -400) kept inside each method's
  mask.  The boxes (PASCAL-VOC XML named by SOP Instance UID of either series)
  are on the same grid for both series.

* **phantom cases** (``helpers/testing/lung_phantom.py``, 256x256, 2.5 mm slices, 20 HU
  noise): a hilar mass against the right main bronchus, a mass against the
  mediastinum by the aorta, a mass on the posterior chest wall, a pleural
  effusion, a chest-abdomen-pelvis extent.  ``segment_lungs`` only, one run:
  Dice per lung, the mass (or, without one, the chest-wall tumour) kept, the
  effusion and heart inside the mask.

Timing: the three methods alternate round-robin (``bench.common.alternate``);
median wall time.  Peak memory: one call in a fresh process
(``bench.common.measure_in_subprocess``), also given as a multiple of the HU
volume's size.  The 2017 per-slice method is the faithful rebuild in
``helpers.segment`` (numpy k-means instead of scikit-learn's, see its notes).

Run: ``.venv/bin/python -m bench --only segment`` (or ``bench/bench_segment.py``).
"""

from __future__ import annotations

import glob
import os
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "lung-pet-ct-dx-A0002"
METHODS = {
    "new": ("helpers.segment.segment_lungs", "segment_lungs"),
    "2017": ("helpers.legacy.segment_lungs_2017 (per-slice make_lungmask)", "segment_lungs_2017"),
    "kaggle": ("helpers.legacy.segment_lungs_kaggle3d (-320 HU, largest air)", "segment_lungs_kaggle3d"),
}


def _method(key: str):
    """The function :data:`METHODS` names for ``key`` (``helpers.segment`` or ``helpers.legacy``)."""
    import helpers.legacy
    import helpers.segment

    name = METHODS[key][1]
    return getattr(helpers.segment if key == "new" else helpers.legacy, name)
CARINA_Z_MM = 160.0  # the phantom's carina height
#: Phantom cases (name: make_phantom options) reported one row each.
PHANTOM_CASES = {
    "hilar mass against the bronchus": dict(mass="hilar"),
    "mass against the mediastinum by the aorta": dict(mass="aortic"),
    "mass on the posterior chest wall": dict(mass="posterior"),
    "effusion": dict(effusion=True),
    "chest-abdomen-pelvis": dict(z_mm=(-300.0, 230.0)),
}


# ------------------------------------------------------------------ child-process factories
def call(path: str, method: str):
    """Factory for ``measure_in_subprocess``: load ``path`` and return the call of ``method``."""
    import skimage.measure  # noqa: F401  (imported before the measured call: module import is not
    import skimage.morphology  # noqa: F401  segmentation memory)
    import skimage.segmentation  # noqa: F401

    vol = common.load_volume(path)
    fn = _method(method)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(vol)

    return run


# ------------------------------------------------------------------ data
def _synthetic(quick: bool, scratch: Path):
    """(name, volume path, truth dict) of the synthetic case."""
    try:
        from helpers.io import load_series
        from helpers.sample import ensure_sample, load_labels

        d = Path(ensure_sample())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vol = load_series(d / "dicom")
        lab = load_labels(d)
        truth = {"lungs": np.asarray(lab["lungs"])}
        legend = {str(k).lower(): int(v) for k, v in dict(lab.get("legend", {})).items()}
        parts = (("tumour", "tumour"), ("nodule", "nodule"), ("trachea", "airway"), ("heart", "heart_vessels"))
        for part, key in parts:
            if key in legend and "tissue" in lab:
                truth[part] = np.asarray(lab["tissue"]) == legend[key]
        name = f"sample {'x'.join(map(str, vol.shape[::-1]))}"
    except Exception:  # the sample is not available: use the phantom
        from helpers.testing.lung_phantom import make_phantom

        n = 256 if quick else 512
        vol, t = make_phantom(n_xy=n, slice_mm=2.5, z_mm=(-100.0, 225.0), noise_hu=20.0)
        z = vol.slice_positions
        truth = {"lungs": t["lungs"], "tumour": t["tumour"], "nodule": t["nodule"], "heart": t["heart"],
                 "trachea": t["airway"] & (z > CARINA_Z_MM + 5)[:, None, None]}
        name = f"phantom {n}x{n}x{vol.shape[0]}"
    path = common.save_volume(vol, scratch, "synthetic")
    return name, vol, path, truth


def _boxes(vols) -> np.ndarray:
    uids = {}
    for v in vols:
        uids.update({u: k for k, u in enumerate(v.meta["sop_instance_uids"])})
    m = np.zeros(vols[0].shape, bool)
    for f in glob.glob(str(REAL / "tumour-boxes" / "*.xml")):
        k = uids.get(os.path.basename(f)[:-4])
        if k is None:
            continue
        for bb in ET.parse(f).iter("bndbox"):
            x0, y0, x1, y1 = (int(bb.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax"))
            m[k, y0 : y1 + 1, x0 : x1 + 1] = True
    return m


# ------------------------------------------------------------------ run
def _time_all(vol, repeats):
    results = {}

    def bound(key):
        fn = _method(key)

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results[key] = fn(vol)

        return run

    times = common.alternate({k: bound(k) for k in METHODS}, repeats=repeats, warmup=0 if repeats == 1 else 1)
    return times, results


def _phantom_rows(n: int, scratch: Path) -> list[dict]:
    """One row per :data:`PHANTOM_CASES` entry: ``segment_lungs`` on an ``n`` x ``n`` phantom, one run."""
    from helpers.metrics import dice
    from helpers.segment import segment_lungs
    from helpers.testing.lung_phantom import make_phantom

    rows = []
    for i, (case, kw) in enumerate(PHANTOM_CASES.items()):
        vol, t = make_phantom(n_xy=n, slice_mm=2.5, noise_hu=20.0, **kw)
        vpath = common.save_volume(vol, scratch, f"phantom-{i}")
        res = {}

        def run_ours(vol=vol, res=res):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res["m"] = segment_lungs(vol)

        times = common.alternate({"new": run_ours}, repeats=1, warmup=0)
        m = res["m"]
        mem = common.measure_in_subprocess("bench.bench_segment:call", vpath, "new")
        Path(vpath).unlink()  # up to 28 MB each; the scratch folder is only removed by the OS
        mass, what = (t["mass"], "mass") if t["mass"].any() else (t["tumour"], "chest-wall tumour")
        parts = [f"Dice R {dice(m, t['lungs'], label=1):.3f} L {dice(m, t['lungs'], label=2):.3f}",
                 f"{what} in mask {100 * (m > 0)[mass].mean():.1f} %"]
        if t["effusion"].any():
            parts.append(f"effusion in mask {100 * (m > 0)[t['effusion']].mean():.1f} %")
        parts.append(f"heart in mask {100 * (m > 0)[t['heart']].mean():.1f} %")
        rows.append(common.row(
            step="lung segmentation", implementation=METHODS["new"][0],
            data=f"phantom {n}x{n}x{vol.shape[0]}: {case}", times=times["new"], peak_mb=mem["peak_mb"],
            notes="; ".join(parts),
        ))
    return rows


def run(*, quick: bool = False) -> list[dict]:
    from helpers.metrics import dice, hausdorff95
    from helpers.segment import lung_qc

    scratch = common.scratch_dir()
    repeats = 1 if quick else 3
    rows = []

    # -- synthetic
    name, vol, path, truth = _synthetic(quick, scratch)
    hu_mb = vol.hu.nbytes / common.MB
    times, res = _time_all(vol, repeats)
    med_2017 = common.median(times["2017"])
    lungs = truth["lungs"]
    for key, (impl, _) in METHODS.items():
        m = res[key]
        mem = common.measure_in_subprocess("bench.bench_segment:call", path, key)
        if key == "new":
            parts = [f"Dice R {dice(m, lungs, label=1):.3f} L {dice(m, lungs, label=2):.3f}",
                     f"HD95 R {hausdorff95(m, lungs, label=1, spacing=vol.spacing):.1f} "
                     f"L {hausdorff95(m, lungs, label=2, spacing=vol.spacing):.1f} mm"]
        else:
            parts = [f"Dice both lungs {dice(m > 0, lungs > 0):.3f} (no right/left split)",
                     f"HD95 {hausdorff95(m > 0, lungs > 0, spacing=vol.spacing):.1f} mm"]
        for part in ("tumour", "nodule", "trachea", "heart"):
            if part in truth and truth[part].any():
                parts.append(f"{part} in mask {100 * (m > 0)[truth[part]].mean():.1f} %")
        parts.append(f"peak {mem['peak_mb'] / hu_mb:.1f}x the HU volume ({hu_mb:.0f} MB {vol.hu.dtype})")
        t = times[key]
        rows.append(common.row(
            step="lung segmentation", implementation=impl, data=name, times=t,
            ratio=common.median(t) / med_2017 if key != "2017" else None,
            ratio_vs="2017 per-slice" if key != "2017" else "", peak_mb=mem["peak_mb"], notes="; ".join(parts),
        ))

    # -- real case
    if (REAL / "ct-b40f").is_dir():
        from helpers.io import load_series

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vols = {s: load_series(REAL / f"ct-{s}") for s in ("b40f", "b70f")}
        boxes = _boxes(list(vols.values()))
        for s, v in vols.items():
            vpath = common.save_volume(v, scratch, s)
            solid = boxes & (v.hu > -400)
            times, res = _time_all(v, repeats)
            med_2017 = common.median(times["2017"])
            for key, (impl, _) in METHODS.items():
                m = res[key]
                mem = common.measure_in_subprocess("bench.bench_segment:call", vpath, key)
                kept = 100 * (m > 0)[solid].mean()
                if key == "new":
                    qc = lung_qc(m, v, warn=False)
                    desc = (f"R {qc['right_ml']:.0f} mL, L {qc['left_ml']:.0f} mL, "
                            f"flags: {', '.join(qc['flags']) or 'none'}")
                else:
                    desc = f"both lungs {(m > 0).sum() * v.voxel_volume_ml:.0f} mL"
                rows.append(common.row(
                    step="lung segmentation", implementation=impl,
                    data=f"real {s.upper()} 512x512x{v.shape[0]} (8 mm)", times=times[key],
                    ratio=common.median(times[key]) / med_2017 if key != "2017" else None,
                    ratio_vs="2017 per-slice" if key != "2017" else "", peak_mb=mem["peak_mb"],
                    notes=f"tumour boxes' solid tissue (HU > -400) in mask {kept:.1f} %; {desc}",
                ))

    # -- phantom cases (ours only)
    rows += _phantom_rows(128 if quick else 256, scratch)
    return rows


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for r in run(quick=quick):
        print(f"{r['data']:28s} {r['implementation'][:40]:40s} {r['median_s']:7.2f} s  "
              f"{r['peak_mb']:7.0f} MB  {r['notes']}")
