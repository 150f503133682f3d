"""A run's results: ``summary.json``, ``results.csv`` in FLamby's layout, and the per-site table.

``results.csv`` has one row per local test set (``Test`` = ``client_test_<center>``) with FLamby's
columns, so it can be concatenated with FLamby's own result CSVs.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from flamby_flare.datasets import get_dataset
from flamby_flare.errors import FlambyFlareError
from flamby_flare.fairness import describe as describe_fairness
from flamby_flare.fairness import fairness
from flamby_flare.sites import center_of

SUMMARY_FILE = "summary.json"
RESULTS_FILE = "results.csv"
RESULT_COLUMNS = (
    "Test",
    "Method",
    "Metric",
    "seed",
    "learning_rate",
    "optimizer_class",
    "server_learning_rate",
    "mu",
    "tau",
    "beta1",
    "beta2",
    "deterministic_cycle",
    "num_updates",
    "nrounds",
)
# Personalization (empty without): its label and the site's personalized model's metric on the same test.
PERSONALIZATION_COLUMNS = ("personalization", "Metric_personalized")
# The privacy ledger of the row's site: per DP mechanism (``dp_sgd``, ``client_dp``) the noise multiplier,
# clipping norm, delta and epsilon spent; empty when the mechanism is off.
MECHANISMS = {"dp-sgd": "dp_sgd", "client-dp": "client_dp"}
LEDGER_FIELDS = ("noise_multiplier", "clip_norm", "delta", "epsilon")
PRIVACY_COLUMNS = tuple(f"{prefix}_{field}" for prefix in MECHANISMS.values() for field in LEDGER_FIELDS)
# The row's site over the run: bytes received and sent in its train tasks (as NVFlare serialized them), its
# local training seconds and the rounds it trained in (``summary["communication"]``); empty in process.
COMMUNICATION_COLUMNS = ("received_bytes", "sent_bytes", "train_s", "train_rounds")


def result_rows(summary: dict) -> list[dict]:
    """FLamby-layout rows of a run summary; hyperparameters a strategy lacks stay empty."""
    import torch

    hp = summary.get("hyperparameters", {})
    rows = []
    for site, value in summary["per_site"].items():
        row = dict.fromkeys(RESULT_COLUMNS, "")
        row.update(
            Test=f"client_test_{center_of(site)}",
            Method=summary["method"],
            Metric=value,
            seed=summary["seed"],
            optimizer_class=str(torch.optim.SGD),
            num_updates=summary["num_updates"],
            nrounds=summary["rounds"],
        )
        row.update({k: v for k, v in hp.items() if k in RESULT_COLUMNS})
        row.update(privacy_columns(summary.get("privacy", {}).get(site, [])))
        personalized = summary.get("per_site_personalized") or {}
        row.update(personalization=summary.get("personalization") or "", Metric_personalized=personalized.get(site, ""))
        traffic = (summary.get("communication") or {}).get(site)
        row.update(
            dict(
                zip(
                    COMMUNICATION_COLUMNS,
                    (traffic["received_bytes"], traffic["sent_bytes"], traffic["train_s"], traffic["rounds"])
                    if traffic
                    else ("",) * 4,
                )
            )
        )
        rows.append(row)
    return rows


def privacy_columns(records: list[dict]) -> dict:
    """``PRIVACY_COLUMNS`` of one site's ledger records ("" for a mechanism that is off)."""
    row = dict.fromkeys(PRIVACY_COLUMNS, "")
    for record in records:
        prefix = MECHANISMS[record["mechanism"]]
        row.update({f"{prefix}_{field}": record[field] for field in LEDGER_FIELDS})
    return row


def describe_communication(per_site: dict[str, dict]) -> str:
    """The run's traffic in one line: per site and round, bytes down and up and local training seconds
    (means over the sites' rounds), and the total over the run."""
    rounds = sum(t["rounds"] for t in per_site.values())
    if not rounds:
        return ""
    down, up = (sum(t[k] for t in per_site.values()) for k in ("received_bytes", "sent_bytes"))
    seconds = sum(t["train_s"] for t in per_site.values())
    return (
        f"communication: per site and round {_size(down / rounds)} down, {_size(up / rounds)} up, "
        f"{seconds / rounds:.3f} s local training; run total {_size(down + up)}"
    )


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def describe_privacy(records: list[dict]) -> str:
    """One site's ledger in words, e.g. ``dp-sgd eps 0.998 (delta 0.001, sigma 2.40, C 1.1)``."""
    return (
        "; ".join(
            f"{r['mechanism']} eps {r['epsilon']:.3g} (delta {r['delta']:g}, sigma {r['noise_multiplier']:.3g}, C {r['clip_norm']:g})"
            for r in records
        )
        or "no DP"
    )


def write_results(run_dir: str | Path, summary: dict) -> tuple[Path, Path]:
    """Write ``results.csv``, then ``summary.json`` (atomically, last: its presence means the run is done)."""
    run_dir = Path(run_dir)
    summary_path, results_path = run_dir / SUMMARY_FILE, run_dir / RESULTS_FILE
    with open(results_path, "w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=RESULT_COLUMNS + PERSONALIZATION_COLUMNS + PRIVACY_COLUMNS + COMMUNICATION_COLUMNS
        )
        writer.writeheader()
        writer.writerows(result_rows(summary))
    tmp = summary_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, summary_path)
    return summary_path, results_path


def find_summaries(path: str | Path) -> list[Path]:
    """``path`` itself if it is a summary file, else every ``summary.json`` below it."""
    path = Path(path)
    if path.is_file():
        return [path]
    found = sorted(path.rglob(SUMMARY_FILE)) if path.is_dir() else []
    if not found:
        raise FlambyFlareError(f"no {SUMMARY_FILE} under {path}: did the run finish? (see its server log.txt)")
    return found


def format_table(summary: dict) -> str:
    """The per-site table printed at the end of a run."""
    module = get_dataset(summary["dataset"])
    name = summary["metric_name"]
    personalized = summary.get("per_site_personalized") or {}
    label = summary.get("personalization")
    lines = [
        f"{module.SOURCE.title} | {summary['method']}{f' + {label}' if label else ''} | seed {summary['seed']} | "
        f"{summary['rounds']} rounds x {summary['num_updates']} updates | {summary['wall_time_s']:.1f} s",
        f"{'site':<8} {'center':<14} {'n_test':>6} {name:>10}" + (f" {'personalized':>12}" if personalized else ""),
    ]
    for site, value in summary["per_site"].items():
        center = center_of(site)
        n_test = summary.get("n_test", {}).get(site, "")
        extra = f" {_fmt(personalized.get(site)):>12}" if personalized else ""
        lines.append(f"{site:<8} {module.CENTER_NAMES[center]:<14} {n_test:>6} {_fmt(value):>10}{extra}")
    mean_p = f" {_fmt(summary.get('mean_personalized')):>12}" if personalized else ""
    lines.append(f"{'mean over sites (unweighted)':<30} {_fmt(summary['mean']):>10}{mean_p}")
    lines.append("fairness: " + describe_fairness(fairness(summary["per_site"])))
    if personalized:
        lines.append("fairness, personalized: " + describe_fairness(fairness(personalized)))
    if line := describe_communication(summary.get("communication") or {}):
        lines.append(line)
    privacy = summary.get("privacy") or {}
    if privacy:
        lines.append("privacy spent (epsilon at delta; noise multiplier sigma, clipping norm C):")
        lines += [f"  {site:<8} {describe_privacy(records)}" for site, records in privacy.items()]
    if summary.get("diverged_at_round"):
        because = summary.get("diverged_because") or "the training loss became non-finite"
        lines.append(f"DIVERGED in round {summary['diverged_at_round']}: {because}; training stopped")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
