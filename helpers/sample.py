"""The generated sample: a synthetic chest CT written as real DICOM, with ground truth.

The phantom is built in patient coordinates (millimetres, DICOM LPS: ``x`` grows
towards the patient's left, ``y`` towards the back, ``z`` towards the head), so the
``"full"`` and ``"small"`` sizes show the same anatomy at different resolutions.
Everything random goes through one seeded :class:`numpy.random.Generator`: the
same seed gives byte-identical files.

What is inside (bottom to top): the liver dome rising into the right lung base
(the right hemidiaphragm is higher than the left), stomach with a gas bubble and
spleen under the left dome, heart with epicardial fat, aorta (ascending, arch,
descending), pulmonary arteries and veins branching into both lungs, trachea,
carina and main bronchi ending at the hila, spine, ribs with costal cartilage,
sternum, scapulae, clavicles, subcutaneous fat and chest-wall muscle, a curved
table with an air cushion under the patient, a ~3 cm lobulated tumour touching
the chest wall of the right lung and a ~7 mm nodule in the left lung.

Public functions: :func:`make_phantom` (arrays in memory), :func:`make_sample`
(write DICOM + labels), :func:`ensure_sample` (generate once, atomically),
:func:`load_labels`, :func:`default_dicom_dir`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = [
    "GENERATOR_VERSION",
    "LEGEND",
    "make_phantom",
    "make_sample",
    "ensure_sample",
    "load_labels",
    "default_dicom_dir",
]

# The data root (``data/``, where the sample and fetched cases live) is helpers.data.DATA_DIR,
# read at call time, so a test that points it elsewhere moves both.

#: Bump whenever the output changes: :func:`ensure_sample` regenerates older samples.
GENERATOR_VERSION = "8"

#: Tissue label values of ``labels.npz["tissue"]``.
LEGEND = {
    "air_outside": 0,
    "fat": 1,
    "muscle": 2,
    "bone": 3,
    "cartilage": 4,
    "lung": 5,
    "airway": 6,
    "bronchus_in_lung": 7,
    "vessel_in_lung": 8,
    "heart_vessels": 9,
    "liver": 10,
    "soft_tissue": 11,
    "bowel_gas": 12,
    "tumour": 13,
    "nodule": 14,
    "table": 15,
    "table_air": 16,
}

#: Tissue labels that belong to a lung (a radiologist's lung region).
LUNG_TISSUES = ("lung", "bronchus_in_lung", "vessel_in_lung", "tumour", "nodule")

#: Mean HU of each tissue before blur and noise (bone is split into cortex and marrow).
HU = {
    "air": -1000.0,
    "fat": -100.0,
    "mediastinal_fat": -90.0,
    "muscle": 45.0,
    "cortical_bone": 900.0,
    "cancellous_bone": 250.0,
    "disc": 80.0,
    "cartilage": 120.0,
    "lung": -850.0,
    "lung_gradient_per_mm": 0.45,  # dependent (posterior) lung is denser when supine
    "blood": 40.0,
    "liver": 60.0,
    "spleen": 48.0,
    "soft_tissue": 35.0,
    "csf": 15.0,
    "stomach_fluid": 12.0,
    "thyroid": 90.0,
    "tumour": 40.0,
    "nodule": 35.0,
    "table": 150.0,
    "table_core": -950.0,
}

#: Grid of each size: pixels per side, pixel spacing (mm), number of slices, slice spacing (mm) and
#: the (0018,0050) Slice Thickness written in the headers (mm).  The thickness is larger than the
#: spacing, as in the overlapping reconstructions of clinical chest CT (3 mm slices every 2.5 mm).
SIZES = {
    "full": {"n": 512, "pixel_mm": 0.703125, "nz": 120, "dz": 2.5, "thickness": 3.0},
    "small": {"n": 128, "pixel_mm": 2.8125, "nz": 40, "dz": 7.5, "thickness": 10.0},
}

#: (0028,1052) Rescale Intercept of the slices (HU).  Slices below ``RESCALE_SPLIT`` of the scan's
#: height (feet half) are written with the first, the others with the second, their stored values
#: shifted to match: one series, two intercepts, as after a reconstruction in two batches or a
#: converter that picks the intercept per image.  The HU are the same; only the stored values and
#: the header differ.  Rescale Slope is 1 everywhere.
RESCALE_INTERCEPTS = (-1024.0, -1000.0)
RESCALE_SPLIT = 0.5

#: Image Position (Patient) z of the lowest slice, mm.
Z_BOTTOM_MM = -260.0
#: Noise standard deviation in HU after the point-spread blur, and its blur (mm).
NOISE_SD_HU = 14.0
PSF_SIGMA_MM = (0.9, 0.55, 0.55)
STAMP_NAME = "GENERATOR_VERSION"
#: (0028,0120) Pixel Padding Value: the stored value outside the reconstruction circle.
PADDING_STORED = -2000


# =============================================================================== geometry
class _Grid:
    """Voxel-centre coordinates of a size: x (right->left), y (ant->post), h (mm above slice 0)."""

    def __init__(self, size: str):
        if size not in SIZES:
            raise ValueError(f"size must be one of {sorted(SIZES)}; got {size!r}")
        s = SIZES[size]
        self.size = size
        self.n, self.px, self.nz, self.dz = int(s["n"]), s["pixel_mm"], int(s["nz"]), s["dz"]
        self.x0 = -(self.n - 1) / 2 * self.px  # top-left pixel centre: FOV centred on (0, 0)
        self.y0 = self.x0
        self.x = (self.x0 + self.px * np.arange(self.n)).astype(np.float32)
        self.y = (self.y0 + self.px * np.arange(self.n)).astype(np.float32)
        self.h = (self.dz * np.arange(self.nz)).astype(np.float32)
        self.X, self.Y = np.meshgrid(self.x, self.y)  # (y, x) planes
        self.fov_radius = self.n * self.px / 2

    @property
    def shape(self):
        return (self.nz, self.n, self.n)

    def index(self, p):
        """Fractional (k, j, i) of points (..., 3) given as (x, y, h) mm."""
        p = np.asarray(p, dtype=np.float64)
        return np.stack([p[..., 2] / self.dz, (p[..., 1] - self.y0) / self.px, (p[..., 0] - self.x0) / self.px], -1)


# body outline (outer skin) as a superellipse centred at (0, yc) that lies on its back at y=Y_BACK
Y_BACK = 100.0
B_POST = 95.0
_H_CTRL = [0, 60, 150, 220, 260, 300]
_A = [166, 166, 163, 163, 160, 142]  # half width
_B_ANT = [115, 112, 108, 102, 96, 88]  # centre -> anterior skin
_FAT = {"lat": [18, 16, 14, 13, 12, 9], "ant": [16, 14, 12, 12, 10, 7], "post": [12, 11, 10, 10, 10, 8]}
_MUS = {"lat": [10, 9, 12, 22, 34, 40], "ant": [14, 15, 16, 18, 22, 22], "post": [11, 11, 11, 12, 14, 16]}
SUPER_N = 2.4


def _interp(h, vals):
    return np.interp(h, _H_CTRL, vals)


def _contours(h):
    """(a, b_ant, b_post) of body, muscle and cavity superellipses at height h."""
    a, ba, bp = _interp(h, _A), _interp(h, _B_ANT), B_POST
    fl, fa, fp = (_interp(h, _FAT[k]) for k in ("lat", "ant", "post"))
    ml, ma, mp = (_interp(h, _MUS[k]) for k in ("lat", "ant", "post"))
    return {
        "body": (a, ba, bp),
        "muscle": (a - fl, ba - fa, bp - fp),
        "cavity": (a - fl - ml, ba - fa - ma, bp - fp - mp),
    }


YC = Y_BACK - B_POST


def _superellipse_level(X, Y, abc, n=SUPER_N):
    """<1 inside the asymmetric superellipse (a, b_ant, b_post) centred at (0, YC)."""
    a, ba, bp = abc
    dy = Y - YC
    b = np.where(dy < 0, ba, bp)
    return np.abs(X / a) ** n + np.abs(dy / b) ** n


def _superellipse_radius(theta, abc, n=SUPER_N):
    """Distance from (0, YC) to the contour along angle theta (0 = posterior, +90 deg = patient left)."""
    a, ba, bp = abc
    sx, sy = np.sin(theta), np.cos(theta)
    b = np.where(sy < 0, ba, bp)
    return 1.0 / (np.abs(sx / a) ** n + np.abs(sy / b) ** n) ** (1.0 / n)


def _on_contour(theta, h, which="cavity", offset=0.0):
    """(x, y) of the point at angle theta on a contour at height h, pushed outwards by offset mm."""
    r = _superellipse_radius(theta, _contours(h)[which]) + offset
    return r * np.sin(theta), YC + r * np.cos(theta)


def _diaphragm(X, Y):
    """Height (mm above slice 0) of the diaphragm's upper surface: right dome higher than the left."""
    post = np.where(Y > 0, 1.8, 1.0)  # the posterior costophrenic recesses reach lowest
    right = 80.0 - ((X + 50.0) ** 2 + post * (Y + 5.0) ** 2) / 140.0
    left = 64.0 - ((X - 58.0) ** 2 + post * (Y - 0.0) ** 2) / 140.0
    centre = 50.0 - ((X - 5.0) ** 2 + (Y + 25.0) ** 2) / 300.0
    return np.maximum(np.maximum(right, left), centre)


def _apex(X, Y):
    """Height of the lung apices (upper limit of the lungs)."""
    return 272.0 - ((np.abs(X) - 48.0) ** 2 + 1.6 * (Y - 18.0) ** 2) / 75.0


def _spine_y(h):
    return 36.0 + 9.0 * np.sin(np.pi * np.asarray(h) / 300.0)  # thoracic kyphosis


# =============================================================================== tubes
def _polyline(points, radii, step=6.0):
    """Resample a polyline (x, y, h) + radii into segments no longer than ``step`` mm."""
    pts, rad = np.asarray(points, float), np.asarray(radii, float)
    out_p, out_r = [pts[0]], [rad[0]]
    for a, b, ra, rb in zip(pts[:-1], pts[1:], rad[:-1], rad[1:]):
        m = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        for t in np.arange(1, m + 1) / m:
            out_p.append(a + t * (b - a))
            out_r.append(ra + t * (rb - ra))
    return np.array(out_p), np.array(out_r)


def _segment_field(grid, p0, p1, r0, r1, margin):
    """Distance to a tapered segment on its bounding box: (slices, dist, radius) or None.

    Written with Python floats and views: it is called some 20 000 times per phantom.
    """
    x0, y0, h0 = float(p0[0]), float(p0[1]), float(p0[2])
    x1, y1, h1 = float(p1[0]), float(p1[1]), float(p1[2])
    r0, r1 = float(r0), float(r1)
    R = max(r0, r1) + margin
    i0 = max(int(math.floor((min(x0, x1) - R - grid.x0) / grid.px)), 0)
    i1 = min(int(math.ceil((max(x0, x1) + R - grid.x0) / grid.px)) + 1, grid.n)
    j0 = max(int(math.floor((min(y0, y1) - R - grid.y0) / grid.px)), 0)
    j1 = min(int(math.ceil((max(y0, y1) + R - grid.y0) / grid.px)) + 1, grid.n)
    k0 = max(int(math.floor((min(h0, h1) - R) / grid.dz)), 0)
    k1 = min(int(math.ceil((max(h0, h1) + R) / grid.dz)) + 1, grid.nz)
    if k0 >= k1 or j0 >= j1 or i0 >= i1:
        return None
    ax = grid.x[i0:i1][None, None, :] - x0
    ay = grid.y[j0:j1][None, :, None] - y0
    ah = grid.h[k0:k1][:, None, None] - h0
    dx, dy, dh = x1 - x0, y1 - y0, h1 - h0
    inv = 1.0 / ((dx * dx + dy * dy + dh * dh) or 1e-9)
    t = (ax * (dx * inv) + ay * (dy * inv)) + ah * (dh * inv)
    np.clip(t, 0.0, 1.0, out=t)
    ex, ey, eh = ax - t * dx, ay - t * dy, ah - t * dh
    dist = np.sqrt(ex * ex + ey * ey + eh * eh)
    return (slice(k0, k1), slice(j0, j1), slice(i0, i1)), dist, r0 + t * (r1 - r0)


class _Canvas:
    """Tissue labels + clean HU being painted, plus the lung region."""

    def __init__(self, grid):
        self.g = grid
        self.tissue = np.zeros(grid.shape, np.uint8)
        self.hu = np.full(grid.shape, HU["air"], np.float32)
        self.lung_region = np.zeros(grid.shape, bool)

    def tube(self, points, radii, label, hu, *, within=None, soft=False):
        """Paint a tapered tube along a polyline (x, y, h) mm with radii in mm.

        ``within``: "lung" paints only inside the lung region, "not_lung" only outside.
        ``soft``: blend HU by partial-volume occupancy (thin vessels).
        """
        pts, rad = _polyline(points, radii, step=max(4.0, 2 * self.g.dz))
        lab = LEGEND[label]
        for p0, p1, r0, r1 in zip(pts[:-1], pts[1:], rad[:-1], rad[1:]):
            f = _segment_field(self.g, p0, p1, r0, r1, margin=self.g.px)
            if f is None:
                continue
            sl, dist, r = f
            self._paint(sl, dist, r, lab, hu, within, soft)
        return pts, rad

    def _paint(self, sl, dist, r, lab, hu, within, soft):
        T, H = self.tissue[sl], self.hu[sl]
        if soft:  # partial volume: distance to the edge, and the share of a voxel a thin tube fills
            occ = np.clip((r - dist) / self.g.px + 0.5, 0.0, 1.0)
            occ *= np.minimum(1.0, 4.0 * r * r / (self.g.px * self.g.px))
        else:
            occ = (dist < r).astype(np.float32)
        if within == "lung":
            occ = occ * self.lung_region[sl]
        elif within == "not_lung":
            occ = occ * ~self.lung_region[sl]
        m = occ > 0
        if not m.any():
            return
        H[m] += occ[m] * (hu - H[m])
        T[occ >= 0.5] = lab

    def walled_tube(self, points, radii, wall, lumen_label, lumen_hu, wall_label, wall_hu, **kw):
        """A tube of ``wall_label`` with a lumen of ``lumen_label``, ``wall`` mm thinner."""
        radii = np.asarray(radii, float)
        self.tube(points, radii, wall_label, wall_hu, **kw)
        self.tube(points, np.maximum(radii - wall, 0.2), lumen_label, lumen_hu, **kw)


# =============================================================================== anatomy
# Centre lines (x, y, h) in mm and radii; h = mm above the lowest slice.
AORTA = ([(-2, -22, 112), (-14, -26, 150), (-14, -22, 188), (-6, -10, 210), (12, 12, 214), (28, 30, 204),
          (31, 34, 180), (30, 28, 120), (24, 18, 60), (12, 8, 0)],
         [14, 15.5, 15, 14, 13, 12.5, 12, 11.5, 11, 10.5])
SVC = ([(-36, -18, 240), (-35, -16, 200), (-33, -14, 135)], [9, 10, 10.5])
IVC = ([(-22, 12, -5), (-20, 8, 50), (-12, -5, 80)], [11, 11, 11])
LEFT_BCV = ([(75, -28, 252), (30, -30, 242), (-30, -20, 238)], [7, 7, 8])
RIGHT_BCV = ([(-70, -25, 260), (-40, -20, 242)], [7, 8])
BRACHIOCEPHALIC_A = ([(-4, -12, 212), (-16, -8, 240), (-22, -4, 300)], [7, 6.5, 6])
LEFT_CAROTID = ([(6, 0, 214), (16, 4, 250), (18, 6, 300)], [4.5, 4.5, 4.5])
LEFT_SUBCLAVIAN = ([(18, 14, 212), (32, 16, 250), (60, 10, 268), (95, 0, 278)], [5.5, 5.5, 5, 5])
PULMONARY_TRUNK = ([(18, -40, 118), (16, -28, 150), (12, -14, 168)], [14, 14, 13])
RIGHT_PA = ([(12, -14, 168), (-20, -4, 168), (-50, 2, 163), (-62, 4, 158)], [11, 10.5, 9.5, 8])
LEFT_PA = ([(12, -14, 168), (40, 2, 174), (56, 12, 168), (64, 16, 160)], [11, 10, 9, 8])
RIGHT_PV = ([(-58, 10, 132), (-35, 12, 118), (-5, 14, 108)], [7, 8, 9])
LEFT_PV = ([(60, 14, 130), (40, 14, 118), (18, 14, 108)], [7, 8, 9])
TRACHEA = ([(0, -14, 300), (0, -6, 250), (1, 4, 210), (2, 8, 192)], [10.5, 10.5, 10.5, 10.5])
RIGHT_MAIN_BRONCHUS = ([(2, 8, 192), (-22, 10, 180), (-48, 12, 168)], [9, 8, 7])
LEFT_MAIN_BRONCHUS = ([(2, 8, 192), (24, 14, 182), (52, 18, 168)], [8.5, 7.5, 6.5])
ESOPHAGUS = ([(6, 18, 300), (8, 20, 200), (12, 22, 100), (24, 10, 30), (40, -5, 0)], [7, 7, 7, 8, 9])
NECK_VESSELS = [([(s * 30.0, -2.0, 232.0), (s * 30.0, -4.0, 302.0)], [4.5, 4.5]) for s in (-1, 1)] + \
               [([(s * 44.0, -14.0, 240.0), (s * 42.0, -14.0, 302.0)], [7.0, 7.5]) for s in (-1, 1)]
THYROID = [([(s * 19.0, -12.0, 268.0), (s * 21.0, -14.0, 285.0), (s * 19.0, -16.0, 302.0)], [5.0, 9.0, 7.0])
           for s in (-1, 1)]
HEART = {"centre": (30.0, -30.0, 88.0), "semi": (60.0, 42.0, 46.0), "yaw_deg": 38.0, "tilt_deg": 18.0,
         "fat_mm": 4.0}
# Lung roots (hilum) for the trees: (start, first direction, radius) per lobe
TUMOUR = {"side": "right", "h": 205.0, "theta_deg": -62.0, "radius": 13.5, "n_lobules": 7,
          "n_spicules": 9}
NODULE = {"centre": (96.0, -30.0, 112.0), "diameter": 7.0}


def _heart_level(X, Y, h):
    c, s = np.array(HEART["centre"]), np.array(HEART["semi"])
    yaw, tilt = np.radians(HEART["yaw_deg"]), np.radians(HEART["tilt_deg"])
    dx, dy, dh = X - c[0], Y - c[1], h - c[2]
    # rotate into the heart's frame: long axis towards left-anterior-inferior
    u = np.cos(yaw) * dx - np.sin(yaw) * dy
    v = np.sin(yaw) * dx + np.cos(yaw) * dy
    u2 = np.cos(tilt) * u + np.sin(tilt) * dh
    w = -np.sin(tilt) * u + np.cos(tilt) * dh
    return u2, v, w, s


def _build_slices(cv: _Canvas, rng: np.random.Generator, med_margin: np.ndarray) -> None:
    """Everything defined slice by slice: body, fat, muscle, cavity, organs, spine, sternum, scapulae."""
    g = cv.g
    X, Y = g.X, g.Y
    dia = _diaphragm(X, Y).astype(np.float32)
    gy, gx = np.gradient(dia, g.px)
    dia_thick = (4.0 * np.sqrt(1 + gx ** 2 + gy ** 2)).astype(np.float32)
    apex = _apex(X, Y).astype(np.float32)
    cols = np.arange(g.n)
    junction_half = max(1.0, 0.6 * g.px)
    med_core = np.abs(X - 8.0) < 50.0  # the row-wise hull never reaches further out than this
    shift = max(1, int(round(3.0 / g.px)))
    # table: a curved shell with an air core and struts, 5 mm under the back
    top = 105.0 - 25.0 * (X / 200.0) ** 2
    shell = (Y >= top) & (Y < top + 18.0) & (np.abs(X) < 215.0)
    core = (Y >= top + 2.5) & (Y < top + 15.5) & (np.abs(X) < 212.0) & (np.abs(((X + 60.0) % 120.0) - 60.0) > 1.5)
    vert_hu: dict[int, float] = {}
    for k in range(g.nz):
        h = float(g.h[k])
        T, H = cv.tissue[k], cv.hu[k]
        T[shell] = LEGEND["table"]
        H[shell] = HU["table"]
        T[core] = LEGEND["table_air"]
        H[core] = HU["table_core"]
        con = _contours(h)
        body = _superellipse_level(X, Y, con["body"]) < 1
        muscle = _superellipse_level(X, Y, con["muscle"]) < 1
        ys = float(_spine_y(h))
        paraspinal = ((np.abs(X) - 30.0) / 30.0) ** 2 + ((Y - ys - 40.0) / 28.0) ** 2 < 1
        cavity = (_superellipse_level(X, Y, con["cavity"]) < 1) & ~paraspinal
        T[body], H[body] = LEGEND["fat"], HU["fat"]
        T[muscle], H[muscle] = LEGEND["muscle"], HU["muscle"]
        # inside the ribcage: neck / chest-wall soft tissue by default
        T[cavity], H[cavity] = LEGEND["muscle"], HU["muscle"]
        neck_fat = cavity & (h >= apex) & (((np.abs(X) - 78.0) / 52.0) ** 2 + ((Y + 5.0) / 48.0) ** 2 < 1)
        T[neck_fat], H[neck_fat] = LEGEND["fat"], HU["mediastinal_fat"]
        below = cavity & (h < dia)
        # abdomen under the diaphragm: liver right, stomach + spleen left
        abd = below & (h < dia - dia_thick)
        liver = abd & (X < 18.0 - 0.55 * Y)
        spleen = abd & (((X - 92.0) / 34.0) ** 2 + ((Y - 38.0) / 48.0) ** 2 < 1)
        stomach = abd & ~liver & ~spleen & (((X - 58.0) / 52.0) ** 2 + ((Y + 15.0) / 48.0) ** 2 < 1)
        T[abd], H[abd] = LEGEND["soft_tissue"], HU["soft_tissue"]
        T[liver], H[liver] = LEGEND["liver"], HU["liver"]
        T[spleen], H[spleen] = LEGEND["soft_tissue"], HU["spleen"]
        T[stomach], H[stomach] = LEGEND["soft_tissue"], HU["soft_tissue"]
        contents = stomach & (((X - 58.0) / 46.0) ** 2 + ((Y + 15.0) / 42.0) ** 2 < 1)
        H[contents] = HU["stomach_fluid"]
        gas = (stomach & (Y < -40.0) & (h > dia - dia_thick - 30.0)
               & (((X - 58.0) / 46.0) ** 2 + ((Y + 15.0) / 42.0) ** 2 < 1))
        T[gas], H[gas] = LEGEND["bowel_gas"], HU["air"]
        # heart with epicardial fat
        u, v, w, s = _heart_level(X, Y, h)
        fat_mm = HEART["fat_mm"]
        in_fat_shell = (u / (s[0] + fat_mm)) ** 2 + (v / (s[1] + fat_mm)) ** 2 + (w / (s[2] + fat_mm)) ** 2 < 1
        heart_fat = in_fat_shell & (h > dia - 2)
        heart = ((u / s[0]) ** 2 + (v / s[1]) ** 2 + (w / s[2]) ** 2 < 1) & heart_fat
        # spine
        spine_front = (X / 21.0) ** 2 + ((Y - ys - 2.0) / 19.0) ** 2 < 1
        # mediastinum: row-wise hull of the mediastinal blobs, plus the anterior junction line
        blobs = heart_fat | med_margin[k] | spine_front
        above = cavity & (h > dia) & (h < apex)
        rows = blobs.any(1)
        first = np.argmax(blobs, 1)
        last = g.n - 1 - np.argmax(blobs[:, ::-1], 1)
        hull = rows[:, None] & (cols[None, :] >= first[:, None]) & (cols[None, :] <= last[:, None])
        hull &= med_core
        thick = hull.copy()  # drop hull strips thinner than 2 x med_min_mm (two hila on one row)
        thick[shift:] &= hull[:-shift]
        thick[:-shift] &= hull[shift:]
        med = thick | blobs | (np.abs(X) <= junction_half)
        mfat = above & med
        T[mfat], H[mfat] = LEGEND["fat"], HU["mediastinal_fat"]
        T[heart_fat], H[heart_fat] = LEGEND["fat"], HU["mediastinal_fat"]
        T[heart], H[heart] = LEGEND["heart_vessels"], HU["blood"]
        lung = above & ~med
        cv.lung_region[k] = lung
        T[lung] = LEGEND["lung"]
        H[lung] = HU["lung"] + HU["lung_gradient_per_mm"] * (Y[lung] - 0.0)
        # diaphragm muscle (thin dome between lung and abdomen)
        dmus = cavity & (h <= dia) & (h >= dia - dia_thick)
        T[dmus], H[dmus] = LEGEND["muscle"], HU["muscle"]
        _vertebra(T, H, X, Y, h, ys, vert_hu, rng)
        _sternum(T, H, X, Y, h, con)
        _scapulae(T, H, X, Y, h)
        cv.lung_region[k] &= T == LEGEND["lung"]  # bones painted over the lung are not lung
    _keep_two_lungs(cv)


def _keep_two_lungs(cv):
    """Keep the largest connected lung region on each side; pockets become mediastinal fat."""
    region = cv.lung_region
    box = ndimage.find_objects(region.astype(np.uint8))[0]
    lab, n = ndimage.label(region[box])  # face connectivity: diagonal crumbs are dropped too
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = np.argsort(sizes)[::-1][:2]
    drop = ~np.isin(lab, keep) & (lab > 0)
    region[box][drop] = False
    cv.tissue[box][drop] = LEGEND["fat"]
    cv.hu[box][drop] = HU["mediastinal_fat"]


def _bone(T, H, outer, inner):
    T[outer] = LEGEND["bone"]
    H[outer] = HU["cortical_bone"]
    H[inner] = HU["cancellous_bone"]


def _vertebra(T, H, X, Y, h, ys, vert_hu, rng, *, period=25.0, disc=5.0, top=292.0):
    """Vertebral body, disc, canal, pedicles/laminae, spinous and transverse processes."""
    level = int(np.floor((top - h) / period))
    phase = (top - h) - level * period  # 0 at a disc's upper edge
    if level not in vert_hu:
        vert_hu[level] = float(rng.normal(0, 25))
    rb = ((X / 17.0) ** 2 + ((Y - ys) / 14.5) ** 2)
    if phase < disc:
        d = rb < 1
        T[d], H[d] = LEGEND["cartilage"], HU["disc"]
    else:
        _bone(T, H, rb < 1, ((X / 15.5) ** 2 + ((Y - ys) / 13.0) ** 2) < 1)
        H[((X / 15.5) ** 2 + ((Y - ys) / 13.0) ** 2) < 1] += vert_hu[level]
    cy = ys + 26.0
    r = np.hypot(X, Y - cy)
    upper = phase > disc + 2.0
    if upper:  # pedicles + laminae ring, transverse processes
        ring = (r < 14.5) & (Y > ys + 10.0)
        tp = (np.abs(np.abs(X) - 24.0) < 12.0) & (np.abs(Y - (cy - 2.0 + 0.25 * (np.abs(X) - 12))) < 5.0)
        b = ring | tp
        transverse = tp & (np.abs(Y - (cy - 2.0 + 0.25 * (np.abs(X) - 12))) < 3.0)
        _bone(T, H, b, (ring & (r < 12.5) & (r > 10.5)) | transverse)
    sp_len = 20.0 if phase > period / 2 else 14.0
    sp = (np.abs(X) < 4.0) & (Y > cy + 8.0) & (Y < cy + 8.0 + sp_len)
    _bone(T, H, sp, (np.abs(X) < 2.0) & (Y > cy + 9.5) & (Y < cy + 6.5 + sp_len))
    canal = r < 9.0
    T[canal], H[canal] = LEGEND["soft_tissue"], HU["csf"]


def _sternum(T, H, X, Y, h, con, *, bottom=92.0, top=232.0):
    if not bottom <= h <= top:
        return
    ya = YC - con["cavity"][1] - 4.0
    manubrium = h > 200.0
    a = 26.0 if manubrium else (16.0 if h > 110 else 9.0)
    b = 8.0 if manubrium else 6.0
    e = (X / a) ** 2 + ((Y - ya) / b) ** 2
    _bone(T, H, e < 1, (X / (a - 1.5)) ** 2 + ((Y - ya) / (b - 1.5)) ** 2 < 1)


def _scapulae(T, H, X, Y, h, *, bottom=148.0, top=262.0):
    """Scapular blades: thin plates behind the ribs, a triangle narrowing to the inferior angle."""
    if not bottom <= h <= top:
        return
    f = (h - bottom) / (top - bottom)
    th = np.arctan2(np.abs(X), Y - YC)  # 0 posterior
    r = np.hypot(X, Y - YC)
    con = _contours(h)
    rc = _superellipse_radius(th, con["cavity"])
    lo, hi = np.radians(52.0 - 20.0 * f), np.radians(58.0 + 30.0 * f)
    thick = 3.0 + 5.0 * (th > hi - np.radians(6)) * f
    plate = (th > lo) & (th < hi) & (r > rc + 15.0) & (r < rc + 15.0 + thick)
    _bone(T, H, plate, plate & (r > rc + 16.0) & (r < rc + 14.0 + thick))


def _ribs(cv: _Canvas, rng: np.random.Generator) -> None:
    """12 pairs of curved tubes around the cavity, sloping down anteriorly, with costal cartilage."""
    for i in range(12):
        h_post = 268.0 - 21.5 * i
        drop = [30, 55, 75, 88, 95, 100, 100, 95, 88, 75, 40, 25][i]
        end_deg = [150, 160, 165, 165, 165, 160, 155, 150, 145, 140, 105, 85][i]
        r = [4.5, 4.5, 4.5, 4.8, 4.8, 4.8, 4.8, 4.8, 4.5, 4.5, 4.2, 4.0][i]
        for side in (-1, 1):
            th = np.radians(np.linspace(24.0, end_deg, 40))
            frac = (th - th[0]) / (th[-1] - th[0])
            hh = h_post + 5.0 * np.sin(np.pi * np.minimum(frac * 4, 1)) - drop * frac
            scale = 0.62 if i == 0 else (0.85 if i == 1 else 1.0)
            along = []
            for t, hk in zip(th, hh):
                x, y = _on_contour(side * t, hk, "cavity", offset=r + 1.0)
                along.append((x * scale, YC + (y - YC) * (0.8 + 0.2 * scale), hk))
            # head of the rib into the transverse process
            ys = float(_spine_y(h_post))
            head = np.array([(side * 14.0, ys + 12.0, h_post)])
            pts = np.vstack([head, np.array(along)])
            radii = np.full(len(pts), r)
            _walled_bone(cv, pts, radii)
            if i < 10:  # costal cartilage to the sternum (1-7) or to the rib above (8-10)
                end = pts[-1]
                if i < 7:
                    hs = 226.0 - 18.0 * i
                    con = _contours(hs)
                    tgt = (side * (16.0 if i else 24.0), YC - con["cavity"][1] - 4.0, hs)
                else:
                    tgt = (side * (30.0 + 14 * (i - 7)), end[1] - 5.0, end[2] + 22.0)
                cv.tube([end, tgt], [r * 0.9, r * 0.8], "cartilage", HU["cartilage"], within="not_lung")


def _walled_bone(cv, pts, radii, cortex=1.6):
    cv.tube(pts, radii, "bone", HU["cortical_bone"], within="not_lung")
    cv.tube(pts, np.maximum(np.asarray(radii, float) - cortex, 0.5), "bone", HU["cancellous_bone"], within="not_lung")


def _clavicles(cv):
    for side in (-1, 1):
        c0, c1 = _contours(236.0), _contours(250.0)
        p = [(side * 22.0, YC - c0["cavity"][1] - 2.0, 236.0),
             (side * 70.0, YC - c1["cavity"][1] + 2.0, 248.0),
             (side * 125.0, YC - c1["cavity"][1] + 25.0, 258.0),
             (side * 140.0, YC - c1["cavity"][1] + 45.0, 262.0)]
        _walled_bone(cv, p, [8.0, 7.0, 6.5, 7.5])


def _mediastinal_tubes():
    """(points, radii) of every tube that belongs to the mediastinum."""
    return [AORTA, SVC, LEFT_BCV, RIGHT_BCV, BRACHIOCEPHALIC_A, LEFT_CAROTID, LEFT_SUBCLAVIAN,
            PULMONARY_TRUNK, RIGHT_PA, LEFT_PA, RIGHT_PV, LEFT_PV, TRACHEA, RIGHT_MAIN_BRONCHUS,
            LEFT_MAIN_BRONCHUS, ESOPHAGUS]


def _med_margin(grid, margin=4.0):
    """Boolean volume: mediastinal tubes grown by ``margin`` mm (the mediastinal fat around them)."""
    out = np.zeros(grid.shape, bool)
    for pts, rad in _mediastinal_tubes():
        p, r = _polyline(pts, rad, step=max(4.0, 2 * grid.dz))
        for p0, p1, r0, r1 in zip(p[:-1], p[1:], r[:-1], r[1:]):
            f = _segment_field(grid, p0, p1, r0, r1, margin=margin)
            if f is None:
                continue
            sl, dist, rr = f
            out[sl] |= dist < rr + margin
    return out


def _paint_mediastinum(cv):
    for pts, rad in (AORTA, SVC, IVC, LEFT_BCV, RIGHT_BCV, BRACHIOCEPHALIC_A, LEFT_CAROTID, LEFT_SUBCLAVIAN,
                     PULMONARY_TRUNK, RIGHT_PA, LEFT_PA, RIGHT_PV, LEFT_PV):
        cv.tube(pts, rad, "heart_vessels", HU["blood"], within="not_lung")
    cv.tube(*ESOPHAGUS, "soft_tissue", HU["soft_tissue"], within="not_lung")
    for pts, rad in NECK_VESSELS:
        cv.tube(pts, rad, "heart_vessels", HU["blood"], within="not_lung")
    for lobe in THYROID:
        cv.tube(*lobe, "soft_tissue", HU["thyroid"], within="not_lung")
    for pts, rad in (TRACHEA, RIGHT_MAIN_BRONCHUS, LEFT_MAIN_BRONCHUS):
        cv.walled_tube(pts, rad, 2.0, "airway", HU["air"], "soft_tissue", HU["soft_tissue"], within="not_lung")


# ------------------------------------------------------------------------------- lung trees
def _unit(v):
    v = np.asarray(v, float)
    return v / (np.linalg.norm(v) + 1e-12)


def _norm3(v):
    n = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]) or 1e-12
    return (v[0] / n, v[1] / n, v[2] / n)


def _turn(d, angle, phi):
    """Unit vector at ``angle`` (rad) from unit vector d, at azimuth ``phi`` around it."""
    dx, dy, dz = d
    ex, ey, ez = (1.0, 0.0, 0.0) if abs(dx) < 0.9 else (0.0, 1.0, 0.0)
    u = _norm3((dy * ez - dz * ey, dz * ex - dx * ez, dx * ey - dy * ex))
    v = (dy * u[2] - dz * u[1], dz * u[0] - dx * u[2], dx * u[1] - dy * u[0])
    c, s, cp, sp = math.cos(angle), math.sin(angle), math.cos(phi), math.sin(phi)
    return _norm3((c * dx + s * (cp * u[0] + sp * v[0]), c * dy + s * (cp * u[1] + sp * v[1]),
                   c * dz + s * (cp * u[2] + sp * v[2])))


class _Uniforms:
    """Uniform random numbers drawn from ``rng`` in blocks (fast one at a time, still seeded)."""

    def __init__(self, rng, block=1 << 16):
        self.rng, self.block, self.buf, self.i = rng, block, [], 0

    def __call__(self, lo=0.0, hi=1.0):
        if self.i >= len(self.buf):
            self.buf, self.i = self.rng.random(self.block).tolist(), 0
        v = self.buf[self.i]
        self.i += 1
        return lo + (hi - lo) * v


def _grow_tree(cv, uni, root, direction, radius, *, min_radius=0.45, max_segments=900, centre=None,
               target=None):
    """Asymmetric branching tree inside the lung region; returns segments (p0, p1, r0, r1).

    Children leave at random angles, biased towards ``target`` (for the first
    generations) or away from ``centre``; a branch blocked by the pleura or the
    mediastinum tries other directions a few times, then stops.
    """
    g = cv.g
    region = cv.lung_region
    nz, n, dz, px, x0, y0 = g.nz, g.n, g.dz, g.px, g.x0, g.y0

    def inside(x, y, h):
        k, j, i = int(round(h / dz)), int(round((y - y0) / px)), int(round((x - x0) / px))
        return 0 <= k < nz and 0 <= j < n and 0 <= i < n and bool(region[k, j, i])

    mid = tuple(float(v) for v in (centre if centre is not None else root))
    aim = tuple(float(v) for v in target) if target is not None else None
    segs = []
    q = deque([(tuple(float(v) for v in root), _norm3(tuple(float(v) for v in direction)), float(radius), 0)])
    while q and len(segs) < max_segments:
        p, d, r, depth = q.popleft()
        length = min(max(7.0 * r, 3.5), 30.0) * uni(0.75, 1.25)
        step = _branch_step(p, d, length, uni, inside, mid)
        if step is None:
            continue
        e, d = step
        r_end = r * 0.96
        segs.append((p, e, r, r_end))
        if r_end < min_radius:
            continue
        q.extend(_branch_children(e, d, r_end, depth, uni, mid, aim))
    return segs


def _branch_step(p, d, length, uni, inside, mid):
    """``(end, direction)`` of a segment from ``p``: straight on, else turned (and pushed away from ``mid``).

    Seven tries, the last three at half length; ``None`` when every try leaves the region.
    """
    cx, cy, ch = mid
    for attempt in range(7):
        if attempt:
            away = _norm3((p[0] - cx, p[1] - cy, p[2] - ch))
            d = _turn(d, uni(0.3, 1.1), uni(0.0, 2 * math.pi))
            d = _norm3((d[0] + 0.3 * away[0], d[1] + 0.3 * away[1], d[2] + 0.3 * away[2]))
        f = length * (1.0 if attempt < 4 else 0.5)
        e = (p[0] + d[0] * f, p[1] + d[1] * f, p[2] + d[2] * f)
        if inside(*e) and inside(p[0] + d[0] * f / 2, p[1] + d[1] * f / 2, p[2] + d[2] * f / 2):
            return e, d
    return None


def _branch_children(e, d, r_end, depth, uni, mid, aim):
    """The two children of a segment ending at ``e``: a thick one nearly straight on, a thin one turned.

    Both lean towards ``aim`` in the first generations (while it is over 20 mm away), else away from ``mid``.
    """
    cx, cy, ch = mid
    if aim is not None and depth < 3 and math.dist(e, aim) > 20.0:
        tx, ty, th = aim
        b = _norm3((tx - e[0], ty - e[1], th - e[2]))
        w = 0.45
    else:
        b = _norm3((e[0] - cx, e[1] - cy, e[2] - ch))
        w = 0.2
    children = []
    for angle_lo, angle_hi, shrink in ((0.1, 0.35, 0.9), (0.6, 1.1, uni(0.6, 0.78))):
        c = _turn(d, uni(angle_lo, angle_hi), uni(0.0, 2 * math.pi))
        children.append((e, _norm3((c[0] + w * b[0], c[1] + w * b[1], c[2] + w * b[2])), r_end * shrink, depth + 1))
    return children


def _spread_targets(cv, rng, side, n, start):
    """``n`` well-spread points (x, y, h) of one lung: greedy farthest-point sampling from ``start``."""
    g = cv.g
    half = g.n // 2
    k, j, i = np.nonzero(cv.lung_region[:, :, :half] if side == "right" else cv.lung_region[:, :, half:])
    if side == "left":
        i = i + half
    pick = rng.choice(len(k), size=min(len(k), 4000), replace=False)
    pts = np.stack([g.x[i[pick]], g.y[j[pick]], g.h[k[pick]]], 1).astype(np.float64)
    dmin = np.linalg.norm(pts - start, axis=1)
    seeds = []
    for _ in range(n):
        m = int(np.argmax(dmin))
        seeds.append(pts[m])
        dmin = np.minimum(dmin, np.linalg.norm(pts - pts[m], axis=1))
    # one Lloyd step: aim at the centre of each seed's territory, not at its edge
    owner = np.argmin(np.linalg.norm(pts[:, None, :] - np.array(seeds)[None], axis=2), axis=1)
    return [pts[owner == c].mean(0) for c in range(n)]


#: Thinnest vessel drawn, in mm and in pixels (the small sample skips what it cannot show).
VESSEL_MIN_RADIUS_MM = 0.45
VESSEL_MIN_RADIUS_PX = 0.35
#: Segmental branches per lung (each artery, vein and bronchus tree aims at one region).
N_SEGMENTS_PER_LUNG = 16


def _lung_trees(cv, rng):
    """Pulmonary arteries (from the hila) and veins (to the left atrium), plus intrapulmonary bronchi."""
    roots = {"right": {"a": np.array(RIGHT_PA[0][-1], float), "v": np.array(RIGHT_PV[0][0], float),
                       "b": np.array(RIGHT_MAIN_BRONCHUS[0][-1], float)},
             "left": {"a": np.array(LEFT_PA[0][-1], float), "v": np.array(LEFT_PV[0][0], float),
                      "b": np.array(LEFT_MAIN_BRONCHUS[0][-1], float)}}
    n_segments = 0
    vessel, bronchus = LEGEND["vessel_in_lung"], LEGEND["bronchus_in_lung"]
    uni = _Uniforms(rng)
    for side in ("right", "left"):
        hilum = roots[side]["a"]
        targets = _spread_targets(cv, rng, side, N_SEGMENTS_PER_LUNG, hilum)
        for kind in ("a", "v", "b"):
            root = roots[side][kind]
            for n_t, target in enumerate(targets):
                target = target + rng.normal(0, 8.0, 3)
                d = _unit(target - root)
                trunk_end = root + 0.3 * (target - root)
                if kind == "b" and n_t % 2:  # bronchi: every other territory
                    continue
                if kind == "b":
                    segs = [(root, trunk_end, 3.2, 2.8)]
                    segs += _grow_tree(cv, uni, trunk_end, d, 2.6, min_radius=1.0, max_segments=30,
                                       centre=root, target=target)
                    for p0, p1, r0, r1 in segs:
                        f = _segment_field(cv.g, p0, p1, r0 + 0.7, r1 + 0.7, margin=cv.g.px)
                        if f is not None:
                            sl, dist, r = f
                            cv._paint(sl, dist, r, bronchus, HU["soft_tissue"], "lung", True)
                            cv._paint(sl, dist, r - 0.7 - 0.1 * r, bronchus, HU["air"], "lung", True)
                    continue
                r0 = 3.6 if kind == "a" else 3.4
                segs = [(root, trunk_end, r0 + 0.6, r0)]
                segs += _grow_tree(cv, uni, trunk_end, d, r0, centre=root, target=target, max_segments=3000,
                                   min_radius=max(VESSEL_MIN_RADIUS_MM, VESSEL_MIN_RADIUS_PX * cv.g.px))
                n_segments += len(segs)
                for p0, p1, ra, rb in segs:
                    f = _segment_field(cv.g, p0, p1, ra, rb, margin=cv.g.px)
                    if f is not None:
                        sl, dist, r = f
                        cv._paint(sl, dist, r, vessel, HU["blood"], "lung", True)
        n_segments += _peripheral_vessels(cv, uni, side, hilum)
    return n_segments


#: Short peripheral vessels scattered through each lung (per litre of lung), radius range in mm.
PERIPHERAL_VESSELS_PER_LITRE = 900
PERIPHERAL_RADIUS_MM = (0.5, 1.1)


def _peripheral_vessels(cv, uni, side, hilum):
    """Even background of small vessels pointing away from the hilum (what trees miss)."""
    g = cv.g
    half = g.n // 2
    region = cv.lung_region[:, :, :half] if side == "right" else cv.lung_region[:, :, half:]
    k, j, i = np.nonzero(region)
    if side == "left":
        i = i + half
    litres = len(k) * g.dz * g.px * g.px / 1e6
    n = int(PERIPHERAL_VESSELS_PER_LITRE * litres)
    idx = (np.array([uni() for _ in range(n)]) * len(k)).astype(int)
    vessel = LEGEND["vessel_in_lung"]
    lo, hi = max(PERIPHERAL_RADIUS_MM[0], VESSEL_MIN_RADIUS_PX * g.px), PERIPHERAL_RADIUS_MM[1]
    if lo >= hi:
        return 0
    for m in idx:
        p = (float(g.x[i[m]]), float(g.y[j[m]]), float(g.h[k[m]]))
        d = _norm3((p[0] - hilum[0], p[1] - hilum[1], p[2] - hilum[2]))
        d = _turn(d, uni(0.0, 0.6), uni(0.0, 2 * math.pi))
        r = uni(lo, hi)
        length = uni(6.0, 14.0)
        e = (p[0] + d[0] * length, p[1] + d[1] * length, p[2] + d[2] * length)
        f = _segment_field(g, p, e, r, r * 0.7, margin=g.px)
        if f is not None:
            sl, dist, rr = f
            cv._paint(sl, dist, rr, vessel, HU["blood"], "lung", True)
    return n


# ------------------------------------------------------------------------------- lesions
def _tumour(cv, rng):
    """A lobulated ~3 cm mass in the right upper lobe, broad-based on the posterolateral chest wall."""
    t = TUMOUR
    th = np.radians(t["theta_deg"])
    x, y = _on_contour(th, t["h"], "cavity", offset=-(t["radius"] - 5.0))
    c = np.array([x, y, t["h"]])
    spheres = [(c, t["radius"])]
    for _ in range(t["n_lobules"]):
        d = _unit(rng.normal(size=3))
        spheres.append((c + d * t["radius"] * rng.uniform(0.55, 0.8), t["radius"] * rng.uniform(0.4, 0.6)))
    g = cv.g
    R = t["radius"] * 1.8
    lo, hi = g.index(c - R), g.index(c + R)
    sl = tuple(slice(max(int(np.floor(a)), 0), min(int(np.ceil(b)) + 1, n)) for a, b, n in zip(lo, hi, g.shape))
    h = g.h[sl[0]][:, None, None]
    yy = g.y[sl[1]][None, :, None]
    xx = g.x[sl[2]][None, None, :]
    field = np.full((h.shape[0], yy.shape[1], xx.shape[2]), np.inf, np.float32)
    for cc, rr in spheres:
        field = np.minimum(field, np.sqrt((xx - cc[0]) ** 2 + (yy - cc[1]) ** 2 + (h - cc[2]) ** 2) - rr)
    # surface irregularity, then short spicules reaching into the lung
    ang = np.arctan2(yy - c[1], xx - c[0])
    field = field + 1.2 * np.sin(5 * ang + (h - c[2]) * 0.3) + 0.6 * np.sin(11 * ang - (h - c[2]) * 0.5)
    mass = (field < 0) & cv.lung_region[sl]
    cv.tissue[sl][mass] = LEGEND["tumour"]
    cv.hu[sl][mass] = HU["tumour"]
    wall = np.array(_on_contour(th, t["h"], "cavity") + (t["h"],))
    inward = _unit(c - wall)
    for _ in range(t["n_spicules"]):
        d = _unit(rng.normal(size=3))
        if d @ inward < 0.1:
            d = _unit(d + 1.2 * inward)
        p0 = c + d * (t["radius"] - 2.0)
        p1 = p0 + d * rng.uniform(7.0, 14.0)
        f = _segment_field(g, p0, p1, 1.1, 0.35, margin=g.px)
        if f is not None:
            ssl, dist, r = f
            cv._paint(ssl, dist, r, LEGEND["tumour"], HU["tumour"], "lung", True)
    return c, spheres


def _nodule(cv):
    c = np.array(NODULE["centre"], float)
    r = NODULE["diameter"] / 2
    f = _segment_field(cv.g, c, c + 1e-3, r, r, margin=cv.g.px)
    sl, dist, rr = f
    if not cv.lung_region[sl][dist < r + 5.0].all():
        raise RuntimeError("nodule placement is not inside the lung region: fix NODULE")
    cv._paint(sl, dist, rr, LEGEND["nodule"], HU["nodule"], "lung", True)
    return c


# =============================================================================== phantom
def make_phantom(*, seed: int = 0, size: str = "full") -> dict:
    """Build the synthetic chest CT in memory.

    Parameters
    ----------
    seed : int
        Seed of every random choice (vessel trees, tumour lobules, noise).
    size : {"full", "small"}
        ``"full"``: 512 x 512 pixels of 0.703125 mm, 120 slices 2.5 mm apart (3 mm thick).
        ``"small"``: 128 x 128 pixels of 2.8125 mm, 40 slices 7.5 mm apart (10 mm thick; same anatomy).

    Returns
    -------
    dict
        ``stored`` int16 (z, y, x) stored pixel values (HU minus each slice's Rescale Intercept,
        padding -2000 outside the reconstruction circle); ``hu`` float32 the same in HU (padding
        as -3024);
        ``tissue`` uint8 and ``lungs`` uint8 (0 / 1 right / 2 left) labels; ``geometry``
        (spacing (z, y, x), origin LPS, z positions, slice thickness, each slice's intercept);
        ``facts`` (tumour, nodule...).
        Slices run feet to head, rows anterior to posterior, columns patient right to left.

    Examples
    --------
    >>> p = make_phantom(size="small")
    >>> p["stored"].shape, p["stored"].dtype.name, sorted(np.unique(p["lungs"]).tolist())
    ((40, 128, 128), 'int16', [0, 1, 2])
    """
    g = _Grid(size)
    rng = np.random.default_rng(seed)
    cv = _Canvas(g)
    med_margin = _med_margin(g)
    _build_slices(cv, rng, med_margin)
    del med_margin
    _ribs(cv, rng)
    _clavicles(cv)
    _paint_mediastinum(cv)
    n_seg = _lung_trees(cv, rng)
    t_centre, _ = _tumour(cv, rng)
    n_centre = _nodule(cv)
    tissue = cv.tissue
    lung_ids = [LEGEND[n] for n in LUNG_TISSUES]
    in_lung = cv.lung_region & np.isin(tissue, lung_ids)
    lungs = np.zeros(g.shape, np.uint8)
    lungs[in_lung] = 2
    lungs[in_lung & (g.x[None, None, :] < 0)] = 1
    # image formation: noise + point-spread blur, clip, circular field of view
    hu = cv.hu
    del cv
    noise_rng = np.random.default_rng([seed, 7])
    sigma = tuple(s / sp for s, sp in zip(PSF_SIGMA_MM, (g.dz, g.px, g.px)))
    gain = NOISE_SD_HU / _blurred_noise_sd(sigma)
    hu += noise_rng.standard_normal(g.shape, dtype=np.float32) * np.float32(gain)
    hu = ndimage.gaussian_filter(hu, sigma, truncate=3.0, output=np.float32)
    np.clip(hu, -1024.0, 3071.0, out=hu)
    stored = np.rint(hu + 1024.0).astype(np.int16)  # stored value with intercept -1024
    outside = (g.X ** 2 + g.Y ** 2) > g.fov_radius ** 2
    stored[:, outside] = PADDING_STORED
    tissue[:, outside] = LEGEND["air_outside"]
    hu_out = stored.astype(np.float32) - 1024.0
    intercepts = _slice_intercepts(g.nz)
    for k in np.flatnonzero(intercepts != -1024.0):  # same HU, other intercept: shift the stored values
        inside = stored[k] != PADDING_STORED
        stored[k][inside] -= np.int16(intercepts[k] + 1024.0)
    z = Z_BOTTOM_MM + g.h.astype(np.float64)
    return {
        "stored": stored,
        "hu": hu_out,
        "tissue": tissue,
        "lungs": lungs,
        "geometry": {
            "shape": list(g.shape),
            "spacing": [g.dz, g.px, g.px],
            "origin": [g.x0, g.y0, float(z[0])],
            "z_positions": [float(v) for v in z],
            "fov_diameter_mm": 2 * g.fov_radius,
            "orientation": [1, 0, 0, 0, 1, 0],
            "slice_thickness_mm": SIZES[size]["thickness"],
            "rescale_intercepts": [float(v) for v in intercepts],
        },
        "facts": {
            "tumour": {"lung": "right", "extent_mm_xyz": _extent(tissue == LEGEND["tumour"], g),
                       "centre_lps_mm": [float(t_centre[0]), float(t_centre[1]),
                                                          float(t_centre[2] + Z_BOTTOM_MM)],
                       "volume_ml": float((tissue == LEGEND["tumour"]).sum() * g.dz * g.px * g.px / 1000)},
            "nodule": {"lung": "left", "centre_lps_mm": [float(n_centre[0]), float(n_centre[1]),
                                                         float(n_centre[2] + Z_BOTTOM_MM)],
                       "diameter_mm": NODULE["diameter"]},
            "vessel_segments": n_seg,
            "noise_sd_hu": NOISE_SD_HU,
        },
    }


def _slice_intercepts(nz: int) -> np.ndarray:
    """(0028,1052) Rescale Intercept of each slice, feet to head (see :data:`RESCALE_INTERCEPTS`)."""
    out = np.full(nz, RESCALE_INTERCEPTS[0])
    out[int(round(nz * RESCALE_SPLIT)):] = RESCALE_INTERCEPTS[1]
    return out


def _extent(mask, g):
    """Size (x, y, z) in mm of a mask's bounding box (voxel edges included)."""
    if not mask.any():
        return [0.0, 0.0, 0.0]
    k, j, i = (np.nonzero(mask.any(axis=a))[0] for a in ((1, 2), (0, 2), (0, 1)))
    return [float((i[-1] - i[0] + 1) * g.px), float((j[-1] - j[0] + 1) * g.px), float((k[-1] - k[0] + 1) * g.dz)]


def _blurred_noise_sd(sigma):
    """Standard deviation of unit white noise after the blur (sum of squared kernel weights)."""
    delta = np.zeros((15, 15, 15), np.float32)
    delta[7, 7, 7] = 1.0
    k = ndimage.gaussian_filter(delta, sigma, truncate=3.0)
    return float(np.sqrt((k.astype(np.float64) ** 2).sum()))


# =============================================================================== DICOM
UID_ROOT_ENTROPY = "helpers.sample synthetic chest CT"


def _uid(seed, *parts):
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[UID_ROOT_ENTROPY, GENERATOR_VERSION, str(seed), *map(str, parts)])


def _write_dicom(phantom: dict, dicom_dir: Path, *, seed: int, size: str) -> list[Path]:
    """One CT Image Storage file per slice, random names, instance numbers head -> feet."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    geo = phantom["geometry"]
    stored = phantom["stored"]
    nz, ny, nx = stored.shape
    dz, py, px = geo["spacing"]
    name_rng = np.random.default_rng([seed, 11])
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < nz:
        stem = f"IM_{int(name_rng.integers(16 ** 6)):06x}"
        if stem in seen:
            continue
        seen.add(stem)
        names.append(stem + ("" if name_rng.random() < 0.15 else ".dcm"))
    study, series, frame = _uid(seed, "study"), _uid(seed, "series", size), _uid(seed, "frame", size)
    dicom_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(nz):
        meta = FileMetaDataset()
        sop = _uid(seed, "sop", size, k)
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationVersionName = "HELPERS_SAMPLE"
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20170101"
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.AcquisitionTime = ds.ContentTime = f"1200{k // 60 % 60:02d}.{k % 60:02d}"
        ds.AccessionNumber = "SYN0001A"
        ds.Modality = "CT"
        ds.Manufacturer = "synthetic"
        ds.InstitutionName = "helpers.sample"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "CT CHEST (synthetic phantom)"
        ds.SeriesDescription = (f"Chest 3mm/2.5mm B40f synthetic ({size})" if size == "full"
                                else f"Chest synthetic ({size})")
        ds.ManufacturerModelName = f"helpers.sample v{GENERATOR_VERSION}"
        ds.PatientName = "SYNTHETIC^PATIENT"
        ds.PatientID = "SYN0001"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.PatientPosition = "HFS"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = f"{geo['slice_thickness_mm']:g}"  # thicker than the step: overlapping slices
        ds.SpacingBetweenSlices = f"{dz:g}"
        ds.KVP = "120"
        ds.DataCollectionDiameter = "500"
        ds.ReconstructionDiameter = f"{geo['fov_diameter_mm']:g}"
        ds.GantryDetectorTilt = "0"
        ds.TableHeight = "150"
        ds.XRayTubeCurrent = 200
        ds.ExposureTime = 500
        ds.ConvolutionKernel = "B40f"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = ""
        ds.StudyID = "1"
        ds.SeriesNumber = 2 if size == "full" else 3
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = nz - k  # many scanners number head -> feet: NOT position order
        z = geo["z_positions"][k]
        ds.ImagePositionPatient = [f"{geo['origin'][0]:.10g}", f"{geo['origin'][1]:.10g}", f"{z:.10g}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = f"{z:.10g}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = ny, nx
        ds.PixelSpacing = [f"{py:.10g}", f"{px:.10g}"]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.PixelPaddingValue = PADDING_STORED
        ds.WindowCenter = ["40", "-600"]
        ds.WindowWidth = ["400", "1500"]
        ds.WindowCenterWidthExplanation = ["MEDIASTINUM", "LUNG"]
        ds.RescaleIntercept = f"{geo['rescale_intercepts'][k]:g}"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PixelData = np.ascontiguousarray(stored[k]).astype("<i2").tobytes()
        path = dicom_dir / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# =============================================================================== files
def make_sample(out_dir: str | os.PathLike[str], *, seed: int = 0, size: str = "full") -> Path:
    """Write the synthetic chest CT as DICOM plus its ground-truth labels.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into (created).  It receives ``dicom/`` (one file per slice,
        random names, some without extension), ``labels.npz`` and ``labels.json``.
    seed : int
        Seed of every random choice; the same seed gives byte-identical files.
    size : {"full", "small"}
        See :func:`make_phantom`.

    Returns
    -------
    Path
        ``out_dir``.

    Notes
    -----
    Stored values are signed int16 with (0028,1053) Rescale Slope 1 and a
    (0028,1052) Rescale Intercept of -1024 on the lower half of the slices and -1000
    on the upper half (their stored values 24 lower, the HU the same): applying one
    slice's rescale to all is wrong on half the scan.  Outside the reconstruction
    circle the stored value is the (0028,0120) Pixel Padding Value -2000.
    (0018,0050) Slice Thickness (3 mm, full size) is larger than the 2.5 mm step
    between slice positions, as in an overlapping reconstruction: the spacing comes
    from the positions, not from the thickness.  (0020,0013) Instance Number runs
    head to feet, so sorting by it gives the slices upside down: sort by position.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     d = make_sample(tmp, size="small")
    ...     len(list((d / "dicom").iterdir())), sorted(p.name for p in d.iterdir())
    (40, ['dicom', 'labels.json', 'labels.npz'])
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    phantom = make_phantom(seed=seed, size=size)
    _write_dicom(phantom, out_dir / "dicom", seed=seed, size=size)
    np.savez_compressed(out_dir / "labels.npz", lungs=phantom["lungs"], tissue=phantom["tissue"])
    info = {
        "description": "Ground truth of the synthetic chest CT written by helpers.sample. Arrays are (z, y, x) in "
                       "the order load_series returns: slices feet to head, rows anterior to posterior, columns "
                       "from the patient's right to left.",
        "generator": "helpers.sample",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "lungs_legend": {"background": 0, "right_lung": 1, "left_lung": 2},
        "lungs_includes": list(LUNG_TISSUES),
        "legend": LEGEND,
        "hu": HU,
        "geometry": phantom["geometry"],
        **phantom["facts"],
    }
    (out_dir / "labels.json").write_text(json.dumps(info, indent=1) + "\n")
    return out_dir


def _stamp_text(size: str, seed: int) -> str:
    return f"helpers.sample {GENERATOR_VERSION} size={size} seed={seed}\n"


def _is_current(folder: Path, size: str, seed: int) -> bool:
    stamp = folder / STAMP_NAME
    try:
        return stamp.read_text() == _stamp_text(size, seed)
    except OSError:
        return False


def ensure_sample(out_dir: str | os.PathLike[str] | None = None, *, size: str = "full", seed: int = 0,
                  verbose: bool = False) -> Path:
    """Return the sample folder, generating it only when missing or out of date.

    Parameters
    ----------
    out_dir : str or Path, optional
        Default ``data/sample`` in the repository (:data:`helpers.data.DATA_DIR`).
    size : {"full", "small"}
        See :func:`make_phantom`.
    seed : int
        Seed passed to :func:`make_sample`.
    verbose : bool
        Print what was done and how long it took.

    Returns
    -------
    Path
        The folder holding ``dicom/``, ``labels.npz`` and ``labels.json``.

    Notes
    -----
    A file ``GENERATOR_VERSION`` is written last; a folder without it (a killed run)
    or with another version, size or seed is regenerated.  Generation happens in a
    temporary sibling folder that is renamed into place, so a reader never sees a
    half-written sample.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     d = ensure_sample(Path(tmp) / "s", size="small")
    ...     ensure_sample(d, size="small") == d
    True
    """
    out_dir = Path(out_dir) if out_dir is not None else _data_dir() / "sample"
    if _is_current(out_dir, size, seed):
        if verbose:
            print(f"{out_dir}: up to date (generator {GENERATOR_VERSION}, size={size}, seed={seed})")
        return out_dir
    t0 = time.perf_counter()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{time.time_ns()}"
    try:
        make_sample(tmp, seed=seed, size=size)
        (tmp / STAMP_NAME).write_text(_stamp_text(size, seed))
        old = None
        if _is_current(out_dir, size, seed):  # another process finished first: keep its sample
            return out_dir
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(out_dir, old)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if not _is_current(out_dir, size, seed):  # someone else won the race with a good sample
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _remove_stale_temps(out_dir)
    if verbose:
        print(f"{out_dir}: generated (generator {GENERATOR_VERSION}, size={size}, seed={seed}) "
              f"in {time.perf_counter() - t0:.1f} s")
    return out_dir


def _remove_stale_temps(out_dir: Path) -> None:
    """Delete temporary siblings left by killed runs (their process no longer exists)."""
    for p in out_dir.parent.glob(f".{out_dir.name}.*-*"):
        try:
            pid = int(p.name.rsplit(".", 1)[1].split("-")[1])
        except (IndexError, ValueError):
            continue
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid() or ".old-" in p.name
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(p, ignore_errors=True)


def load_labels(sample_dir: str | os.PathLike[str]) -> dict:
    """Ground truth of a sample folder, aligned with ``load_series(sample_dir / "dicom")``.

    Parameters
    ----------
    sample_dir : str or Path
        A folder written by :func:`make_sample` / :func:`ensure_sample`.

    Returns
    -------
    dict
        ``lungs`` uint8 (z, y, x): 0 background, 1 right lung, 2 left lung (vessels,
        tumour and nodule included; trachea and main bronchi excluded); ``tissue``
        uint8 (z, y, x) with ``legend`` {name: value}; plus everything in
        ``labels.json`` (geometry, seed, generator_version, tumour, nodule...).

    Raises
    ------
    FileNotFoundError
        When ``labels.npz`` or ``labels.json`` is missing.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     lab = load_labels(make_sample(tmp, size="small"))
    >>> lab["lungs"].shape == lab["tissue"].shape == (40, 128, 128), lab["legend"]["lung"]
    (True, 5)
    """
    sample_dir = Path(sample_dir)
    npz, js = sample_dir / "labels.npz", sample_dir / "labels.json"
    for f in (npz, js):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing: expected a sample folder written by helpers.sample "
                                    f"(run `python -m helpers.sample {sample_dir}`)")
    info = json.loads(js.read_text())
    with np.load(npz) as z:
        info["lungs"] = z["lungs"]
        info["tissue"] = z["tissue"]
    return info


def _data_dir() -> Path:
    """The data root, :data:`helpers.data.DATA_DIR` (looked up now, not at import)."""
    from . import data

    return data.DATA_DIR


def default_dicom_dir() -> Path:
    """Folder the chapters read: ``$DICOM_DIR``, else ``data/$DATASET``, else the generated sample.

    Returns
    -------
    Path
        ``$DICOM_DIR`` if set; else ``data/$DATASET`` (:data:`helpers.data.DATA_DIR`) if ``$DATASET`` is set;
        else ``ensure_sample() / "dicom"`` (generated on first use).

    Raises
    ------
    FileNotFoundError
        When ``$DICOM_DIR`` or ``data/$DATASET`` does not exist (the message says how to fetch it).
    """
    if os.environ.get("DICOM_DIR"):
        p = Path(os.environ["DICOM_DIR"]).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"$DICOM_DIR is set to {p}, which does not exist: point it at a folder "
                                    "of DICOM files or unset it to use the generated sample")
        return p
    name = os.environ.get("DATASET")
    if name:
        p = _data_dir() / name
        if not p.is_dir():
            raise FileNotFoundError(f"$DATASET is {name!r} but {p} does not exist: download it first with "
                                    f"`python -m helpers.data fetch {name}` (or unset DATASET to use the sample)")
        return p
    return ensure_sample() / "dicom"


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m helpers.sample",
                                 description="Generate the synthetic chest CT sample (once).")
    ap.add_argument("out_dir", nargs="?", default=str(_data_dir() / "sample"))
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="regenerate even if up to date")
    a = ap.parse_args(argv)
    out = Path(a.out_dir)
    if a.force and (out / STAMP_NAME).exists():
        (out / STAMP_NAME).unlink()
    ensure_sample(out, size=a.size, seed=a.seed, verbose=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
