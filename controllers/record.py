"""A run's record: every round's losses, timings, order and privacy spent (the history), the per-site
privacy ledger, and the summary that ``summary.json`` and ``results.csv`` are written from."""

from __future__ import annotations

import math

from flamby_flare.divergence import round_loss
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

    def add_round(
        self, round_number: int, results: list[SiteResult], wall_s: float, order: list[str] | None
    ) -> float | None:
        """Record a finished round; returns its sample-weighted training loss (None: the sites withheld it)."""
        loss = round_loss(results)
        privacy = {r.site: r.privacy for r in results if r.privacy}
        self.history.append(
            {
                "round": round_number,
                "train_loss": loss,
                "per_site": {r.site: r.loss for r in results},
                "wall_s": round(wall_s, 4),
                "site_compute_s": {r.site: round(r.seconds, 4) for r in results},
                **(
                    {"site_bytes": {r.site: r.traffic for r in results}}
                    if all(r.traffic for r in results) and results
                    else {}
                ),
                **({"privacy": privacy} if privacy else {}),
                **({"order": order} if order is not None else {}),
            }
        )
        return loss

    def describe_round(self, total_rounds: int) -> str:
        """The last round in one log line: losses per site and the privacy spent."""
        entry = self.history[-1]
        loss = entry["train_loss"]
        reported = {s: v for s, v in entry["per_site"].items() if v is not None}
        flag = "" if loss is None or math.isfinite(loss) else "  (non-finite!)"
        spent = " ".join(
            f"{site}: " + ", ".join(f"{rec['mechanism']} eps {rec['epsilon']:.3g}" for rec in recs)
            for site, recs in entry.get("privacy", {}).items()
        )
        return (
            f"round {entry['round']}/{total_rounds}: train loss "
            + (
                f"{loss:.5f}{flag} " + " ".join(f"{s}={v:.4f}" for s, v in reported.items())
                if loss is not None
                else "withheld"
            )
            + (f" | {spent}" if spent else "")
        )

    def communication(self) -> dict[str, dict]:
        """Per site, over the run's rounds: bytes received (the tasks' data) and sent (its results), as
        NVFlare serialized them, its local training seconds and the rounds it trained in."""
        totals: dict[str, dict] = {}
        for entry in self.history:
            for site, seconds in entry["site_compute_s"].items():
                total = totals.setdefault(site, {"received_bytes": 0, "sent_bytes": 0, "train_s": 0.0, "rounds": 0})
                traffic = entry.get("site_bytes", {}).get(site) or {}
                total["received_bytes"] += traffic.get("received", 0)
                total["sent_bytes"] += traffic.get("sent", 0)
                total["train_s"] = round(total["train_s"] + seconds, 4)
                total["rounds"] += 1
        return {site: totals[site] for site in sort_sites(totals)}

    def privacy_ledger(self) -> dict[str, list[dict]]:
        """Per site, the latest ledger record of each DP mechanism it applied (empty without DP)."""
        ledger: dict[str, dict[str, dict]] = {}
        for entry in self.history:
            for site, records in entry.get("privacy", {}).items():
                ledger.setdefault(site, {}).update({r["mechanism"]: r for r in records})
        return {site: list(ledger[site].values()) for site in sort_sites(ledger)}
