"""What the sample should look like: projected atom-column density and spacing of a lattice.

LoG*'s rewards need two numbers from physics, not from labels: how many atom columns an image
of a given size should show (``N_expected``) and how close two real columns can be (the
nearest-neighbour distance). Both follow from the projected unit cell.

Built in:

* graphene, ``a = 0.246 nm``: two carbon atoms per hexagonal cell, 38.2 atoms/nm²,
  nearest neighbours 0.142 nm apart;
* SrTiO3 viewed along [001], cubic ``a = 0.3905 nm``: per projected cell one Sr column, one
  Ti-O column and two pure O columns. HAADF shows the Sr and Ti-O columns; the O columns are
  faint, so the user says which columns count (``srtio3(columns=("Sr", "TiO"))``, the
  default);
* any user-given unit cell (:meth:`Lattice.from_unit_cell`);
* more materials (hBN, the 2H dichalcogenides, Si and GaAs [110], fcc metals) in
  :mod:`agents.logstar.library`, where :func:`~agents.logstar.library.get_lattice` turns a
  name into a lattice.

Lengths are in nm; ``*_px`` helpers convert with the survey image's pixel size (nm/pixel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Sequence, Tuple

import numpy as np

__all__ = ["SRTIO3_COLUMNS", "Lattice", "check_pixel_size", "graphene", "srtio3"]

#: projected columns of SrTiO3 [001] (fractional positions in the cubic cell)
SRTIO3_COLUMNS: Dict[str, Tuple[Tuple[float, float], ...]] = {
    "Sr": ((0.0, 0.0),),
    "TiO": ((0.5, 0.5),),
    "O": ((0.5, 0.0), (0.0, 0.5)),
}
#: HAADF brightness of each SrTiO3 column, sum of Z**1.7 (Sr 38; Ti 22 + O 8; O 8)
_SRTIO3_BRIGHTNESS = {"Sr": 38**1.7, "TiO": 22**1.7 + 8**1.7, "O": 8**1.7}


@dataclass(frozen=True)
class Lattice:
    """A 2-D projected lattice: two cell vectors and the atom columns (basis) inside a cell.

    Attributes:
        name: what to call it in reports (``"graphene"``, ``"SrTiO3[001] Sr+TiO"``...).
        cell: ``((ax, ay), (bx, by))`` the projected cell vectors, nm.
        basis: fractional positions ``(u, v)`` of the counted columns in the cell.
        labels: one name per basis column (``"C"``, ``"Sr"``...).
        brightness: relative HAADF brightness of each basis column (``sum Z**1.7`` of its
            atoms); empty when unknown (all alike). Used for the lattice's expected
            reflections and for synthetic images, never by the rewards.

    Example:
        >>> lat = Lattice.from_unit_cell("square", (0.4, 0.4), 90.0, [(0.0, 0.0)])
        >>> round(lat.density_per_nm2, 2), round(lat.nn_distance_nm, 3)
        (6.25, 0.4)
    """

    name: str
    cell: Tuple[Tuple[float, float], Tuple[float, float]]
    basis: Tuple[Tuple[float, float], ...]
    labels: Tuple[str, ...] = ()
    brightness: Tuple[float, ...] = ()
    _nn: float = field(default=0.0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cell = np.asarray(self.cell, dtype=float)
        if cell.shape != (2, 2) or not np.all(np.isfinite(cell)):
            raise ValueError(f"cell must be two finite 2-D vectors (nm), got {self.cell!r}")
        if abs(np.linalg.det(cell)) < 1e-12:
            raise ValueError("the two cell vectors are parallel: the cell has no area")
        basis = np.asarray(self.basis, dtype=float)
        if basis.ndim != 2 or basis.shape[1] != 2 or len(basis) == 0:
            raise ValueError(f"basis must be a non-empty list of (u, v) pairs, got {self.basis!r}")
        if not np.all(np.isfinite(basis)):
            raise ValueError("basis positions must be finite")
        labels = tuple(self.labels) or ("atom",) * len(basis)
        if len(labels) != len(basis):
            raise ValueError(f"{len(labels)} labels for {len(basis)} basis columns")
        object.__setattr__(self, "cell", tuple(tuple(float(v) for v in row) for row in cell))
        object.__setattr__(self, "basis", tuple(tuple(float(v) for v in row) for row in basis))
        object.__setattr__(self, "labels", labels)
        bright = tuple(float(b) for b in self.brightness)
        if bright and (len(bright) != len(basis) or not all(b > 0 for b in bright)):
            raise ValueError(f"brightness needs one value > 0 per basis column, got {bright!r}")
        object.__setattr__(self, "brightness", bright)
        wrapped = basis % 1.0
        diff = np.abs(wrapped[:, None, :] - wrapped[None, :, :])
        diff = np.minimum(diff, 1.0 - diff).max(axis=2)
        np.fill_diagonal(diff, np.inf)
        if np.any(diff < 1e-9):
            raise ValueError("two basis columns sit on the same spot")
        nn = self._nearest_neighbour()
        object.__setattr__(self, "_nn", nn)

    @classmethod
    def from_unit_cell(
        cls,
        name: str,
        lengths_nm: Tuple[float, float],
        angle_deg: float,
        basis: Sequence[Tuple[float, float]],
        labels: Sequence[str] = (),
        brightness: Sequence[float] = (),
    ) -> Lattice:
        """A lattice from cell lengths ``(a, b)`` in nm, the angle between them in degrees,
        and fractional column positions.

        Example:
            >>> hexagonal = Lattice.from_unit_cell(
            ...     "graphene", (0.246, 0.246), 120.0, [(1 / 3, 2 / 3), (2 / 3, 1 / 3)])
        """
        a, b = (float(v) for v in lengths_nm)
        if not (a > 0 and b > 0):
            raise ValueError(f"cell lengths must be > 0 nm, got {lengths_nm!r}")
        gamma = math.radians(float(angle_deg))
        if not 0 < gamma < math.pi:
            raise ValueError(f"the cell angle must lie between 0 and 180 degrees, got {angle_deg}")
        cell = ((a, 0.0), (b * math.cos(gamma), b * math.sin(gamma)))
        return cls(
            name=name,
            cell=cell,
            basis=tuple(map(tuple, basis)),
            labels=tuple(labels),
            brightness=tuple(brightness),
        )

    @property
    def cell_area_nm2(self) -> float:
        """Area of the projected cell, nm²."""
        return float(abs(np.linalg.det(np.asarray(self.cell))))

    @property
    def density_per_nm2(self) -> float:
        """Counted atom columns per nm² of projected area."""
        return len(self.basis) / self.cell_area_nm2

    @property
    def nn_distance_nm(self) -> float:
        """Shortest distance between two counted columns, nm."""
        return self._nn

    def _nearest_neighbour(self) -> float:
        cell = np.asarray(self.cell)
        basis = np.asarray(self.basis) % 1.0
        shifts = np.array([(i, j) for i in range(-2, 3) for j in range(-2, 3)], dtype=float)
        sites = (basis[None, :, :] + shifts[:, None, :]).reshape(-1, 2) @ cell
        origin = basis @ cell
        d = np.linalg.norm(sites[None, :, :] - origin[:, None, :], axis=2)
        d = d[d > 1e-9]
        return float(d.min()) if d.size else 0.0

    def expected_count(self, shape: Tuple[int, int], pixel_size_nm: float) -> float:
        """How many counted columns an image of ``shape`` pixels should show.

        Args:
            shape: image ``(rows, columns)``.
            pixel_size_nm: size of one pixel, nm (from the survey image's calibration).
        """
        pixel = check_pixel_size(pixel_size_nm)
        rows, cols = shape
        if rows < 1 or cols < 1:
            raise ValueError(f"image shape must be positive, got {shape!r}")
        return rows * cols * pixel * pixel * self.density_per_nm2

    def nn_distance_px(self, pixel_size_nm: float) -> float:
        """Nearest-neighbour distance in pixels of an image with this pixel size."""
        return self.nn_distance_nm / check_pixel_size(pixel_size_nm)

    def as_dict(self) -> Dict[str, Any]:
        """JSON-able description."""
        return {
            "name": self.name,
            "cell_nm": [list(v) for v in self.cell],
            "basis": [list(v) for v in self.basis],
            "labels": list(self.labels),
            "brightness": list(self.brightness),
            "density_per_nm2": self.density_per_nm2,
            "nn_distance_nm": self.nn_distance_nm,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Lattice:
        """Inverse of :meth:`as_dict` (derived numbers are recomputed)."""
        return cls(
            name=str(data["name"]),
            cell=tuple(tuple(v) for v in data["cell_nm"]),
            basis=tuple(tuple(v) for v in data["basis"]),
            labels=tuple(data.get("labels", ())),
            brightness=tuple(data.get("brightness", ())),
        )


def check_pixel_size(pixel_size_nm: Any) -> float:
    """A pixel size in nm as a float; ``ValueError`` unless it is a finite number > 0."""
    try:
        pixel = float(pixel_size_nm)
    except (TypeError, ValueError):
        raise ValueError(f"pixel_size_nm must be a number, got {pixel_size_nm!r}") from None
    if not (pixel > 0 and math.isfinite(pixel)):
        raise ValueError(f"pixel_size_nm must be > 0 nm, got {pixel_size_nm!r}")
    return pixel


def graphene(a_nm: float = 0.246) -> Lattice:
    """Graphene: hexagonal, ``a = 0.246 nm``, two C atoms per cell (38.2 atoms/nm²,
    nearest neighbours 0.142 nm apart).

    Example:
        >>> round(graphene().nn_distance_nm, 4)
        0.142
    """
    return Lattice.from_unit_cell(
        "graphene",
        (a_nm, a_nm),
        120.0,
        [(1 / 3, 2 / 3), (2 / 3, 1 / 3)],
        ("C", "C"),
        brightness=(6**1.7, 6**1.7),
    )


def srtio3(columns: Sequence[str] = ("Sr", "TiO"), a_nm: float = 0.3905) -> Lattice:
    """SrTiO3 viewed along [001]: a square projected cell of ``a = 0.3905 nm``.

    Args:
        columns: which projected columns count as atoms: any of ``"Sr"``, ``"TiO"``
            (HAADF-bright) and ``"O"`` (two pure-oxygen columns per cell, faint in HAADF).
        a_nm: the cubic lattice parameter, nm.

    Example:
        >>> lat = srtio3()                    # Sr and Ti-O columns, a HAADF image
        >>> round(lat.density_per_nm2, 2), round(lat.nn_distance_nm, 4)
        (13.12, 0.2761)
        >>> round(srtio3(columns=("Sr",)).nn_distance_nm, 4)
        0.3905
    """
    chosen = list(dict.fromkeys(columns))
    unknown = [c for c in chosen if c not in SRTIO3_COLUMNS]
    if unknown or not chosen:
        raise ValueError(
            f"SrTiO3 columns must be chosen from {sorted(SRTIO3_COLUMNS)}, got {list(columns)!r}"
        )
    basis, labels, bright = [], [], []
    for col in chosen:
        for pos in SRTIO3_COLUMNS[col]:
            basis.append(pos)
            labels.append(col)
            bright.append(_SRTIO3_BRIGHTNESS[col])
    return Lattice.from_unit_cell(
        f"SrTiO3[001] {'+'.join(chosen)}", (a_nm, a_nm), 90.0, basis, labels, bright
    )
