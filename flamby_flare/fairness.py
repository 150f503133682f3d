"""Fairness across sites: what the mean over sites hides.

For a metric per site (higher is better, as all of FLamby's): the worst site and its value, the best-worst
gap, and the spread (the standard deviation over the sites, with ddof 0: the sites are the whole federation,
not a sample of one). Sites with no finite value (a lost site, a diverged run) are left out; with none
left every figure is NaN.
"""

from __future__ import annotations

import math


def fairness(per_site: dict[str, float]) -> dict:
    """``{"worst", "worst_site", "gap", "spread"}`` of ``per_site`` (site -> metric)."""
    scored = {site: float(v) for site, v in per_site.items() if v is not None and math.isfinite(v)}
    if not scored:
        return {"worst": math.nan, "worst_site": None, "gap": math.nan, "spread": math.nan}
    worst_site = min(scored, key=scored.get)
    values = list(scored.values())
    mean = sum(values) / len(values)
    return {
        "worst": scored[worst_site],
        "worst_site": worst_site,
        "gap": max(values) - scored[worst_site],
        "spread": math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)),
    }


def describe(figures: dict) -> str:
    """One line: ``worst 0.6222 (site-4) | best-worst gap 0.1374 | spread 0.0518``."""
    if figures["worst_site"] is None:
        return "worst nan | best-worst gap nan | spread nan"
    return (
        f"worst {figures['worst']:.4f} ({figures['worst_site']}) | best-worst gap {figures['gap']:.4f} | "
        f"spread {figures['spread']:.4f}"
    )
