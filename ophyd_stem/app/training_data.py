"""Training images for the atom-finding ensemble, made by the digital twin.

Networks trained on one microscope's images fail on another's: a new sampling (pixels per
atom), dose, probe size or orientation is enough (the "out-of-distribution shifts" of the
papers). The twin has the truth for every image it makes, so it can produce labelled images
across the whole spread of those conditions; :func:`make_training_set` does exactly that,
in-process (no bridge server), and returns plain arrays for
:func:`agents.ensemble.train_ensemble`.

Each image comes from a fresh twin with its own seed (so its own defects, dopants and
noise), and with settings drawn at random from the given ranges:

* ``noise_levels``: the twin's HAADF image quality, 0 (clean) to 0.9 (about 7 electrons at
  an atom), i.e. the dose;
* ``pixel_sizes``: nm per pixel, drawn log-uniformly (the sampling: how many pixels apart
  the atoms are);
* ``rotations``: scan rotation in degrees, plus a random in-plane lattice orientation;
* ``probe_sizes``: probe FWHM in nm (resolution);
* ``drift``: let the specimen drift between frames (each image is then taken after a
  random number of earlier frames, so the field has moved);
* ``sample_parameters``: ranges of the twin's sample parameters, by default graphene's
  amorphous contamination layer (0.3-4 nm: from clean lattice to the faint contrast of the
  real ``G-Si-2nm`` image) and SrTiO3's thickness.

Atoms whose centres lie up to ``margin`` pixels outside an image are included (negative
or beyond-the-edge coordinates): their partial discs are visible, and a network taught that
half an atom is background learns the wrong lesson at every image edge.

Atom positions are returned as ``(row, col)`` pixels of their image: the atoms a
microscopist would mark. In SrTiO3 [001] those are the Sr and Ti-O columns; the pure O
columns are invisible in HAADF (about 7 % of a Sr column) and are left out by default.

Example:
    >>> from ophyd_stem.app.training_data import make_training_set
    >>> images, atoms = make_training_set(n_images=2, size=64, seed=1)
    >>> images.shape, images.dtype        # the ensemble trains on 160 images of 128 px
    ((2, 64, 64), dtype('float32'))
    >>> atoms[0].shape[1]                 # each image's atoms: (row, col), px
    2
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Optional, Tuple, Union

import numpy as np

__all__ = [
    "DEFAULT_PIXEL_SIZES",
    "DEFAULT_SAMPLE_PARAMETERS",
    "VISIBLE_SPECIES",
    "ImageInfo",
    "make_training_set",
    "twin_image",
]

#: sample names the twin knows, as the user may spell them -> the twin's names
_SAMPLES = {"graphene": "graphene", "srtio3": "srtio3", "sto": "srtio3"}

#: nm per pixel drawn for each sample by default: nearest atoms ~5-24 pixels apart
#: (graphene C-C 0.142 nm; SrTiO3 Sr to Ti-O column 0.276 nm)
DEFAULT_PIXEL_SIZES = {"graphene": (0.006, 0.028), "srtio3": (0.012, 0.05)}

#: twin sample parameters drawn per image (ranges log-uniform: they span decades)
DEFAULT_SAMPLE_PARAMETERS = {
    "graphene": {"contamination": (0.3, 4.0)},
    "srtio3": {"thickness": (4.0, 30.0)},
}

#: species that count as atoms to find (None: all)
VISIBLE_SPECIES = {"graphene": None, "srtio3": ("Sr", "TiO")}

Range = Union[float, Tuple[float, float], Sequence[float]]

#: the twin computes an EELS target map for truth unless its band is outside the spectrum;
#: atom finding needs no EELS, so the band is put far out of reach
_NO_TARGET_BAND = (1.0e6, 1.0e6 + 1.0)


@dataclass(frozen=True)
class ImageInfo:
    """How one training image was made (for the ensemble's metadata and for benchmarks)."""

    sample: str
    seed: int
    noise_level: float
    pixel_size: float
    rotation: float
    lattice_rotation: float
    probe_fwhm: float
    drift_frames: int
    sample_parameters: dict
    atoms: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sample_name(name: str) -> str:
    try:
        return _SAMPLES[str(name).lower()]
    except KeyError:
        raise ValueError(
            f"unknown sample {name!r}: the twin's atomic samples are 'graphene' and 'SrTiO3'"
        ) from None


def _draw(rng: np.random.Generator, spec: Range, name: str, log: bool = False) -> float:
    """One value from a fixed number, a ``(low, high)`` range, or a list of choices."""
    if isinstance(spec, (int, float)):
        return float(spec)
    values = [float(v) for v in spec]
    if isinstance(spec, tuple) and len(values) == 2:
        lo, hi = values
        if not lo <= hi:
            raise ValueError(f"{name} range must be (low, high) with low <= high, got {spec}")
        if log and lo > 0:
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        return float(rng.uniform(lo, hi))
    if not values:
        raise ValueError(f"{name} must not be empty")
    return float(values[int(rng.integers(len(values)))])


def twin_image(
    sample: str,
    *,
    size: int = 256,
    noise_level: float = 0.0,
    pixel_size: float | None = None,
    rotation: float = 0.0,
    lattice_rotation: float | None = None,
    probe_fwhm: float = 0.09,
    drift_frames: int = 0,
    seed: int = 0,
    species: Optional[Sequence[str]] = None,
    sample_parameters: Optional[Mapping[str, Any]] = None,
    margin: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One HAADF image from the twin with its true atoms.

    Args:
        sample: ``"graphene"`` or ``"SrTiO3"``.
        size: image side, pixels.
        noise_level: the twin's noise level in [0, 1].
        pixel_size: nm per pixel (default: the sample's default field over ``size``).
        rotation: scan rotation, degrees.
        lattice_rotation: in-plane orientation of the crystal, degrees (default: the
            sample's own).
        probe_fwhm: probe diameter, nm.
        drift_frames: frames scanned (and thrown away) before this one, with drift on.
        seed: the twin's seed (sample, defects and noise).
        species: species names that count as atoms (default :data:`VISIBLE_SPECIES`).
        sample_parameters: more twin sample parameters (e.g. graphene's ``contamination``).
        margin: also return atoms whose centres lie up to this many pixels outside the
            image (the twin scans a larger field and the image is cut from its middle).

    Returns:
        ``(image (size, size) float32, atoms (N, 2) as (row, col), species codes (N,))``.

    Example:
        >>> image, atoms, species = twin_image("graphene", size=64, noise_level=0.3, seed=4)
        >>> image.shape, atoms.shape          # atoms up to the margin outside the image
        ((64, 64), (153, 2))
    """
    # imported here: the twin needs scipy and scikit-image, loaded only when images are made
    from dm_bridge.backends.twin import TwinBackend

    name = _sample_name(sample)
    if int(size) < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    if not 0.0 <= noise_level <= 1.0:
        raise ValueError(f"noise_level must be in [0, 1], got {noise_level}")
    if pixel_size is not None and not pixel_size > 0:
        raise ValueError(f"pixel_size must be > 0 nm, got {pixel_size}")
    if int(margin) < 0:
        raise ValueError(f"margin must be >= 0 pixels, got {margin}")
    size, margin = int(size), int(margin)
    default_fov = {"graphene": 2.0, "srtio3": 4.0}[name]
    pixel = float(pixel_size) if pixel_size is not None else default_fov / size
    full = size + 2 * margin
    fov = pixel * full
    params: dict[str, Any] = dict(sample_parameters or {})
    params["size"] = fov * math.sqrt(2.0) + 2.0  # the field stays inside at any rotation
    if lattice_rotation is not None:
        params["lattice_rotation"] = float(lattice_rotation)
    twin = TwinBackend(
        name,
        seed=int(seed),
        sample_parameters=params,
        noise_level=float(noise_level),
        probe_fwhm=float(probe_fwhm),
        drift=drift_frames > 0,
        target_band=_NO_TARGET_BAND,
    )
    twin.set_scan_parameters(
        width=full, height=full, field_of_view=fov, rotation=float(rotation) % 360.0
    )
    for _ in range(int(drift_frames)):
        twin.acquire_image()
    image = np.asarray(twin.acquire_image().images["HAADF"], dtype=np.float32)
    image = image[margin : margin + size, margin : margin + size].copy()
    atoms = twin.get_truth()["atoms"]
    keep = np.ones(len(atoms["xy_px"]), dtype=bool)
    wanted = VISIBLE_SPECIES[name] if species is None else tuple(species)
    if wanted is not None:
        names = list(atoms["species_names"])
        unknown = set(wanted) - set(names)
        if unknown:
            raise ValueError(f"{name} has species {names}, not {sorted(unknown)}")
        codes = [names.index(s) for s in wanted]
        keep = np.isin(atoms["species"], codes)
    rc = np.asarray(atoms["xy_px"], dtype=np.float64)[keep][:, ::-1] - margin
    codes = np.asarray(atoms["species"])[keep]
    if margin:  # the scanned field is larger: keep the atoms up to `margin` outside the image
        inside = np.all((rc >= -margin - 0.5) & (rc <= size - 0.5 + margin), axis=1)
        rc, codes = rc[inside], codes[inside]
    return image, rc, codes


def make_training_set(
    samples: Sequence[str] = ("graphene", "SrTiO3"),
    n_images: int = 64,
    size: int = 128,
    *,
    noise_levels: Range = (0.0, 0.9),
    pixel_sizes: Union[Range, Mapping[str, Range], None] = None,
    rotations: Range = (0.0, 360.0),
    probe_sizes: Range = (0.07, 0.14),
    drift: bool = False,
    sample_parameters: Optional[Mapping[str, Mapping[str, Range]]] = None,
    margin: int = 8,
    seed: int = 0,
    return_info: bool = False,
    progress: bool = False,
) -> Any:
    """Labelled twin images across doses, sampling, orientation, probe size and drift.

    Args:
        samples: twin samples to draw from, in turn (``"graphene"``, ``"SrTiO3"``).
        n_images: number of images.
        size: image side, pixels.
        noise_levels: the twin's noise level: a value, a ``(low, high)`` range (uniform) or
            a list of values to choose from.
        pixel_sizes: nm per pixel, the same forms (ranges drawn log-uniformly); a mapping
            gives one per sample; default :data:`DEFAULT_PIXEL_SIZES`.
        rotations: scan rotation in degrees, the same forms.
        probe_sizes: probe FWHM in nm, the same forms.
        drift: specimen drift on; each image is taken after 0-3 discarded frames.
        sample_parameters: per sample, twin sample parameters and their values or ranges
            (ranges drawn log-uniformly); default :data:`DEFAULT_SAMPLE_PARAMETERS`.
        margin: include atoms up to this many pixels outside each image (see above).
        seed: seeds everything; image ``i`` uses twin seed ``seed * 100003 + i``.
        return_info: also return one :class:`ImageInfo` per image.
        progress: count the images on stderr as they are made (a bar: 160 images take
            15-20 s on a busy 2-core machine).

    Returns:
        ``(images (n_images, size, size) float32, atoms)`` where ``atoms[i]`` is the
        ``(N_i, 2)`` float64 array of ``(row, col)`` positions in image ``i``; with
        ``return_info``, ``(images, atoms, infos)``.

    Raises:
        ValueError: an unknown sample or a bad range.

    Example:
        >>> images, atoms = make_training_set(("graphene",), n_images=2, size=64,
        ...                                   noise_levels=0.2)
        >>> images.shape, len(atoms)
        ((2, 64, 64), 2)
    """
    names = [_sample_name(s) for s in samples]
    if not names:
        raise ValueError("give at least one sample")
    if int(n_images) < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    per_sample = {
        _sample_name(k): dict(v)
        for k, v in (
            DEFAULT_SAMPLE_PARAMETERS if sample_parameters is None else sample_parameters
        ).items()
    }
    rng = np.random.default_rng(seed)
    images = np.empty((int(n_images), int(size), int(size)), dtype=np.float32)
    atoms: list[np.ndarray] = []
    infos: list[ImageInfo] = []
    from tqdm import tqdm

    for i in tqdm(
        range(int(n_images)),
        desc="twin images",
        unit="img",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    ):
        name = names[i % len(names)]
        if pixel_sizes is None:
            ps_spec: Range = DEFAULT_PIXEL_SIZES[name]
        elif isinstance(pixel_sizes, Mapping):
            ps_spec = {_sample_name(k): v for k, v in pixel_sizes.items()}[name]
        else:
            ps_spec = pixel_sizes
        info = dict(
            sample=name,
            seed=int(seed) * 100003 + i,
            noise_level=_draw(rng, noise_levels, "noise_levels"),
            pixel_size=_draw(rng, ps_spec, "pixel_sizes", log=True),
            rotation=_draw(rng, rotations, "rotations"),
            lattice_rotation=float(rng.uniform(0.0, 360.0)),
            probe_fwhm=_draw(rng, probe_sizes, "probe_sizes"),
            drift_frames=int(rng.integers(0, 4)) if drift else 0,
            sample_parameters={
                key: _draw(rng, spec, f"{name} {key}", log=True)
                for key, spec in per_sample.get(name, {}).items()
            },
        )
        image, pos, _ = twin_image(size=int(size), margin=margin, **info)
        images[i] = image
        atoms.append(pos)
        infos.append(ImageInfo(**info, atoms=len(pos)))
    if return_info:
        return images, atoms, infos
    return images, atoms
