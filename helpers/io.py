"""Reading CT series from folders, zip archives or lists of files (stub; see issue 2)."""
from .errors import DicomSeriesError

def list_series(source):
    raise NotImplementedError

def load_series(source, *, series_uid=None):
    raise NotImplementedError
