"""A small numpy chest phantom for the lung-segmentation tests and benchmark.

Not the bundled sample (that one is real DICOM, see ``helpers.sample``): this is
an in-memory :class:`~helpers.volume.Volume` built in mm, cheap enough to make in
every test, with switches for the failure modes ``segment_lungs`` must survive:
table and cushion air, bowel gas and a stomach bubble, a chest-abdomen-pelvis
extent, lungs touching at the midline, noise (sharp kernel), thick or thin
slices, a tumour touching the chest wall, a nodule, trachea and main bronchi,
the heart between the lungs.

Geometry (LPS mm, origin at the image centre of the lowest slice): body ellipse
160 x 115 mm; right lung centred at x = -75 mm (the patient's right is -x), left
at +75 mm; lung bases are domes (the diaphragm); the heart sits between the
lungs low in the chest; the trachea runs down the midline to the carina, then
two main bronchi run to the hila.
"""

from __future__ import annotations

import numpy as np

from helpers.volume import Volume


def _ell(x, y, z, c, r):
    return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1


def _tube(x, y, z, p0, p1, radius):
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    L2 = float(d @ d)
    t = ((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / L2
    t = np.clip(t, 0, 1)
    return (x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2 <= radius**2


def make_phantom(
    *,
    n_xy: int = 160,
    fov_mm: float = 360.0,
    slice_mm: float = 2.5,
    z_mm: tuple[float, float] = (-30.0, 230.0),
    noise_hu: float = 0.0,
    table: bool = True,
    bowel: bool = True,
    touching: bool = False,
    tumour: bool = True,
    flip_x: bool = False,
    mass: str | None = None,
    effusion: bool = False,
    seed: int = 0,
) -> tuple[Volume, dict[str, np.ndarray]]:
    """Build the phantom.

    Parameters
    ----------
    n_xy : int
        Pixels per row and column (pixel size ``fov_mm / n_xy``).
    slice_mm : float
        Slice spacing (mm).
    z_mm : (float, float)
        Scan range along z in mm; the lung bases (diaphragm domes) are at
        0-40 mm, the apices at 220 mm, the carina at 160 mm.  Start at -300 for
        a chest-abdomen-pelvis extent, stop below 220 to crop the apices.
    noise_hu : float
        Standard deviation of added Gaussian noise (HU).
    table, bowel, touching, tumour : bool
        Switch the table with its air, the bowel gas and stomach bubble, lungs
        touching at the anterior midline, the tumour touching the chest wall.
    flip_x : bool
        Store the columns right-to-left on screen reversed (direction's x column
        negated): the labels must follow the patient, not the image.
    mass : {None, "hilar", "aortic", "posterior"}
        A second, larger mass (soft tissue, 35 HU) where the lung meets the
        mediastinum or the wall: ``"hilar"`` in the right lung on the right
        main bronchus's wall and against the mediastinum in front of it,
        ``"aortic"`` in the left lung against the mediastinum next to the
        descending aorta, ``"posterior"`` in the
        right lung on the posterior chest wall.  Ground truth: its part inside
        the lung envelope is lung (``truth["mass"]``).
    effusion : bool
        Pleural fluid (10 HU) in the dependent part of the left lung's base;
        it is *not* lung in the ground truth (``truth["effusion"]``).

    Returns
    -------
    vol : Volume
    truth : dict
        ``lungs`` (uint8 0/1 right/2 left, incl. vessels, tumour, nodule and
        mass, excl. airway and effusion), ``tumour``, ``nodule``, ``mass``,
        ``effusion``, ``airway``, ``heart`` (bool).
    """
    rng = np.random.default_rng(seed)
    px = fov_mm / n_xy
    zs = np.arange(z_mm[0], z_mm[1], slice_mm) + slice_mm / 2
    c = (np.arange(n_xy) - (n_xy - 1) / 2) * px
    z, y, x = np.meshgrid(zs, c, c, indexing="ij")
    hu = np.full(z.shape, -1000.0, np.float32)
    hu[x**2 + y**2 > (fov_mm / 2 - 2) ** 2] = -2048.0  # circular field-of-view padding

    body = (x / 160.0) ** 2 + (y / 115.0) ** 2 <= 1
    hu[body] = -90.0  # fat
    hu[body & ((x / 150.0) ** 2 + (y / 105.0) ** 2 <= 1)] = 40.0  # muscle / organs
    ribs = body & ((x / 140.0) ** 2 + (y / 97.0) ** 2 <= 1) & ((x / 133.0) ** 2 + (y / 90.0) ** 2 > 1)
    ribs &= (np.floor(z / 12.0) % 2 == 0)
    hu[ribs] = 500.0
    spine = (x**2 + (y - 70.0) ** 2 <= 18.0**2)
    hu[spine] = 400.0

    # lungs: ellipsoidal columns, dome bases, rounded apices
    lx = 55.0 if not touching else 62.0
    cx = 75.0 if not touching else 62.0
    lungs = np.zeros(z.shape, np.uint8)
    for label, sx in ((1, -1.0), (2, 1.0)):
        xc = sx * cx
        r2 = ((x - xc) / lx) ** 2 + ((y + 5.0) / 82.0) ** 2
        dome = 40.0 * (1 - ((x - xc) / 70.0) ** 2 - (y / 95.0) ** 2)  # diaphragm height
        apex = 220.0 - 60.0 * r2  # rounded top
        env = (r2 <= 1) & (z >= dome) & (z <= apex)
        lungs[env] = label
    heart = _ell(x, y, z, (15.0, -25.0, 55.0), (62.0, 55.0, 50.0))
    aorta = _tube(x, y, z, (-5.0, 40.0, -30.0), (-5.0, 40.0, 150.0), 13.0) | _ell(x, y, z, (0, 0, 150), (25, 45, 14))
    lungs[heart | aorta | spine] = 0
    lungs[~((x / 133.0) ** 2 + (y / 90.0) ** 2 <= 1)] = 0  # inside the ribs

    # airway: trachea to the carina (160 mm), main bronchi to the hila
    carina = (0.0, -10.0, 160.0)
    lumen = _tube(x, y, z, (0.0, -10.0, 400.0), carina, 8.0)
    wall = _tube(x, y, z, (0.0, -10.0, 400.0), carina, 10.5)
    for sx in (-1.0, 1.0):
        end = (sx * 42.0, -2.0, 135.0)
        lumen |= _tube(x, y, z, carina, end, 5.5)
        wall |= _tube(x, y, z, carina, end, 7.5)
    airway = wall & body
    lungs[airway] = 0

    env = lungs > 0
    hu[env] = -860.0
    _add_vessels(hu, x, y, z, env, rng)  # inside the lungs, included in the truth
    hu[heart] = 45.0
    hu[aorta] = 50.0
    hu[wall] = 40.0
    hu[lumen & body] = -1000.0

    truth_tumour = np.zeros(z.shape, bool)
    if tumour:
        # 3 cm tumour in the right lung touching the lateral chest wall
        t = _ell(x, y, z, (-118.0, 0.0, 110.0), (17.0, 17.0, 17.0))
        hu[t & body] = 35.0
        truth_tumour = t & env
    nodule = _ell(x, y, z, (80.0, -10.0, 150.0), (5.0, 5.0, 5.0)) & env
    hu[nodule] = 30.0
    truth_mass = np.zeros(z.shape, bool)
    if mass is not None:
        mm = _mass(x, y, z, mass) & body & ~(lumen & body)
        hu[mm] = 35.0
        truth_mass = mm & env
    truth_effusion = np.zeros(z.shape, bool)
    if effusion:
        # fluid layering posteriorly at the left base, up to 25 mm deep
        truth_effusion = (lungs == 2) & (y > 55.0) & (z < 90.0) & ~truth_mass
        hu[truth_effusion] = 10.0
        env = env & ~truth_effusion

    if bowel:
        _add_bowel_gas(hu, x, y, z)
    if table:
        _add_table(hu, x, y)
    hu[x**2 + y**2 > (fov_mm / 2 - 2) ** 2] = -2048.0
    if noise_hu:
        hu += np.asarray(rng.normal(0, noise_hu, hu.shape), np.float32)
    hu = np.clip(np.round(hu), -2048, 3071).astype(np.int16)

    lungs = np.where(env, lungs, 0).astype(np.uint8)
    truth = dict(lungs=lungs, tumour=truth_tumour, nodule=nodule, mass=truth_mass, effusion=truth_effusion,
                 airway=airway, heart=heart)
    origin = (float(c[0]), float(c[0]), float(zs[0]))
    direction = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    if flip_x:
        hu = hu[:, :, ::-1].copy()
        truth = {k: v[:, :, ::-1].copy() for k, v in truth.items()}
        direction[:, 2] = [-1.0, 0.0, 0.0]
        origin = (float(c[-1]), float(c[0]), float(zs[0]))
    vol = Volume(hu, spacing=(slice_mm, px, px), origin=origin, direction=direction)
    return vol, truth


def _mass(x: np.ndarray, y: np.ndarray, z: np.ndarray, mass: str) -> np.ndarray:
    """The ball of the second mass named ``mass`` (before it is cut to the body and the airway)."""
    centres = {"hilar": ((-30.0, -20.0, 130.0), 16.0),  # on the right main bronchus, against the mediastinum
               "aortic": ((38.0, 38.0, 95.0), 18.0),  # posteromedial left lung, by the aorta
               "posterior": ((-75.0, 62.0, 80.0), 16.0)}  # on the posterior chest wall
    if mass not in centres:
        raise ValueError(f"mass must be one of {sorted(centres)} or None, got {mass!r}")
    (mc, mr) = centres[mass]
    return _ell(x, y, z, mc, (mr, mr, mr))


def _add_bowel_gas(hu: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
    """The stomach bubble under the left dome, and bowel gas lower down (air, -1000 HU)."""
    below_dome = z < 40.0 * (1 - ((x - 75) / 70.0) ** 2 - (y / 95.0) ** 2) - 6
    hu[_ell(x, y, z, (70.0, -30.0, 5.0), (35.0, 25.0, 18.0)) & below_dome] = -1000.0
    for (bx, by, bz, r) in ((-60, -40, -40, 25), (50, 20, -60, 30), (-20, -60, -120, 40), (70, -50, -180, 35),
                             (-70, 10, -230, 45), (10, -30, -270, 30)):
        hu[_ell(x, y, z, (bx, by, bz), (r, r * 0.8, r * 0.7))] = -1000.0


def _add_table(hu: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """The table under the patient: a cushion, and a slab with air in its hollows."""
    cushion = (y > 115.0) & (y <= 125.0) & (np.abs(x) < 170)
    hu[cushion] = -820.0
    slab = (y > 125.0) & (y <= 145.0) & (np.abs(x) < 175)
    hollow = (y > 128.0) & (y <= 142.0) & (np.abs(x) < 170) & (np.abs(x) % 40 > 3)
    hu[slab] = 250.0
    hu[hollow] = -1000.0


def _add_vessels(hu: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray, env: np.ndarray,
                 rng: np.random.Generator, *, n: int = 14) -> None:
    """``n`` straight vessels (40 HU) from each hilum outwards, cut to the lungs ``env``."""
    for _ in range(n):
        lab = int(rng.integers(1, 3))
        sx = -1.0 if lab == 1 else 1.0
        p0 = (sx * 35.0, rng.uniform(-20, 10), rng.uniform(60, 160))
        p1 = (sx * rng.uniform(70, 110), rng.uniform(-60, 50), rng.uniform(30, 200))
        v = _tube(x, y, z, p0, p1, rng.uniform(1.5, 3.5)) & env
        hu[v] = 40.0
