"""The DP experiment's report: accuracy against the target epsilon, per delta, next to FLamby's DP example.

Per (target epsilon, target delta), and for the no-DP run: per seed the unweighted mean over local test
sets, then mean ± sd over seeds; the epsilon the sites really spent (largest over sites, mean over seeds);
FLamby's mean ± sd; the difference; whether ours lies in FLamby's band, mean ± max(sd, 0.02); and the
cost of DP, the mean minus the no-DP mean, ours and FLamby's (FLamby's DP example starts from another
initial model than its benchmark, so the costs compare more fairly than the levels).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from flamby_flare.benchmark.published import DP_PUBLISHED
from flamby_flare.benchmark.report import MIN_BAND

NO_DP = "no DP"


def _setting(epsilon, delta) -> tuple:
    return (None, None) if pd.isna(epsilon) else (float(epsilon), float(delta))


def summarize_dp(results: pd.DataFrame) -> pd.DataFrame:
    """(epsilon, delta) -> seeds, mean, sd, spent epsilon, noise multipliers, per-seed values."""
    local = results[results["Test"].str.startswith("client_test")].copy()
    local["setting"] = [_setting(e, d) for e, d in zip(local["dp_target_epsilon"], local["dp_target_delta"])]
    rows = []
    for setting, group in local.groupby("setting", sort=False, dropna=False):
        per_seed = group.groupby("seed").agg(value=("Metric", "mean"), spent=("dp_sgd_epsilon", "max"))
        values = per_seed["value"].dropna()
        sigmas = group["dp_sgd_noise_multiplier"].dropna()
        rows.append(
            {
                "epsilon": setting[0],
                "delta": setting[1],
                "seeds": len(values),
                "mean": values.mean() if len(values) else math.nan,
                "sd": values.std() if len(values) > 1 else 0.0,
                "spent_epsilon": per_seed["spent"].mean(),
                "noise_multiplier": f"{sigmas.min():.3g}-{sigmas.max():.3g}" if len(sigmas) else "",
                "per_seed": " ".join(f"{v:.3f}" for v in per_seed["value"]),
            }
        )
    frame = pd.DataFrame(rows)
    order = frame["epsilon"].fillna(-1).astype(float) * 10 - frame["delta"].fillna(0).astype(float)
    return frame.iloc[order.argsort(kind="stable")].reset_index(drop=True)


def flamby_dp_stats(dataset: str, reference_dir: str | Path | None = None) -> dict[tuple, tuple[float, float]]:
    """FLamby's DP example: (epsilon, delta) -> (mean, sd); from its CSV in ``reference_dir`` when given."""
    if reference_dir is None:
        return {k: (m, s) for k, (m, s, _) in DP_PUBLISHED.get(dataset, {}).items()}
    path = Path(reference_dir) / f"flamby_dp_{dataset}.csv"
    if not path.is_file():
        return {}
    frame = pd.read_csv(path)
    stats = {}
    for (e, d), group in frame.groupby([frame["e"].fillna(-1), frame["d"].fillna(-1)]):
        stats[_setting(None if e == -1 else e, d)] = (group["perf"].mean(), group["perf"].std())
    return stats


def compare_dp(dataset: str, table: pd.DataFrame, reference_dir: str | Path | None = None) -> pd.DataFrame:
    ref = flamby_dp_stats(dataset, reference_dir)
    out = table.copy()
    out.insert(0, "dataset", dataset)
    keys = [_setting(e, d) for e, d in zip(out["epsilon"], out["delta"])]
    out["flamby_mean"] = [ref.get(k, (math.nan, math.nan))[0] for k in keys]
    out["flamby_sd"] = [ref.get(k, (math.nan, math.nan))[1] for k in keys]
    out["difference"] = out["mean"] - out["flamby_mean"]
    band = out["flamby_sd"].fillna(0).clip(lower=MIN_BAND)
    out["in_band"] = [
        "" if math.isnan(d) else ("yes" if abs(d) <= b else "no") for d, b in zip(out["difference"], band)
    ]
    none = [k == (None, None) for k in keys]
    base = out.loc[none, "mean"].mean() if any(none) else math.nan
    out["cost"] = out["mean"] - base
    out["flamby_cost"] = out["flamby_mean"] - ref.get((None, None), (math.nan,))[0]
    return out


def dp_markdown(table: pd.DataFrame) -> str:
    lines = [
        "| target epsilon | delta | ours mean ± sd | seeds | epsilon spent | noise multiplier | FLamby mean ± sd | "
        "difference | in band | cost of DP: ours | FLamby | per seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        eps = NO_DP if pd.isna(r["epsilon"]) else f"{r['epsilon']:g}"
        delta = "" if pd.isna(r["delta"]) else f"{r['delta']:g}"
        spent = "" if pd.isna(r["spent_epsilon"]) else f"{r['spent_epsilon']:.3g}"
        fl = "-" if math.isnan(r["flamby_mean"]) else f"{r['flamby_mean']:.3f} ± {r['flamby_sd']:.3f}"
        diff = "-" if math.isnan(r["difference"]) else f"{r['difference']:+.3f}"
        cost = "-" if math.isnan(r["cost"]) else f"{r['cost']:+.3f}"
        flamby_cost = "-" if math.isnan(r["flamby_cost"]) else f"{r['flamby_cost']:+.3f}"
        lines.append(
            f"| {eps} | {delta} | {r['mean']:.3f} ± {r['sd']:.3f} | {r['seeds']} | {spent} | "
            f"{r['noise_multiplier']} | {fl} | {diff} | {r['in_band'] or '-'} | {cost} | {flamby_cost} | {r['per_seed']} |"
        )
    return "\n".join(lines)


def plot_dp(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Accuracy against target epsilon (log scale), one line per delta with sd error bars; FLamby's as
    dashed lines of the same colour; the no-DP levels as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    dp = table[table["epsilon"].notna()]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    deltas = sorted(dp["delta"].unique())
    for i, delta in enumerate(deltas):
        group = dp[dp["delta"] == delta].sort_values("epsilon")
        color = colors[i % len(colors)]
        dodge = 1 + 0.06 * (i - (len(deltas) - 1) / 2)  # side by side at each epsilon, so error bars stay readable
        ax.errorbar(
            group["epsilon"] * dodge,
            group["mean"],
            yerr=group["sd"],
            marker="o",
            capsize=3,
            color=color,
            label=f"delta = {delta:g}",
        )
        if group["flamby_mean"].notna().any():
            ax.plot(group["epsilon"] * dodge, group["flamby_mean"], linestyle="--", marker="x", color=color, alpha=0.5)
    none = table[table["epsilon"].isna()]
    if len(none):
        ax.axhline(none["mean"].iloc[0], color="black", linewidth=1.2, label="no DP (ours)")
        if not math.isnan(none["flamby_mean"].iloc[0]):
            ax.axhline(none["flamby_mean"].iloc[0], color="black", linestyle=":", linewidth=1.2, label="no DP (FLamby)")
    ax.plot([], [], linestyle="--", marker="x", color="gray", alpha=0.5, label="FLamby (same delta)")
    ax.set_xscale("log")
    ax.set_xlabel("target epsilon")
    ax.set_ylabel("accuracy (mean over local test sets)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
