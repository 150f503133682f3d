"""FLamby's published benchmark results (the CSVs in ``shared/reference/flamby_results/<dataset>/``).

FLamby's Figure 2 quantity: per seed, the unweighted mean over the local test sets (``client_test_*``
rows), then mean and sample sd over seeds; seeds whose metric is NaN (diverged runs) are dropped.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def load_reference(reference_dir: str | Path, dataset: str) -> pd.DataFrame:
    """All published rows of ``dataset`` (columns Test, Method, Metric, seed, ...)."""
    files = sorted((Path(reference_dir) / "flamby_results" / dataset).glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no FLamby result CSVs for {dataset} under {reference_dir}/flamby_results")
    frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    if "seed" not in frame:
        frame["seed"] = 0  # LIDC's single run has no seed column
    return frame


def per_seed_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Method, seed -> mean over local test sets (FLamby's per-seed bar value)."""
    local = frame[frame["Test"].str.startswith("client_test")]
    return local.groupby(["Method", "seed"])["Metric"].mean().reset_index(name="mean")


def reference_stats(reference_dir: str | Path, dataset: str) -> pd.DataFrame:
    """Method -> mean, sd (sample, over seeds) and number of non-NaN seeds."""
    seeds = per_seed_means(load_reference(reference_dir, dataset)).dropna(subset=["mean"])
    return seeds.groupby("Method")["mean"].agg(mean="mean", sd="std", n="count")
