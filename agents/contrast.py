"""Bright or dark atomic columns: which way round a survey image shows them.

The atom finders (LoG*, the U-Net ensemble) look for *bright* columns, as a high-angle
annular dark-field (HAADF, ADF) image shows them. Annular bright-field (ABF) and bright-field
(BF) images show the same columns *dark* on a bright background. Given one of those, an
atom finder finds the gaps between the columns, or nothing. So each atom finder takes a
``contrast``:

* ``"bright"``: columns bright (HAADF, MAADF, LAADF, ADF, DF): the image as it is;
* ``"dark"``: columns dark (ABF, BF): the image is inverted before the atoms are looked for
  (positions do not change);
* ``"auto"`` (default): from the survey detector's name when the caller knows it
  (:func:`detector_contrast`), otherwise from the image itself (:func:`column_skewness`);
  an image that does not say keeps ``"bright"`` and the decision says so.

**The image's own say** is the *quantile skewness* of the image band-passed at the scale of
its columns: a difference of Gaussians (a tenth and a half of the column spacing) keeps the
columns and drops what is larger (thickness, holes, vacuum, scan gradients); clipping the
0.5 % extremes first keeps hot pixels from spreading through the smoothing (a 3 x 3 median
would too, but turns the integer counts of a low-dose image into a skewness of its own).
Columns that are compact peaks on a flat background give a long upper tail, compact dips a
long lower one. Skewness is read from the 5th, 50th and 95th percentiles,
``(p95 + p5 - 2 p50) / (p95 - p5)`` (-1..1), so a few extreme pixels cannot decide it (the
plain moment skewness of a real HAADF image went from +0.8 to +27 with 0.1 % hot pixels).
With the spacing known (LoG*: the lattice and the pixel size) it is read there; without
(the ensemble) the median over the spacings the atom finders work at, 6-24 px.
Below :data:`AMBIGUOUS` in size the image does not say. Measured (``benchmarks/contrast.py``):
the real HAADF graphene ``G-Si-2nm`` +0.10, the real ABF perovskite -0.26, twin HAADF
+0.17..+0.84 and twin ABF/BF -0.11..-0.77 wherever the columns are resolved and visible,
with hot pixels, thickness gradients or vacuum in the field too (the moment skewness was
wrong on 58 of those 208 cases, this never); a honeycomb blurred past resolution (twin
graphene, 0.2 nm probe) and twin ABF/BF at noise 0.8 do not say or say wrong: there the
detector's name, or ``contrast=``, must.

Numpy and SciPy only (the agents layer); cheap: 26 ms for a 512² image at one spacing,
81 ms over 6-24 px.

Example:
    >>> decision = decide_contrast("auto", image, detector="ABF")        # doctest: +SKIP
    >>> decision.contrast, decision.source, decision.why                  # doctest: +SKIP
    ('dark', 'detector', "detector 'ABF': annular bright field shows the columns dark")
    >>> oriented = orient(image, decision.contrast)                       # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "AMBIGUOUS",
    "CONTRASTS",
    "ContrastDecision",
    "check_contrast",
    "column_skewness",
    "decide_contrast",
    "detector_contrast",
    "orient",
    "update_decision",
]

#: what ``contrast=`` accepts
CONTRASTS = ("auto", "bright", "dark")
#: an image whose column skewness is smaller than this in size does not say (kept bright)
AMBIGUOUS = 0.05
#: column spacings (px) tried when the spacing is not known: where the atom finders work
#: (the ensemble's training images put the nearest columns 5-24 px apart)
SPACINGS_PX = (6.0, 8.5, 12.0, 17.0, 24.0)

# detector names, compared upper-case without spaces, dashes or underscores
_DARK_NAMES = {
    "ANNULARBRIGHTFIELD": "annular bright field shows the columns dark",
    "ABF": "annular bright field shows the columns dark",
    "BRIGHTFIELD": "bright field shows the columns dark",
    "BF": "bright field shows the columns dark",
}
_BRIGHT_NAMES = {
    "ANNULARDARKFIELD": "annular dark field shows the columns bright",
    "ADF": "annular dark field shows the columns bright",  # also HAADF, MAADF, LAADF
    "DARKFIELD": "dark field shows the columns bright",
    "DF": "dark field shows the columns bright",
}


def check_contrast(contrast: Any) -> str:
    """``contrast`` if it is one of :data:`CONTRASTS`.

    Raises:
        ValueError: anything else (the choices listed).
    """
    if not isinstance(contrast, str) or contrast.strip().lower() not in CONTRASTS:
        raise ValueError(
            f"contrast must be one of {CONTRASTS} (bright: HAADF/ADF columns; dark: ABF/BF "
            f"columns, inverted first; auto: from the detector or the image), got {contrast!r}"
        )
    return contrast.strip().lower()


def detector_contrast(detector: Optional[str]) -> Optional[tuple]:
    """``(contrast, why)`` from a survey detector's name, or None when the name does not say.

    ABF, BF, "bright field" -> dark; HAADF, MAADF, LAADF, ADF, DF, "dark field" -> bright
    (a number after the name, "BF2", "DF4", is the detector's index). Others (SE, iDPC, a
    file's title...) do not say.

    Example:
        >>> detector_contrast("HAADF")[0], detector_contrast("ABF")[0], detector_contrast("SE")
        ('bright', 'dark', None)
    """
    if not detector:
        return None
    name = re.sub(r"[\s_\-]+", "", str(detector)).upper()
    for names, contrast in ((_DARK_NAMES, "dark"), (_BRIGHT_NAMES, "bright")):
        for key, why in names.items():
            # long names anywhere in the name (HAADF holds ADF); BF and DF alone or numbered
            if (key in name) if len(key) > 2 else re.fullmatch(rf"{key}\d*", name):
                return contrast, why
    return None


def column_skewness(image: Any, spacing_px: Optional[float] = None) -> float:
    """How the image's columns stand out: > 0 bright peaks, < 0 dark dips (-1..1).

    The quantile skewness ``(p95 + p5 - 2 p50) / (p95 - p5)`` of the image band-passed at the
    column scale (see the module docstring): the 0.5 % extremes clipped, then Gaussians of a
    tenth and a half of ``spacing_px`` subtracted.

    Args:
        image: the survey image (2-D; any real dtype, any scale).
        spacing_px: the nearest-neighbour column spacing, px; None: the median over
            :data:`SPACINGS_PX` (those that fit the image).

    Returns:
        The skewness; 0.0 for a flat image or one too small to judge (under 16 px a side).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"a survey image must be 2-D, got shape {img.shape}")
    if min(img.shape) < 16:
        return 0.0
    finite = np.isfinite(img)
    if not finite.all():  # a few undefined pixels: the median of the rest
        img = np.where(finite, img, np.median(img[finite]) if finite.any() else 0.0)
    # hot or dead pixels, cosmic rays: the 0.5 % extremes clipped (as LoG* scales images),
    # so a few cannot spread through the smoothing and decide the tails
    img = np.clip(img, *np.percentile(img, [0.5, 99.5]))
    if spacing_px is not None:
        if not (np.isfinite(spacing_px) and spacing_px > 0):
            raise ValueError(f"spacing_px must be > 0 px, got {spacing_px!r}")
        spacings: Sequence[float] = [float(spacing_px)]
    else:
        spacings = [d for d in SPACINGS_PX if d <= min(img.shape) / 2] or [SPACINGS_PX[0]]
    values = [_band_skewness(img, d) for d in spacings]
    return float(np.median(values))


def _band_skewness(img: np.ndarray, spacing: float) -> float:
    fine = ndimage.gaussian_filter(img, max(0.7, 0.1 * spacing), mode="reflect")
    band = fine - ndimage.gaussian_filter(img, 0.5 * spacing, mode="reflect")
    lo, mid, hi = np.percentile(band, [5.0, 50.0, 95.0])
    if not hi > lo:
        return 0.0
    return float((hi + lo - 2.0 * mid) / (hi - lo))


@dataclass(frozen=True)
class ContrastDecision:
    """Which way round an atom finder takes a survey image, and why.

    Attributes:
        asked: what the agent was asked (``"auto"``, ``"bright"``, ``"dark"``).
        contrast: what it decided: ``"bright"`` (as it is) or ``"dark"`` (inverted first).
        source: ``"asked"`` (bright/dark given), ``"detector"`` (the detector's name),
            ``"image"`` (the column skewness) or ``"ambiguous"`` (neither said: bright kept).
        why: one sentence for the report and the run summary.
        detector: the survey detector's name, when the caller gave it.
        skewness: the image's column skewness (None when not measured: contrast asked).
        spacing_px: the column spacing it was read at (None: the median over 6-24 px).
        warning: the detector's name and the image disagree (None when they do not).
    """

    asked: str
    contrast: str
    source: str
    why: str
    detector: Optional[str] = None
    skewness: Optional[float] = None
    spacing_px: Optional[float] = None
    warning: Optional[str] = None

    @property
    def inverted(self) -> bool:
        """Whether the image is inverted before the atoms are looked for."""
        return self.contrast == "dark"

    def as_dict(self) -> Dict[str, Any]:
        """JSON-able, for the agent's report."""
        return {
            "asked": self.asked,
            "contrast": self.contrast,
            "source": self.source,
            "why": self.why,
            "detector": self.detector,
            "skewness": None if self.skewness is None else round(float(self.skewness), 4),
            "spacing_px": None if self.spacing_px is None else round(float(self.spacing_px), 3),
            "warning": self.warning,
        }


def decide_contrast(
    asked: str = "auto",
    image: Any = None,
    detector: Optional[str] = None,
    spacing_px: Optional[float] = None,
) -> ContrastDecision:
    """Decide whether an atom finder takes the image as it is (bright columns) or inverted.

    Args:
        asked: ``"bright"`` or ``"dark"`` (kept as given), or ``"auto"``.
        image: the survey image (needed by ``"auto"`` when the detector does not say).
        detector: the survey detector's name (``"HAADF"``, ``"ABF"``...), when known.
        spacing_px: the column spacing, px, when known (LoG*: the lattice's).

    Under ``"auto"`` the detector's name decides when it says; the image is measured
    anyway, and a clear disagreement (a recording whose detector is not named is served as
    "HAADF") is put in :attr:`ContrastDecision.warning`.

    Raises:
        ValueError: a bad ``asked``, or ``"auto"`` with neither a telling detector nor an
            image.
    """
    asked = check_contrast(asked)
    if asked != "auto":
        return ContrastDecision(asked, asked, "asked", f"asked for {asked} columns", detector)
    named = detector_contrast(detector)
    skew = None
    if image is not None:
        skew = column_skewness(image, spacing_px)
    elif named is None:
        raise ValueError("contrast 'auto' needs the survey image or a detector name that says")
    said = None if skew is None or abs(skew) < AMBIGUOUS else ("bright" if skew > 0 else "dark")
    if named is not None:
        contrast, because = named
        warning = None
        if said is not None and said != contrast and abs(skew) >= 2 * AMBIGUOUS:
            warning = (
                f"the image shows {said} columns (column skewness {skew:+.2f}) though its "
                f"detector is called {detector!r}: if the detector is misnamed, give "
                f"contrast='{said}'"
            )
        return ContrastDecision(
            "auto",
            contrast,
            "detector",
            f"detector {detector!r}: {because}",
            detector,
            skew,
            spacing_px,
            warning,
        )
    where = f"at {spacing_px:.1f} px" if spacing_px is not None else "over 6-24 px"
    unnamed = f"detector {detector!r} does not say" if detector else "no detector name"
    if said is None:
        return ContrastDecision(
            "auto",
            "bright",
            "ambiguous",
            f"{unnamed} and the image does not (column skewness {skew:+.2f} {where}, "
            f"under {AMBIGUOUS}): kept bright; give contrast='dark' for an ABF/BF image",
            detector,
            skew,
            spacing_px,
        )
    return ContrastDecision(
        "auto",
        said,
        "image",
        f"{unnamed}; the image shows {said} columns (column skewness {skew:+.2f} {where})",
        detector,
        skew,
        spacing_px,
    )


def update_decision(
    current: Optional[ContrastDecision],
    asked: str,
    image: Any = None,
    detector: Optional[str] = None,
    spacing_px: Optional[float] = None,
) -> ContrastDecision:
    """The decision for an agent's next image: ``current`` kept when there is one and no
    other detector is named (the images of a series share their detector: a noisy frame
    must not flip it), else :func:`decide_contrast` anew."""
    if current is not None and (detector is None or detector == current.detector):
        return current
    return decide_contrast(asked, image, detector, spacing_px)


def orient(image: Any, contrast: str) -> Any:
    """The image as the atom finders want it: as it is for ``"bright"`` (the very object),
    negated for ``"dark"`` (float images keep their dtype, others become float64): the
    finders rescale each image to its own range, so the dips of an ABF image become peaks
    where they were."""
    if contrast not in ("bright", "dark"):
        raise ValueError(f"orient takes a decided contrast, 'bright' or 'dark', got {contrast!r}")
    if contrast == "bright":
        return image
    arr = np.asarray(image)
    return -arr if arr.dtype.kind == "f" else -arr.astype(np.float64)
