"""This project's top-level packages (``controllers``, ``executors``, ``privacy``: the classes jobs name) and
the check that no other package of the same name comes first on the import path of the processes that run
them: a user's own ``controllers/`` in the current folder (NVFlare's processes import from it), on
``PYTHONPATH`` or in a job's ``custom/`` folder would be loaded instead of ours and fail obscurely
(``module 'controllers' has no attribute 'FedAvg'``) or, worse, run its code under our class names."""

from __future__ import annotations

import importlib.machinery
import os
from collections.abc import Iterable
from pathlib import Path

from flamby_flare.errors import FlambyFlareError

PROJECT_PACKAGES = ("controllers", "executors", "privacy")
_OURS = Path(__file__).resolve().parent.parent  # the folder holding flamby_flare/ and the three packages


class ShadowedPackageError(FlambyFlareError, ImportError):
    """Another package of one of ``PROJECT_PACKAGES``' names would be imported instead of ours."""


def search_path(job: str | os.PathLike | None = None) -> list[Path]:
    """The folders NVFlare's processes started here search before the installed packages: the current
    folder, ``PYTHONPATH``, and a job's ``custom/`` folders."""
    folders = [Path.cwd()] + [Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if job is not None:
        folders += sorted(Path(job).glob("*/custom"))
    return folders


def check_not_shadowed(folders: Iterable[str | os.PathLike] | None = None) -> None:
    """Refuse, in one line naming both, when a package of ours is shadowed from one of ``folders`` (default:
    ``search_path()``)."""
    for folder in search_path() if folders is None else folders:
        folder = Path(folder).resolve()
        if folder == _OURS:
            continue
        for name in PROJECT_PACKAGES:
            spec = importlib.machinery.PathFinder.find_spec(name, [str(folder)])
            if spec is not None:
                where = spec.origin if spec.origin not in (None, "namespace") else str(folder / name)
                raise ShadowedPackageError(
                    f"{where} shadows flamby-flare's {name!r} package ({_OURS / name}): NVFlare would load it instead "
                    f"of ours; rename it, or run from another folder"
                )


def check_this_process() -> None:
    """Refuse when this process itself would import another package under one of our names (``python -m
    flamby_flare`` run from a folder holding a ``controllers/``, say)."""
    import importlib.util
    import sys

    for name in PROJECT_PACKAGES:
        module = sys.modules.get(name)
        origin = (
            getattr(module, "__file__", None) if module else getattr(importlib.util.find_spec(name), "origin", None)
        )
        if origin is not None and Path(origin).resolve().parent != _OURS / name:
            raise ShadowedPackageError(
                f"{origin} shadows flamby-flare's {name!r} package ({_OURS / name}): this process would load it "
                f"instead of ours; rename it, or run from another folder"
            )
