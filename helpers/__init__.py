"""Tested helpers behind the book *DICOM Processing and Segmentation in Python*.

Arrays are ``(z, y, x)``; spacing is ``(z, y, x)`` in mm and travels with the
array in a :class:`Volume`.  The everyday functions are here at the top level;
the rest lives in submodules that load on first use (``helpers.display``,
``helpers.mesh``, ``helpers.cohort``, ``helpers.data``...).  Teaching code is
kept apart from the science: ``helpers.legacy`` (the 2017 tutorial code the book
shows failing), ``helpers.book`` (the chapters' set-up, exercise checkers, student
notebooks, the PDF) and ``helpers.testing`` (inputs built for tests and benchmarks).
"""

import importlib

from .errors import DicomSeriesError, SeriesWarning
from .export import load_npy, save_dicom_seg, save_nifti, save_npy
from .io import list_series, load_series
from .metrics import dice, hausdorff95
from .resample import crop_or_pad, estimate_memory, output_grid, resample, resize_to_shape
from .segment import LungParams, lung_qc, segment_lungs
from .volume import Volume

_SUBMODULES = (
    "annotations", "cohort", "data", "deid", "display", "export", "histogram", "intensity",
    "io", "legacy", "mesh", "metrics", "pacs", "resample", "sample", "segment", "tumour",
    "volume",
)


def __getattr__(name):
    # Submodules load on first use: ``helpers.sample.ensure_sample()`` works without
    # importing the sample generator (or plotly, dask, zarr) at ``import helpers``.
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))


__all__ = [
    "DicomSeriesError", "SeriesWarning", "Volume",
    "list_series", "load_series",
    "resample", "estimate_memory", "output_grid", "resize_to_shape", "crop_or_pad",
    "segment_lungs", "LungParams", "lung_qc",
    "dice", "hausdorff95",
    "save_npy", "load_npy", "save_nifti", "save_dicom_seg",
]
__version__ = "0.1.0"
