"""Hounsfield-unit constants shared by the helpers: one home, one value each.

The Hounsfield scale is defined by two points, air at -1000 HU and water at
0 HU.  The other values here are conventions this package uses in several
modules (padding, the body threshold, the 2017 model-input range, the display
windows); a module that needs one imports it from here rather than writing the
number again.

Examples
--------
>>> from helpers.hu import AIR_HU, WATER_HU, WINDOWS
>>> AIR_HU, WATER_HU, WINDOWS["lung"]
(-1000.0, 0.0, (-600.0, 1500.0))
"""

from __future__ import annotations

__all__ = [
    "AIR_HU",
    "WATER_HU",
    "PADDING_HU",
    "PADDING_BELOW_HU",
    "BODY_THRESHOLD_HU",
    "MIN_BOUND_HU",
    "MAX_BOUND_HU",
    "LAA_HU",
    "WINDOWS",
    "LUNG_WINDOW",
]

#: Air, by definition of the Hounsfield scale (HU).
AIR_HU = -1000.0
#: Water, by definition of the Hounsfield scale (HU).
WATER_HU = 0.0
#: Value given to voxels outside the scanned field (resampling, crop-or-pad, the
#: loader's padding): -1024 HU, what a stored 0 becomes with the usual
#: (0028,1052) Rescale Intercept of -1024, a little below air.
PADDING_HU = -1024.0
#: Values below this are not tissue: air is -1000 HU, and scanners store the
#: outside of the circular field of view as -2000, -3024 or -32768 HU.
PADDING_BELOW_HU = -1100.0
#: Voxels above this (HU) are body tissue; fat is about -100 HU, the table
#: cushion's foam and the air around the patient are below.
BODY_THRESHOLD_HU = -500.0
#: The 2017 Kaggle tutorial's model-input range, ``MIN_BOUND`` and ``MAX_BOUND``
#: (HU): air at the bottom, above 400 HU mostly bone, which the lung nodule
#: models of 2017 did not need.
MIN_BOUND_HU = -1000.0
#: See :data:`MIN_BOUND_HU`.
MAX_BOUND_HU = 400.0
#: Low-attenuation area threshold (HU): lung voxels below it count as emphysema-like
#: (LAA-950, the usual CT emphysema index).
LAA_HU = -950.0

#: Named display windows as ``(level, width)`` in HU.
#:
#: Values are the common chest/body CT presets listed by Radiopaedia,
#: "Windowing (CT)" (https://radiopaedia.org/articles/windowing-ct), which gives
#: lungs W 1500 L -600, mediastinum W 350 L 50, soft tissues W 350-400
#: L 20-60, bone W 1800 L 400 and brain W 80 L 40.  Scanners ship similar
#: presets; small differences between sites are normal.
WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "soft_tissue": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
#: The lung window ``(level, width)`` in HU.
LUNG_WINDOW = WINDOWS["lung"]
