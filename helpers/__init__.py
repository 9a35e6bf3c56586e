"""Tested helpers behind the book *DICOM Processing and Segmentation in Python*.

Arrays are ``(z, y, x)``; spacing is ``(z, y, x)`` in mm and travels with the
array in a :class:`Volume`.
"""

from .errors import DicomSeriesError, SeriesWarning
from .volume import Volume
from .io import list_series, load_series
from . import sample

__all__ = [
    "DicomSeriesError",
    "SeriesWarning",
    "Volume",
    "list_series",
    "load_series",
    "sample",
]
__version__ = "0.1.0"
