"""A library of projected lattices: what common samples show down common zone axes.

LoG*'s rewards need the projected cell and the columns that count; typing them by hand is
where a user goes wrong (only the W sublattice of WS2, say). Each entry here knows its cell,
its columns and how bright each column is in HAADF (``sum of Z**1.7`` over its atoms), and
lets the user choose which columns count:

=====================  ==========================================================  ========
spec                   what it is                                                  columns
=====================  ==========================================================  ========
``graphene``           monolayer graphene [001], a = 0.246 nm                      C
``hBN``                monolayer hexagonal BN [001], a = 0.2504 nm                 B, N
``MoS2`` ``WS2``       2H transition-metal dichalcogenide monolayer [001]:          M, X2
``MoSe2`` ``WSe2``     metal columns and chalcogen pairs on a honeycomb
                       (a = 0.3160, 0.3154, 0.3289, 0.3282 nm); ``WS2:W`` = the
                       metal columns only (a triangular lattice); ``WS2:bulk`` = a
                       2H multilayer, every honeycomb column a W + S2 column
``SrTiO3``             perovskite [001], a = 0.3905 nm                             Sr, TiO, O
``SrTiO3[110]``        perovskite [110]: rectangle a/sqrt 2 x a, Ti columns a/2    SrO, Ti,
                       from the SrO columns, O2 columns beside the Ti              O2
``Si[110]``            diamond cubic [110], a = 0.5431 nm: dumbbells 0.136 nm      Si
                       apart; ``Si[110]:dumbbell`` = one column per dumbbell
``GaAs[110]``          zinc blende [110], a = 0.5653 nm: Ga-As dumbbells           Ga, As
                       0.141 nm apart; ``:dumbbell`` as for Si
``Au[001]`` ``Au[110]``  fcc metals down [001] (square, a/sqrt 2 apart) and [110]   M
(Ag, Cu, Pt, Pd, Ni,   (centred rectangle a x a/sqrt 2)
Al likewise)
=====================  ==========================================================  ========

A spec is ``name[:column,column...]``: ``"WS2"`` counts the W and the S2 columns (what a
HAADF image of a monolayer shows), ``"WS2:W"`` the W columns only, ``"WS2:bulk"`` the mixed
columns of a multilayer, ``"SrTiO3:Sr,TiO,O"`` adds the faint O columns. Lattice
parameters are room-temperature literature values (bulk for the dichalcogenides' in-plane
``a``); pass ``a_nm=`` to :func:`library_lattice` for a strained film.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .lattice import Lattice, graphene, srtio3

__all__ = ["LIBRARY", "LatticeEntry", "get_lattice", "library_lattice", "library_names"]

Site = Tuple[float, float]

_HEX = ((1 / 3, 2 / 3), (2 / 3, 1 / 3))  # the two sites of a honeycomb in a 120-degree cell


def _z17(zs: Sequence[int]) -> float:
    """HAADF brightness of a column: the sum of its atoms' Z**1.7 (relative)."""
    return float(sum(z**1.7 for z in zs))


@dataclass(frozen=True)
class LatticeEntry:
    """One material down one zone axis.

    Attributes:
        name: what the report calls it (``"WS2 2H [001]"``).
        lengths_nm: the projected cell's two lengths, nm.
        angle_deg: the angle between them.
        columns: column name -> fractional sites ``(u, v)`` of that kind in the cell.
        atoms: column name -> atomic numbers stacked in one such column (per repeat).
        default: the columns counted when the spec names none.
        merged: optional alternative column set name -> ``(sites, atoms per column)``
            (``"dumbbell"``: one column at each dumbbell's centre, for images that do not
            resolve the pair; ``"bulk"``: a 2H multilayer's mixed columns).
    """

    name: str
    lengths_nm: Tuple[float, float]
    angle_deg: float
    columns: Dict[str, Tuple[Site, ...]]
    atoms: Dict[str, Tuple[int, ...]]
    default: Tuple[str, ...]
    merged: Optional[Dict[str, Tuple[Tuple[Site, ...], Tuple[int, ...]]]] = None

    def build(
        self, columns: Optional[Sequence[str]] = None, a_nm: Optional[float] = None
    ) -> Lattice:
        """The :class:`Lattice` counting ``columns`` (default: :attr:`default`).

        Args:
            columns: column names to count (or one name of :attr:`merged`).
            a_nm: first cell length, nm, instead of the library's (the second scales with
                it, keeping the cell's shape).
        """
        lengths = self.lengths_nm
        if a_nm is not None:
            if not (a_nm > 0 and math.isfinite(a_nm)):
                raise ValueError(f"a_nm must be > 0 nm, got {a_nm!r}")
            lengths = (float(a_nm), lengths[1] * float(a_nm) / lengths[0])
        chosen = list(dict.fromkeys(columns or self.default))
        if self.merged and len(chosen) == 1 and chosen[0] in self.merged:
            sites, zs = self.merged[chosen[0]]
            return Lattice.from_unit_cell(
                f"{self.name} {chosen[0]}",
                lengths,
                self.angle_deg,
                sites,
                (chosen[0],) * len(sites),
                brightness=(_z17(zs),) * len(sites),
            )
        known = list(self.columns) + list(self.merged or {})
        unknown = [c for c in chosen if c not in self.columns]
        if unknown or not chosen:
            raise ValueError(
                f"{self.name}: columns must be chosen from {known}, got {list(columns or [])!r}"
            )
        basis: List[Site] = []
        labels: List[str] = []
        bright: List[float] = []
        for col in chosen:
            for site in self.columns[col]:
                basis.append(site)
                labels.append(col)
                bright.append(_z17(self.atoms[col]))
        return Lattice.from_unit_cell(
            f"{self.name} {'+'.join(chosen)}",
            lengths,
            self.angle_deg,
            basis,
            labels,
            brightness=tuple(bright),
        )


def _tmd(name: str, metal: str, z_metal: int, chalcogen: str, z_x: int, a: float) -> LatticeEntry:
    x2 = chalcogen + "2"
    return LatticeEntry(
        name=f"{name} 2H [001]",
        lengths_nm=(a, a),
        angle_deg=120.0,
        columns={metal: (_HEX[0],), x2: (_HEX[1],)},
        atoms={metal: (z_metal,), x2: (z_x, z_x)},
        default=(metal, x2),
        # several layers, 2H-stacked: each honeycomb site holds a metal atom of one layer
        # and a chalcogen pair of the next, so every column looks alike
        merged={"bulk": (_HEX, (z_metal, z_x, z_x))},
    )


def _fcc(symbol: str, z: int, a: float) -> Dict[str, LatticeEntry]:
    return {
        f"{symbol}[001]": LatticeEntry(
            name=f"{symbol} fcc [001]",
            lengths_nm=(a, a),
            angle_deg=90.0,
            columns={symbol: ((0.0, 0.0), (0.5, 0.5))},
            atoms={symbol: (z,)},
            default=(symbol,),
        ),
        f"{symbol}[110]": LatticeEntry(
            name=f"{symbol} fcc [110]",
            lengths_nm=(a, a / math.sqrt(2)),
            angle_deg=90.0,
            columns={symbol: ((0.0, 0.0), (0.5, 0.5))},
            atoms={symbol: (z,)},
            default=(symbol,),
        ),
    }


def _diamond_110(
    name: str, a: float, first: Tuple[str, int], second: Tuple[str, int]
) -> LatticeEntry:
    # [110] projection, cell a along [001] x a/sqrt(2) along [1-10]: fcc sites at (0, 0) and
    # (1/2, 1/2), their (1/4, 1/4, 1/4) partners at (1/4, 0) and (3/4, 1/2): dumbbells a/4 apart
    (s1, z1), (s2, z2) = first, second
    if s1 == s2:
        columns = {s1: ((0.0, 0.0), (0.5, 0.5), (0.25, 0.0), (0.75, 0.5))}
        atoms = {s1: (z1,)}
        default: Tuple[str, ...] = (s1,)
    else:
        columns = {s1: ((0.0, 0.0), (0.5, 0.5)), s2: ((0.25, 0.0), (0.75, 0.5))}
        atoms = {s1: (z1,), s2: (z2,)}
        default = (s1, s2)
    return LatticeEntry(
        name=f"{name} [110]",
        lengths_nm=(a, a / math.sqrt(2)),
        angle_deg=90.0,
        columns=columns,
        atoms=atoms,
        default=default,
        merged={"dumbbell": (((0.125, 0.0), (0.625, 0.5)), (z1, z2))},
    )


#: spec name (lower case) -> entry
LIBRARY: Dict[str, LatticeEntry] = {
    "graphene": LatticeEntry(
        name="graphene [001]",
        lengths_nm=(0.246, 0.246),
        angle_deg=120.0,
        columns={"C": _HEX},
        atoms={"C": (6,)},
        default=("C",),
    ),
    "hbn": LatticeEntry(
        name="hBN [001]",
        lengths_nm=(0.2504, 0.2504),
        angle_deg=120.0,
        columns={"B": (_HEX[0],), "N": (_HEX[1],)},
        atoms={"B": (5,), "N": (7,)},
        default=("B", "N"),
    ),
    "mos2": _tmd("MoS2", "Mo", 42, "S", 16, 0.3160),
    "ws2": _tmd("WS2", "W", 74, "S", 16, 0.3154),
    "mose2": _tmd("MoSe2", "Mo", 42, "Se", 34, 0.3289),
    "wse2": _tmd("WSe2", "W", 74, "Se", 34, 0.3282),
    "srtio3": LatticeEntry(
        name="SrTiO3[001]",
        lengths_nm=(0.3905, 0.3905),
        angle_deg=90.0,
        columns={"Sr": ((0.0, 0.0),), "TiO": ((0.5, 0.5),), "O": ((0.5, 0.0), (0.0, 0.5))},
        atoms={"Sr": (38,), "TiO": (22, 8), "O": (8,)},
        default=("Sr", "TiO"),
    ),
    # [110]: a rectangle a/sqrt(2) (along [1-10]) x a (along [001]); per cell a SrO column
    # (Sr and O alternate along the beam), a pure Ti column a/2 above it and an O column (two
    # O per repeat) beside the Ti. ABF shows all three, HAADF the SrO and Ti columns
    "srtio3[110]": LatticeEntry(
        name="SrTiO3[110]",
        lengths_nm=(0.3905 / math.sqrt(2), 0.3905),
        angle_deg=90.0,
        columns={"SrO": ((0.0, 0.0),), "Ti": ((0.0, 0.5),), "O2": ((0.5, 0.5),)},
        atoms={"SrO": (38, 8), "Ti": (22,), "O2": (8, 8)},
        default=("SrO", "Ti"),
    ),
    "si[110]": _diamond_110("Si", 0.5431, ("Si", 14), ("Si", 14)),
    "gaas[110]": _diamond_110("GaAs", 0.5653, ("Ga", 31), ("As", 33)),
}
for _symbol, _z, _a in (
    ("Au", 79, 0.4078),
    ("Ag", 47, 0.4086),
    ("Cu", 29, 0.3615),
    ("Pt", 78, 0.3924),
    ("Pd", 46, 0.3891),
    ("Ni", 28, 0.3524),
    ("Al", 13, 0.4050),
):
    LIBRARY.update({k.lower(): v for k, v in _fcc(_symbol, _z, _a).items()})
#: other names users type
_ALIASES = {"sto": "srtio3", "h-bn": "hbn", "bn": "hbn"}


def library_names() -> List[str]:
    """The specs the library knows (column choices aside)."""
    return sorted(LIBRARY)


def library_lattice(spec: str, a_nm: Optional[float] = None) -> Lattice:
    """A lattice from a spec ``name[:column,column...]`` (see the module docstring).

    Raises:
        ValueError: unknown name (the known ones listed) or columns.

    Example:
        >>> library_lattice("WS2").labels, round(library_lattice("WS2").nn_distance_nm, 4)
        (('W', 'S2'), 0.1821)
        >>> round(library_lattice("WS2:W").nn_distance_nm, 4)
        0.3154
        >>> round(library_lattice("Si[110]").nn_distance_nm, 4)
        0.1358
    """
    name, _, cols = str(spec).partition(":")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    try:
        entry = LIBRARY[key]
    except KeyError:
        raise ValueError(
            f"unknown lattice {spec!r}; the library knows {', '.join(library_names())} "
            "(a spec may add columns, e.g. 'WS2:W', 'SrTiO3:Sr,TiO,O', 'Si[110]:dumbbell'), "
            "or give a Lattice"
        ) from None
    columns = [c.strip() for c in cols.split(",") if c.strip()] if cols else None
    return entry.build(columns, a_nm=a_nm)


def get_lattice(spec: Any) -> Lattice:
    """A lattice from a library spec (``"graphene"``, ``"SrTiO3:Sr,TiO,O"``, ``"WS2:W"``,
    ``"Si[110]"``, ``"Au[110]"``... see the module docstring), a :class:`Lattice`, or a
    dict as written by :meth:`Lattice.as_dict`.

    Example:
        >>> get_lattice("SrTiO3:Sr").labels
        ('Sr',)
    """
    if isinstance(spec, Lattice):
        return spec
    if isinstance(spec, dict):
        return Lattice.from_dict(spec)
    if isinstance(spec, str):
        name, _, cols = spec.partition(":")
        key = _ALIASES.get(name.strip().lower(), name.strip().lower())
        # graphene and SrTiO3 keep the names runs recorded before the library existed
        if key == "graphene" and not cols:
            return graphene()
        if key == "srtio3":
            columns = [c.strip() for c in cols.split(",") if c.strip()] if cols else ("Sr", "TiO")
            return srtio3(columns)
        return library_lattice(spec)
    raise ValueError(f"cannot make a lattice from {spec!r}")
