"""The 2017 tutorial code, rebuilt faithfully so the book can show where it breaks.

Sources.  Two closely related versions circulated in 2017:

* Guido Zuidhof's Kaggle kernel "Full Preprocessing Tutorial" (Data Science Bowl 2017):
  sorts the slices by ``ImagePositionPatient[2]``, converts to HU *slice by slice*
  with each slice's own (0028,1052) Rescale Intercept / (0028,1053) Rescale Slope,
  and resamples with ``scipy.ndimage.interpolation.zoom(..., mode='nearest')``;
* Howard Chen's Radiology Data Quest post "DICOM Processing and Segmentation in
  Python", which adapts it: sorts by ``InstanceNumber``, applies the *first*
  slice's rescale to the whole stack, and calls ``zoom`` with scipy's defaults.

This module reproduces the **blog (Radiology Data Quest) version**.  The original
pages could not be retrieved verbatim while writing it; the code was rebuilt from
the many public copies of both versions (they agree line for line on the parts
used here) and from memory of the originals, so small details (a default
``mode``) may differ.  Only what pydicom 3 / scipy / numpy 2 force was changed,
each marked ``# 2017:`` in the source:

* ``dicom.read_file`` -> ``pydicom.dcmread`` (the ``dicom`` package is gone);
* ``[SliceThickness] + PixelSpacing`` -> ``[SliceThickness] + list(PixelSpacing)``
  (pydicom 3's ``MultiValue`` is no longer a ``list``);
* ``scipy.ndimage.interpolation.zoom`` -> ``scipy.ndimage.zoom`` (deprecated namespace).

Use :func:`helpers.io.load_series` and :func:`helpers.resample.resample` instead.
"""

from __future__ import annotations

import os

import numpy as np
import pydicom
import scipy.ndimage

__all__ = ["load_scan", "get_pixels_hu", "resample"]


def load_scan(path):
    """Read every file of a folder and sort the slices by (0020,0013) Instance Number (2017).

    Parameters
    ----------
    path : str
        Folder holding one series, one file per slice (``path + '/' + name`` is used
        as in 2017, so pass a string).

    Returns
    -------
    list of pydicom.Dataset
        Sorted by Instance Number; every slice's ``SliceThickness`` is *overwritten*
        with ``|z0 - z1|`` of the first two slices' (0020,0032) Image Position (Patient).

    Raises
    ------
    pydicom.errors.InvalidDicomError
        On any non-DICOM file in the folder (a README, a DICOMDIR's siblings...).
    IndexError
        When the folder holds a single slice.

    Notes
    -----
    What breaks, and why:

    * **Instance Number is not a position.**  Scanners number images in
      acquisition or reconstruction order; many number head-to-feet, some restart
      per bed position, some reconstruct in reverse, and de-identification tools
      sometimes renumber.  Sorted by number, the stack can be upside down or
      shuffled while every slice still looks fine.  Sort by position along the
      slice normal instead (the Kaggle kernel sorted by ``ImagePositionPatient[2]``).
    * **Slice spacing from two slices.**  If the first gap is a missing slice, a
      localizer, or a second series in the same folder, every later step uses a
      wrong spacing; and the real (0018,0050) Slice Thickness is lost because it
      is overwritten (thickness and spacing are different things anyway).
    * **Every file is read.**  One stray file, a second series or a scout image
      in the folder either crashes the call or ends up in the stack.
    * **One slice is an error.**  A single-image folder ends in a bare
      ``IndexError: list index out of range`` from the fallback branch.
    * **Only axial z.**  ``ImagePositionPatient[2]`` ignores tilted or
      non-axial acquisitions.

    Examples
    --------
    Three copies of pydicom's example CT slice, numbered against their position:

    >>> import tempfile
    >>> from pydicom import examples
    >>> folder = tempfile.mkdtemp()
    >>> for number, z in [(1, 10.0), (2, 0.0), (3, 5.0)]:
    ...     ds = examples.ct
    ...     ds.InstanceNumber, ds.ImagePositionPatient[2] = number, z
    ...     ds.save_as(f"{folder}/slice{number}.dcm")
    >>> slices = load_scan(folder)
    >>> [float(s.ImagePositionPatient[2]) for s in slices]  # sorted by number, not position
    [10.0, 0.0, 5.0]
    >>> float(slices[0].SliceThickness)  # |10 - 0|: the spacing is 5 mm
    10.0
    """
    # 2017: dicom.read_file(path + '/' + s)
    slices = [pydicom.dcmread(path + "/" + s) for s in os.listdir(path)]
    slices.sort(key=lambda x: int(x.InstanceNumber))
    try:
        slice_thickness = np.abs(slices[0].ImagePositionPatient[2] - slices[1].ImagePositionPatient[2])
    except Exception:  # 2017: a bare ``except:``
        slice_thickness = np.abs(slices[0].SliceLocation - slices[1].SliceLocation)

    for s in slices:
        s.SliceThickness = slice_thickness

    return slices


def get_pixels_hu(scans):
    """Stack the pixel data and convert it to HU with the *first* slice's rescale (2017 blog).

    Parameters
    ----------
    scans : list of pydicom.Dataset
        As returned by :func:`load_scan`.

    Returns
    -------
    ndarray, int16, shape (z, y, x)
        ``stored * slope + intercept`` using ``scans[0]``'s (0028,1053) Rescale Slope
        and (0028,1052) Rescale Intercept for every slice; stored values of exactly
        -2000 (a common outside-the-field padding) are set to 0 first.

    Notes
    -----
    What breaks, and why:

    * **One slice's rescale for all.**  Rescale Intercept and Slope are per
      image; some scanners and most post-processed or converted series vary them
      slice by slice.  The Kaggle kernel looped over slices with each one's own
      values; the blog version reproduced here does not, so a slice with another
      intercept is off by the difference in HU everywhere.
    * **int16 arithmetic.**  A non-unit slope is applied in float64 and then
      truncated to int16; a fractional intercept is truncated by ``np.int16``;
      unsigned stored values above 32767 wrap around to negative numbers when
      cast to int16 before the rescale.
    * **Padding guessed.**  Only -2000 is treated as padding; the real (0028,0120)
      Pixel Padding Value (often -3024 or 0 with another intercept) is ignored.

    Examples
    --------
    >>> from pydicom import examples
    >>> a, b = examples.ct, examples.ct
    >>> b.RescaleIntercept = -1000  # the second slice has its own intercept
    >>> hu = get_pixels_hu([a, b])
    >>> hu.dtype, hu.shape
    (dtype('int16'), (2, 128, 128))
    >>> int(hu[1, 0, 0] - (b.pixel_array[0, 0] + b.RescaleIntercept))  # off by 24 HU
    -24
    """
    image = np.stack([s.pixel_array for s in scans])
    # Convert to int16 (from sometimes int16),
    # should be possible as values should always be low enough (<32k)
    image = image.astype(np.int16)

    # Set outside-of-scan pixels to 0
    # The intercept is usually -1024, so air is approximately 0
    image[image == -2000] = 0

    # Convert to Hounsfield units (HU)
    intercept = scans[0].RescaleIntercept
    slope = scans[0].RescaleSlope

    if slope != 1:
        image = slope * image.astype(np.float64)
        image = image.astype(np.int16)

    image += np.int16(intercept)

    return np.array(image, dtype=np.int16)


def resample(image, scan, new_spacing=[1, 1, 1]):  # noqa: B006 - the 2017 signature
    """Resample with ``scipy.ndimage.zoom`` (cubic spline by default), as in 2017.

    Parameters
    ----------
    image : ndarray, shape (z, y, x)
        Usually the int16 output of :func:`get_pixels_hu`.
    scan : list of pydicom.Dataset
        The slices; only ``scan[0].SliceThickness`` (as overwritten by
        :func:`load_scan`) and ``scan[0].PixelSpacing`` are used.
    new_spacing : list of 3 float, default [1, 1, 1]
        Target spacing ``(z, y, x)`` in mm.

    Returns
    -------
    image : ndarray, shape rounded from ``shape * spacing / new_spacing``
        Same dtype as the input (int16 from :func:`get_pixels_hu`: values are
        rounded and clipped after a float64 computation).
    new_spacing : ndarray, float64
        The spacing actually obtained (not exactly ``new_spacing``, since the
        shape was rounded).

    Notes
    -----
    What breaks, and why:

    * **Corners aligned, not extents.**  ``zoom`` maps the first and last voxel
      *centres* onto each other, so the content is stretched by
      ``(n - 1) / (m - 1)`` rather than ``n / m``: sub-millimetre shifts that
      grow towards the far end of the volume, and no origin is returned to
      locate anything afterwards.
    * **Spacing from Slice Thickness.**  The z spacing is the value
      :func:`load_scan` wrote from the first gap; a missing slice elsewhere is
      stretched over, not interpolated by position.
    * **Cost.**  Order 3 needs a spline prefilter that copies the whole volume to
      float64 (8 bytes per voxel, on top of input and output) and runs on one
      core: 10-16 s and about 350 MB on top of the input for a 512x512x120
      chest CT to 1 mm on the project's 2-core test machine, 50-200x the time
      of :func:`helpers.resample.resample` (``docs/benchmarks.md``); older or
      busier machines take the ~30 s the 2017 readers remember.
    * **Ends bent.**  With ``zoom``'s default boundary mode even a straight
      ramp comes out bent within a few voxels of the first and last plane
      (4 HU off on a 10 HU/mm ramp in ``tests/test_legacy.py``).
    * **Overshoot.**  Cubic splines ring at air/bone edges (values below -1024
      or above the real maximum), which a later threshold may pick up.

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset()
    >>> ds.SliceThickness, ds.PixelSpacing = 2.5, [0.7, 0.7]
    >>> out, spacing = resample(np.zeros((4, 10, 10), np.int16), [ds])
    >>> out.shape, out.dtype, spacing.round(3).tolist()
    ((10, 7, 7), dtype('int16'), [1.0, 1.0, 1.0])
    """
    # Determine current pixel spacing
    # 2017: [scan[0].SliceThickness] + scan[0].PixelSpacing (MultiValue was a list)
    spacing = map(float, ([scan[0].SliceThickness] + list(scan[0].PixelSpacing)))
    spacing = np.array(list(spacing))

    resize_factor = spacing / new_spacing
    new_real_shape = image.shape * resize_factor
    new_shape = np.round(new_real_shape)
    real_resize_factor = new_shape / image.shape
    new_spacing = spacing / real_resize_factor

    # 2017: scipy.ndimage.interpolation.zoom(image, real_resize_factor)
    image = scipy.ndimage.zoom(image, real_resize_factor)

    return image, new_spacing
