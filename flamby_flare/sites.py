"""NVFlare site names <-> FLamby center indices: ``site-1`` is center 0, ``site-K`` is center K-1."""

from __future__ import annotations

import re

_SITE = re.compile(r"^site-(\d+)$")


def site_name(center: int) -> str:
    return f"site-{center + 1}"


def center_of(site: str) -> int:
    match = _SITE.match(site)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"site name {site!r} is not of the form site-<k>, k >= 1 (site-k is FLamby center k-1)")
    return int(match.group(1)) - 1


def expected_sites(num_clients: int) -> list[str]:
    return [site_name(c) for c in range(num_clients)]


def sort_sites(sites) -> list[str]:
    """Sites in center order (``site-2`` before ``site-10``)."""
    return sorted(sites, key=center_of)
