"""A run's record: every round's losses, timings, order and privacy spent (the history), the per-site
privacy ledger, and the summary that ``summary.json`` and ``results.csv`` are written from."""

from __future__ import annotations

import math

from flamby_flare.sites import sort_sites
from flamby_flare.strategies.base import SiteResult


def mean_over_sites(per_site: dict[str, float]) -> float:
    """Unweighted mean over the sites with a finite value (NaN if none)."""
    scored = [v for v in per_site.values() if math.isfinite(v)]
    return sum(scored) / len(scored) if scored else math.nan


class RunRecord:
    """The history of one run (restored from a checkpoint on resume)."""

    def __init__(self, history: list[dict] | None = None):
        self.history: list[dict] = list(history or [])

    def add_round(self, round_number: int, results: list[SiteResult], wall_s: float, order: list[str] | None) -> float | None:
        """Record a finished round; returns its sample-weighted training loss (None: the sites withheld it)."""
        reported = [r for r in results if r.loss is not None]
        loss = (sum(r.loss * r.n_samples for r in reported) / sum(r.n_samples for r in reported)) if reported else None
        privacy = {r.site: r.privacy for r in results if r.privacy}
        self.history.append({
            "round": round_number,
            "train_loss": loss,
            "per_site": {r.site: r.loss for r in results},
            "wall_s": round(wall_s, 4),
            "site_compute_s": {r.site: round(r.seconds, 4) for r in results},
            **({"privacy": privacy} if privacy else {}),
            **({"order": order} if order is not None else {}),
        })
        return loss

    def describe_round(self, total_rounds: int) -> str:
        """The last round in one log line: losses per site and the privacy spent."""
        entry = self.history[-1]
        loss = entry["train_loss"]
        reported = {s: v for s, v in entry["per_site"].items() if v is not None}
        flag = "" if loss is None or math.isfinite(loss) else "  (non-finite!)"
        spent = " ".join(f"{site}: " + ", ".join(f"{rec['mechanism']} eps {rec['epsilon']:.3g}" for rec in recs)
                         for site, recs in entry.get("privacy", {}).items())
        return (f"round {entry['round']}/{total_rounds}: train loss "
                + (f"{loss:.5f}{flag} " + " ".join(f"{s}={v:.4f}" for s, v in reported.items()) if loss is not None else "withheld")
                + (f" | {spent}" if spent else ""))

    def privacy_ledger(self) -> dict[str, list[dict]]:
        """Per site, the latest ledger record of each DP mechanism it applied (empty without DP)."""
        ledger: dict[str, dict[str, dict]] = {}
        for entry in self.history:
            for site, records in entry.get("privacy", {}).items():
                ledger.setdefault(site, {}).update({r["mechanism"]: r for r in records})
        return {site: list(ledger[site].values()) for site in sort_sites(ledger)}
