"""Where datasets live on disk.

Data root resolution: explicit argument > environment ``FLAMBY_FLARE_DATA`` > a per-user cache folder
(``$XDG_CACHE_HOME/flamby_flare`` or ``~/.cache/flamby_flare``). Dataset ``NAME`` lives in
``<data root>/NAME/``, laid out like the mirror (``<mirror>/NAME/<file>``).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "FLAMBY_FLARE_DATA"
MIRROR_ENV = "FLAMBY_FLARE_MIRROR"


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding all downloaded datasets."""
    if data_root:
        return Path(data_root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "flamby_flare"


def dataset_dir(name: str, data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding dataset ``name``'s files."""
    return resolve_data_root(data_root) / name


def resolve_mirror(mirror: str | os.PathLike | None = None) -> Path | None:
    """A local mirror folder (argument > ``FLAMBY_FLARE_MIRROR``), or None for the network."""
    value = mirror or os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None
