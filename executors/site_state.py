"""Per-site state that must outlive the site's process (NVFlare's simulator swaps processes between tasks)
and the job (a resumed job continues it): small NumPy dicts saved atomically in a folder, or kept in
memory when no folder is given.

State that evolves round by round (SCAFFOLD's c_i, DP accountants, Ditto's personal model, FedBN's local
layers) is versioned per round (``save_round`` / ``load_round``): round r reads what round r - 1 saved,
so a round that a restarted server repeats reads the same input again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from flamby_flare.errors import SiteStateError
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
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{name}.tmp.npz"
            np.savez(tmp, **state)
            os.replace(tmp, self.folder / f"{name}.npz")
        except OSError as exc:
            raise SiteStateError(
                f"cannot write this site's run state in {self.folder}: {exc.strerror or exc}; "
                "give the site a writable state_dir (local/flamby_flare.json) or FLAMBY_FLARE_STATE"
            ) from None

    def load_round(self, name: str, round_index: int) -> NumpyState | None:
        """What round ``round_index`` saved under ``name`` (None if nothing was: before round 0, round -1 holds
        only what a runner set up front, e.g. FLamby's SCAFFOLD with a given previous state)."""
        return self.load(f"{name}_r{round_index}")

    def save_round(self, name: str, round_index: int, state: NumpyState) -> None:
        """Save round ``round_index``'s ``name``; keep only the last two rounds (a restart repeats at most one)."""
        self.save(f"{name}_r{round_index}", state)
        self.delete(f"{name}_r{round_index - 2}")

    def delete(self, name: str) -> None:
        if self.folder is None:
            self._memory.pop(name, None)
        else:
            (self.folder / f"{name}.npz").unlink(missing_ok=True)
