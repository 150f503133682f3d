"""Per-site state that must outlive the site's process (NVFlare's simulator swaps processes between tasks)
and the job (a resumed job continues it): small NumPy dicts saved atomically in a folder, or kept in
memory when no folder is given."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from flamby_flare.model_state import NumpyState


class SiteState:
    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else None
        self._memory: dict[str, NumpyState] = {}

    def load(self, name: str) -> NumpyState | None:
        if self.folder is None:
            return self._memory.get(name)
        path = self.folder / f"{name}.npz"
        if not path.is_file():
            return None
        with np.load(path) as data:
            return {k: data[k] for k in data.files}

    def save(self, name: str, state: NumpyState) -> None:
        if self.folder is None:
            self._memory[name] = {k: np.array(v) for k, v in state.items()}
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{name}.tmp.npz"
        np.savez(tmp, **state)
        os.replace(tmp, self.folder / f"{name}.npz")

    def delete(self, name: str) -> None:
        if self.folder is None:
            self._memory.pop(name, None)
        else:
            (self.folder / f"{name}.npz").unlink(missing_ok=True)
