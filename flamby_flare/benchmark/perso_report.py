"""The personalization experiment's report: per personalization, the global model's and the personalized
models' metric (per seed the unweighted mean over local test sets, then mean ± sd over seeds), the gain,
the worst site of each (per seed, then the mean over seeds),
FLamby's numbers where it published them (fine-tuning), and a figure of global against personalized per site.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from flamby_flare.benchmark.published import PERSONALIZATION_PUBLISHED
from flamby_flare.benchmark.report import MIN_BAND
from flamby_flare.datasets import get_dataset
from flamby_flare.fairness import fairness


def _stats(values: pd.Series) -> tuple[float, float]:
    values = values.dropna()
    return (values.mean() if len(values) else math.nan, values.std() if len(values) > 1 else 0.0)


def summarize_perso(results: pd.DataFrame) -> pd.DataFrame:
    """Personalization label -> seeds, global and personalized mean ± sd, gain, per-seed values."""
    local = results[results["Test"].str.startswith("client_test") & results["personalization"].notna()]
    rows = []
    for label, group in local.groupby("personalization", sort=False):
        per_seed = group.groupby("seed").agg(glob=("Metric", "mean"), perso=("Metric_personalized", "mean"))
        (g, g_sd), (p, p_sd) = _stats(per_seed["glob"]), _stats(per_seed["perso"])
        worst = {
            kind: _stats(
                pd.Series([fairness(dict(zip(s["Test"], s[column])))["worst"] for _, s in group.groupby("seed")])
            )[0]
            for kind, column in (("global", "Metric"), ("personalized", "Metric_personalized"))
        }
        rows.append(
            {
                "personalization": label,
                "method": group["Method"].iloc[0],
                "seeds": len(per_seed),
                "global_mean": g,
                "global_sd": g_sd,
                "personalized_mean": p,
                "personalized_sd": p_sd,
                "gain": p - g,
                "global_worst": worst["global"],
                "personalized_worst": worst["personalized"],
                "per_seed": " ".join(f"{a:.3f}->{b:.3f}" for a, b in zip(per_seed["glob"], per_seed["perso"])),
            }
        )
    return pd.DataFrame(rows)


def per_site(results: pd.DataFrame) -> pd.DataFrame:
    """(personalization, test) -> mean over seeds of the global and the personalized metric."""
    local = results[results["Test"].str.startswith("client_test")]
    return (
        local.groupby(["personalization", "Test"])
        .agg(
            global_mean=("Metric", "mean"),
            global_sd=("Metric", "std"),
            personalized_mean=("Metric_personalized", "mean"),
            personalized_sd=("Metric_personalized", "std"),
        )
        .reset_index()
    )


def flamby_perso_stats(dataset: str, reference_dir: str | Path | None = None) -> dict[str, tuple[float, float]]:
    """FLamby's example: ``global`` and ``finetune100`` -> (mean, sd); from its CSV when ``reference_dir`` is given."""
    if reference_dir is None:
        return {k: (m, s) for k, (m, s, _) in PERSONALIZATION_PUBLISHED.get(dataset, {}).items()}
    path = Path(reference_dir) / "flamby_personalization.csv"
    if not path.is_file():
        return {}
    frame = pd.read_csv(path)
    frame = frame[frame["dataset"] == get_dataset(dataset).SOURCE.title]
    return {
        ("finetune100" if finetune else "global"): (g["perf"].mean(), g["perf"].std())
        for finetune, g in frame.groupby("finetune")
    }


def compare_perso(dataset: str, table: pd.DataFrame, reference_dir: str | Path | None = None) -> pd.DataFrame:
    ref = flamby_perso_stats(dataset, reference_dir)
    out = table.copy()
    out.insert(0, "dataset", dataset)
    nan = (math.nan, math.nan)
    out["flamby_global"], out["flamby_global_sd"] = ref.get("global", nan)
    out["flamby_personalized"] = [ref.get(label, nan)[0] for label in out["personalization"]]
    out["flamby_personalized_sd"] = [ref.get(label, nan)[1] for label in out["personalization"]]
    for kind in ("global", "personalized"):
        diff = out[f"{kind}_mean"] - out[f"flamby_{kind}"]
        band = out[f"flamby_{kind}_sd"].fillna(0).clip(lower=MIN_BAND)
        out[f"{kind}_in_band"] = ["" if math.isnan(d) else ("yes" if abs(d) <= b else "no") for d, b in zip(diff, band)]
    return out


def perso_markdown(table: pd.DataFrame) -> str:
    def fmt(mean, sd):
        return "-" if math.isnan(mean) else f"{mean:.3f} ± {sd:.3f}"

    lines = [
        "| method | personalization | seeds | global | personalized | gain | FLamby global | FLamby personalized | "
        "in band (global / personalized) | per seed (global->personalized) | worst site (global / personalized) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['method']} | {r['personalization']} | {r['seeds']} | {fmt(r['global_mean'], r['global_sd'])} | "
            f"{fmt(r['personalized_mean'], r['personalized_sd'])} | {r['gain']:+.3f} | {fmt(r['flamby_global'], r['flamby_global_sd'])} | "
            f"{fmt(r['flamby_personalized'], r['flamby_personalized_sd'])} | {r['global_in_band'] or '-'} / "
            f"{r['personalized_in_band'] or '-'} | {r['per_seed']} | {r['global_worst']:.3f} / {r['personalized_worst']:.3f} |"
        )
    return "\n".join(lines)


def plot_perso(sites: pd.DataFrame, dataset: str, path: Path) -> Path:
    """Per site (FLamby's center names): the global model's metric and each personalized one, mean ± sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    module = get_dataset(dataset)
    tests = sorted(sites["Test"].unique(), key=lambda t: int(t.rsplit("_", 1)[1]))
    labels = list(dict.fromkeys(sites["personalization"]))
    bars = [("global (FedAvg)", sites[sites["personalization"] == labels[0]].set_index("Test"), "global")]
    bars += [(label, sites[sites["personalization"] == label].set_index("Test"), "personalized") for label in labels]
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(1.6 + 1.9 * len(tests), 4.4))
    for i, (name, frame, kind) in enumerate(bars):
        x = [j + (i - (len(bars) - 1) / 2) * width for j in range(len(tests))]
        ax.bar(
            x,
            [frame.loc[t, f"{kind}_mean"] for t in tests],
            width,
            yerr=[frame.loc[t, f"{kind}_sd"] for t in tests],
            capsize=3,
            label=name,
            edgecolor="black",
            linewidth=0.5,
        )
    ax.set_xticks(range(len(tests)), [module.CENTER_NAMES[int(t.rsplit("_", 1)[1])] for t in tests])
    ax.set_ylabel(module.METRIC_NAME.replace("_", " ") + " on the site's test set")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{dataset}: global vs personalized per site (mean ± sd over seeds)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=len(bars), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
