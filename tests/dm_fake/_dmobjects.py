"""DM's data objects in the fake ``DigitalMicrograph`` module: tag groups and images.

What DM hands back and a script reads: :class:`Py_TagGroup` (nested labels, paths joined
with ``:``, ``GetTagAs*`` answering ``(found, value)``) and :class:`Py_Image` (numpy data as a
view, tags, per-dimension calibration with µm coming back as ``bytes``). The module
``DigitalMicrograph`` (the fake) re-exports them; the simulated instrument that fills them is
there and in :mod:`_dminstrument`. Not part of DM: this module's name.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

# ---------------------------------------------------------------------------- tag groups


class Py_TagGroup:
    """DM tag group: nested labels, paths joined with ``:``."""

    def __init__(self) -> None:
        self._tags: Dict[str, Any] = {}

    def _walk(self, path: str, create: bool = False) -> Tuple[Optional[Py_TagGroup], str]:
        parts = path.split(":")
        group: Optional[Py_TagGroup] = self
        for part in parts[:-1]:
            child = group._tags.get(part)
            if not isinstance(child, Py_TagGroup):
                if not create:
                    return None, parts[-1]
                child = group._tags[part] = Py_TagGroup()
            group = child
        return group, parts[-1]

    def _get(self, path: str) -> Tuple[bool, Any]:
        group, label = self._walk(path)
        if group is None or label not in group._tags:
            return False, None
        return True, group._tags[label]

    def _set(self, path: str, value: Any) -> None:
        group, label = self._walk(path, create=True)
        group._tags[label] = value

    def GetTagAsFloat(self, path: str) -> Tuple[bool, float]:
        found, value = self._get(path)
        if not found or isinstance(value, (str, Py_TagGroup)):
            return False, 0.0
        return True, float(value)

    GetTagAsDouble = GetTagAsFloat

    def GetTagAsLong(self, path: str) -> Tuple[bool, int]:
        found, value = self._get(path)
        if not found or isinstance(value, (str, Py_TagGroup)):
            return False, 0
        return True, int(value)

    def GetTagAsBoolean(self, path: str) -> Tuple[bool, bool]:
        found, value = self._get(path)
        if not found or isinstance(value, (str, Py_TagGroup)):
            return False, False
        return True, bool(value)

    def GetTagAsString(self, path: str) -> Tuple[bool, str]:
        found, value = self._get(path)
        if not found or isinstance(value, Py_TagGroup):
            return False, ""
        return True, str(value)

    def GetTagAsTagGroup(self, path: str) -> Tuple[bool, Optional[Py_TagGroup]]:
        found, value = self._get(path)
        return (True, value) if found and isinstance(value, Py_TagGroup) else (False, None)

    def SetTagAsFloat(self, path: str, value: float) -> None:
        self._set(path, float(value))

    SetTagAsDouble = SetTagAsFloat

    def SetTagAsLong(self, path: str, value: int) -> None:
        self._set(path, int(value))

    SetTagAsShort = SetTagAsLong

    def SetTagAsBoolean(self, path: str, value: bool) -> None:
        self._set(path, bool(value))

    def SetTagAsString(self, path: str, value: str) -> None:
        self._set(path, str(value))

    def SetTagAsTagGroup(self, path: str, value: Py_TagGroup) -> None:
        self._set(path, value)

    def DoesTagExist(self, path: str) -> bool:
        return self._get(path)[0]

    def DeleteTagWithLabel(self, label: str) -> None:
        self._tags.pop(label, None)

    def IsList(self) -> bool:
        return False

    def CountTags(self) -> int:
        return len(self._tags)

    def paths(self, prefix: str = "") -> List[str]:
        """All leaf paths (test helper, not DM API)."""
        out = []
        for label, value in self._tags.items():
            if isinstance(value, Py_TagGroup):
                out += value.paths(prefix + label + ":")
            else:
                out.append(prefix + label)
        return out


def NewTagGroup() -> Py_TagGroup:
    return Py_TagGroup()


# ---------------------------------------------------------------------------- images


class Py_Image:
    """DM image: numpy data (rows, columns), tags, per-dimension calibration.

    It belongs to the DM session that made it (``session``: the fake's ``_instrument``, with
    ``image_ids``, ``images`` and ``front``), which gives it its ID and lists it, as DM's
    image list does. Scripts never make one directly: ``CreateImage`` and acquisitions do.
    """

    def __init__(self, data: np.ndarray, session: Any, name: str = "") -> None:
        self._data = data
        self._tags = Py_TagGroup()
        self._calibration = [[0.0, 1.0, ""] for _ in range(data.ndim)]
        self._session = session
        self._id = next(session.image_ids)
        self._name = name
        self.shown = False
        session.images[self._id] = self

    def GetNumArray(self) -> np.ndarray:
        return self._data  # a view: like DM, writes go to the image

    def GetTagGroup(self) -> Py_TagGroup:
        return self._tags

    def GetID(self) -> int:
        return self._id

    def GetName(self) -> str:
        return self._name

    def SetName(self, name: str) -> None:
        self._name = str(name)

    def ShowImage(self) -> None:
        self.shown = True
        self._session.front = self

    def _dim(self, dim: int) -> List[Any]:
        # DM's dimension 0 is x (columns): numpy's last axis
        if not 0 <= dim < len(self._calibration):
            raise RuntimeError(
                f"Dimension {dim} out of range for a {len(self._calibration)}-D image"
            )
        return self._calibration[dim]

    def GetDimensionCalibration(self, dim: int, calibration_flags: int) -> Tuple[float, float, Any]:
        origin, scale, units = self._dim(dim)
        return origin, scale, (b"\xb5m" if units == "µm" else units)

    def SetDimensionCalibration(
        self, dim: int, origin: float, scale: float, units: str, calibration_flags: int
    ) -> None:
        self._dim(dim)[:] = [float(origin), float(scale), str(units)]

    def GetDimensionScale(self, dim: int) -> float:
        return self._dim(dim)[1]

    def GetDimensionOrigin(self, dim: int) -> float:
        return self._dim(dim)[0]

    def GetDimensionUnitString(self, dim: int) -> str:
        return self._dim(dim)[2]
