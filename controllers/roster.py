"""Which sites a run has, which it lost and when, and whether enough remain (``min_clients``)."""

from __future__ import annotations


class QuorumLost(RuntimeError):
    """Fewer than ``min_clients`` sites remain; the message names the missing ones."""


class Roster:
    """The dataset's sites (``site-1 .. site-K``), minus those dropped (site -> the round it was lost in; 0:
    absent at start)."""

    def __init__(self, sites: list[str], min_clients: int | None, dataset: str):
        self.sites, self.dataset = list(sites), dataset
        self.needed = min_clients or len(sites)
        if not 1 <= self.needed <= len(sites):
            raise ValueError(f"min_clients must be in 1..{len(sites)} for {dataset}, got {min_clients}")
        self.dropped: dict[str, int] = {}

    @property
    def active(self) -> list[str]:
        return [s for s in self.sites if s not in self.dropped]

    def check_connected(self, connected: set[str]) -> list[str]:
        """Refuse sites that are not centers and a start with fewer than ``needed`` sites; drop the absent
        ones (round 0). Returns the absent sites."""
        missing = [s for s in self.sites if s not in connected]
        unexpected = sorted(connected - set(self.sites))
        if unexpected or len(self.sites) - len(missing) < self.needed:
            problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"{', '.join(unexpected)} {'is' if len(unexpected) == 1 else 'are'} not a center"]
                if unexpected
                else []
            )
            raise RuntimeError(
                f"{self.dataset} has {len(self.sites)} centers, so its sites must be {self.sites[0]} .. {self.sites[-1]}"
                f"{f' (at least {self.needed})' if self.needed < len(self.sites) else ''}: " + "; ".join(problems)
            )
        self.dropped.update(dict.fromkeys(missing, 0))
        return missing

    def drop(self, missing: list[str], round_number: int, what: str) -> None:
        """Drop ``missing`` (lost in round ``round_number``) if enough sites remain, else ``QuorumLost``."""
        remaining = len(self.active) - len(missing)
        if remaining < self.needed:
            raise QuorumLost(
                f"{what}; {remaining} site(s) left, the run needs {self.needed} (min_clients); see the site logs"
            )
        for site in missing:
            self.dropped[site] = round_number
