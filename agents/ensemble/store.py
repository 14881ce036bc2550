"""Saving and loading ensembles: weights plus a small JSON file saying what they are.

An ensemble lives in a folder::

    <folder>/metadata.json   what it was trained on, settings, seeds, metrics, versions, date
    <folder>/weights.pt      the members' state dicts (torch.save; loaded with weights_only)

It is found by *path* or by *name*: a name is looked up in the cache folder
``~/.cache/ophyd-stem/ensembles/<name>/``; the environment variable ``OPHYD_STEM_CACHE``
replaces ``~/.cache/ophyd-stem``. Weights are not shipped with the package (they would be
a large file in the repository and a microscope differs from anyone's training set anyway);
``ophyd-stem train-ensemble`` trains and saves the default one on first use.

Saving writes into a temporary folder next to the target and renames it into place, so an
interrupted save never leaves a half-written ensemble, nor destroys the one it replaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

from .members import Ensemble
from .unet import UNet, UNetConfig

__all__ = [
    "CACHE_ENV",
    "EnsembleNotFoundError",
    "cache_dir",
    "ensemble_path",
    "list_ensembles",
    "load_ensemble",
    "save_ensemble",
]

#: environment variable that replaces the cache root ``~/.cache/ophyd-stem``
CACHE_ENV = "OPHYD_STEM_CACHE"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "weights.pt"
#: the default ensemble's name (what ``ophyd-stem run dcnn`` loads)
DEFAULT_NAME = "default"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

PathLike = Union[str, "os.PathLike[str]"]


class EnsembleNotFoundError(FileNotFoundError):
    """No saved ensemble under that name or path; the message says how to train one."""


def cache_dir() -> Path:
    """The folder where named ensembles live: ``$OPHYD_STEM_CACHE/ensembles`` or
    ``~/.cache/ophyd-stem/ensembles``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "ophyd-stem"
    return base / "ensembles"


def _is_name(name_or_path: PathLike) -> bool:
    if isinstance(name_or_path, os.PathLike):
        return False
    s = str(name_or_path)
    return bool(_NAME.match(s)) and s not in (".", "..")


def ensemble_path(name_or_path: PathLike) -> Path:
    """The folder of an ensemble: ``cache_dir() / name`` for a plain name, else the path.

    A plain name is letters, digits, ``_``, ``.`` and ``-`` (no slashes); anything else, or
    a ``pathlib.Path``, is taken as a path.

    Raises:
        ValueError: an empty name.
    """
    if isinstance(name_or_path, str) and not name_or_path.strip():
        raise ValueError("an ensemble name or path must not be empty")
    if _is_name(name_or_path):
        return cache_dir() / str(name_or_path)
    return Path(name_or_path).expanduser()


def _not_found(name_or_path: PathLike, folder: Path) -> EnsembleNotFoundError:
    if _is_name(name_or_path):
        name = str(name_or_path)
        return EnsembleNotFoundError(
            f"no ensemble named {name!r} in {folder.parent} (set {CACHE_ENV} to look "
            f"elsewhere). Train one on the digital twin with `ophyd-stem train-ensemble "
            f"--name {name}`, or in Python: "
            f"save_ensemble(train_ensemble(images, atoms), {name!r})."
        )
    return EnsembleNotFoundError(
        f"no ensemble at {folder} (expected {METADATA_FILE} and {WEIGHTS_FILE} there). "
        f"Train one with `ophyd-stem train-ensemble`, or save one with save_ensemble()."
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_ensemble(
    ensemble: Ensemble, name_or_path: PathLike | None = None, *, overwrite: bool = False
) -> Path:
    """Save an ensemble under a name (in :func:`cache_dir`) or in a folder.

    Args:
        ensemble: the ensemble to save.
        name_or_path: a plain name, a folder path, or ``None`` for ``ensemble.name``.
        overwrite: replace an ensemble already saved there (otherwise an error).

    Returns:
        the folder written.

    Raises:
        FileExistsError: something is already there and ``overwrite`` is False.
        ValueError: no name given and the ensemble has none.

    Example (an untrained one-member ensemble saved in a folder of its own; a plain name
    saves it in the cache folder instead, not run here):
        >>> import tempfile
        >>> from pathlib import Path
        >>> from agents.ensemble import Ensemble, UNet, UNetConfig, save_ensemble
        >>> ensemble = Ensemble([UNet(UNetConfig(levels=1, base_filters=4))])
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folder = save_ensemble(ensemble, Path(tmp.name) / "graphene-60kV")
        >>> folder.name, sorted(p.name for p in folder.iterdir())
        ('graphene-60kV', ['metadata.json', 'weights.pt'])
        >>> tmp.cleanup()
        >>> save_ensemble(ensemble, "graphene-60kV")                     # doctest: +SKIP
        PosixPath('/home/me/.cache/ophyd-stem/ensembles/graphene-60kV')
    """
    if name_or_path is None:
        if not ensemble.name:
            raise ValueError("give a name or path: this ensemble has no name yet")
        name_or_path = ensemble.name
    folder = ensemble_path(name_or_path)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        weights = tmp / WEIGHTS_FILE
        torch.save({"members": [m.state_dict() for m in ensemble.members]}, weights)
        metadata = dict(ensemble.metadata)
        metadata.update(
            {
                "name": folder.name if _is_name(name_or_path) else ensemble.name,
                "members": len(ensemble),
                "architecture": ensemble.config.to_dict(),
                "weights_sha256": _sha256(weights),
            }
        )
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            if old.exists():
                shutil.rmtree(old)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if _is_name(name_or_path):
        ensemble.name = folder.name
    return folder


def load_ensemble(name_or_path: PathLike = DEFAULT_NAME) -> Ensemble:
    """Load an ensemble saved by :func:`save_ensemble`, by name or by folder path.

    Args:
        name_or_path: a plain name (looked up in :func:`cache_dir`) or a folder.

    Returns:
        the :class:`Ensemble`, members in evaluation mode, metadata as saved.

    Raises:
        EnsembleNotFoundError: nothing saved there; the message says how to train one.
        ValueError: the files are there but damaged or not an ensemble.

    Example (saved and loaded again from a folder; ``load_ensemble("default")`` loads the
    one ``ophyd-stem train-ensemble`` saved in the cache folder, not run here):
        >>> import tempfile
        >>> from pathlib import Path
        >>> from agents.ensemble import Ensemble, UNet, UNetConfig, load_ensemble, save_ensemble
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folder = Path(tmp.name) / "tiny"
        >>> folder = save_ensemble(Ensemble([UNet(UNetConfig(levels=1, base_filters=4))]), folder)
        >>> load_ensemble(folder)
        <Ensemble 'tiny': 1 U-Nets, 1 levels, 4 filters, batch norm>
        >>> load_ensemble(folder.parent / "nothing")
        Traceback (most recent call last):
        ...
        agents.ensemble.store.EnsembleNotFoundError: no ensemble at ...
        >>> tmp.cleanup()
        >>> ensemble = load_ensemble("default")                          # doctest: +SKIP
        >>> ensemble.metadata["data"], ensemble.metadata.get("metrics")  # doctest: +SKIP
    """
    folder = ensemble_path(name_or_path)
    meta_file, weights_file = folder / METADATA_FILE, folder / WEIGHTS_FILE
    if not (meta_file.is_file() and weights_file.is_file()):
        raise _not_found(name_or_path, folder)
    try:
        metadata: dict[str, Any] = json.loads(meta_file.read_text())
        config = UNetConfig.from_dict(metadata["architecture"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{meta_file} is not valid ensemble metadata: {exc}") from None
    expected = metadata.get("weights_sha256")
    if expected and _sha256(weights_file) != expected:
        raise ValueError(f"{weights_file} does not match its checksum: the file is damaged")
    try:
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
        members = []
        for sd in state["members"]:
            net = UNet(config)
            net.load_state_dict(sd)
            members.append(net.eval())
    except Exception as exc:  # torch raises several kinds for a bad file
        raise ValueError(f"cannot read the weights in {weights_file}: {exc}") from None
    name = metadata.get("name") or folder.name
    return Ensemble(members, metadata, name)


def list_ensembles() -> list[str]:
    """Names of the ensembles saved in :func:`cache_dir`, sorted."""
    root = cache_dir()
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / METADATA_FILE).is_file()
    )
