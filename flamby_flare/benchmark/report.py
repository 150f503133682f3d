"""``flamby-flare report``: our benchmark next to FLamby's, as markdown, CSV and a Figure-2-style PNG.

Per dataset and method: per seed the unweighted mean over local test sets (FLamby's bar value), then
mean ± sample sd over the seeds that did not diverge; FLamby's mean ± sd; the difference; whether ours lies
in FLamby's band, mean ± max(sd, 0.02); and fairness across sites (``flamby_flare.fairness``: the worst
site, the best-worst gap, the spread over sites, each per seed, then the mean over seeds).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from flamby_flare.benchmark.published import PUBLISHED
from flamby_flare.datasets import get_constants
from flamby_flare.errors import FlambyFlareError
from flamby_flare.fairness import fairness
from flamby_flare.reference import reference_stats

MIN_BAND = 0.02
FEDERATED_ORDER = ("FedAvg", "FedProx", "Scaffold", "Cyclic", "FedAdam", "FedYogi", "FedAdagrad")


def method_order(methods) -> list[str]:
    def key(m: str):
        if m == "Pooled Training":
            return (0, 0, m)
        if m.startswith("Local "):
            return (1, int(m.split()[1]), m)
        base = m.rstrip("0123456789")
        return (2, FEDERATED_ORDER.index(base) if base in FEDERATED_ORDER else 99, m)

    return sorted(methods, key=key)


def _per_seed_fairness(local: pd.DataFrame) -> pd.DataFrame:
    """(Method, seed) -> the worst site's metric, the best-worst gap and the spread over sites."""
    rows = [
        {
            "Method": method,
            "seed": seed,
            **{k: v for k, v in fairness(dict(zip(g["Test"], g["Metric"]))).items() if k != "worst_site"},
        }
        for (method, seed), g in local.groupby(["Method", "seed"])
    ]
    return pd.DataFrame(rows, columns=["Method", "seed", "worst", "gap", "spread"])


def _per_site_round(local: pd.DataFrame) -> pd.DataFrame:
    """Per local-test row of a federated cell: bytes the site received and sent per round, and its local
    training seconds per round (``results.COMMUNICATION_COLUMNS``; the central cells have none)."""
    columns = ["Method", "bytes_per_round", "train_s_per_round"]
    if "train_rounds" not in local:
        return pd.DataFrame(columns=columns)
    rows = local[pd.to_numeric(local["train_rounds"], errors="coerce") > 0]
    rounds = rows["train_rounds"].astype(float)
    return pd.DataFrame(
        {
            "Method": rows["Method"],
            "bytes_per_round": (rows["received_bytes"].astype(float) + rows["sent_bytes"].astype(float)) / rounds,
            "train_s_per_round": rows["train_s"].astype(float) / rounds,
        }
    )


def _personalized_per_seed(local: pd.DataFrame) -> pd.DataFrame:
    """(Method, seed) -> the mean and the worst site of the sites' personalized models' metric, for the
    personalized strategies' cells (``Metric_personalized``; the others have none)."""
    columns = ["Method", "seed", "mean", "worst"]
    if "Metric_personalized" not in local:
        return pd.DataFrame(columns=columns)
    rows = local[pd.to_numeric(local["Metric_personalized"], errors="coerce").notna()]
    values = pd.to_numeric(rows["Metric_personalized"])
    grouped = values.groupby([rows["Method"], rows["seed"]])
    return pd.DataFrame({"mean": grouped.mean(), "worst": grouped.min()}).reset_index()[columns]


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Method -> per-seed means, mean, sd, seeds, diverged, fairness across sites (the worst site's metric,
    the best-worst gap and the spread over sites, each the mean over the seeds that did not diverge), and
    each site's traffic per round (bytes down + up, as NVFlare serialized them) and local training seconds
    per round, means over sites and seeds (from one dataset's results.csv)."""
    local = results[results["Test"].str.startswith("client_test")]
    per_seed = local.groupby(["Method", "seed"]).agg(value=("Metric", "mean"), status=("status", "first")).reset_index()
    per_seed = per_seed.merge(_per_seed_fairness(local), on=["Method", "seed"])
    traffic = _per_site_round(local)
    personal = _personalized_per_seed(local)
    rows = []
    for method, group in per_seed.groupby("Method"):
        ok = group[(group["status"] != "diverged") & group["value"].notna()]
        values = ok["value"].tolist()
        spent = traffic[traffic["Method"] == method]
        mine = personal[personal["Method"] == method]
        rows.append(
            {
                "personalized_mean": mine["mean"].mean() if len(mine) else math.nan,
                "personalized_sd": mine["mean"].std() if len(mine) > 1 else (0.0 if len(mine) else math.nan),
                "personalized_worst": mine["worst"].mean() if len(mine) else math.nan,
                **{k: ok[k].mean() if len(ok) else math.nan for k in ("worst", "gap", "spread")},
                **{k: spent[k].mean() if len(spent) else math.nan for k in ("bytes_per_round", "train_s_per_round")},
                "method": method,
                "seeds": len(values),
                "diverged": int((group["status"] == "diverged").sum()),
                "mean": sum(values) / len(values) if values else math.nan,
                "sd": pd.Series(values).std() if len(values) > 1 else 0.0,
                "per_seed": " ".join(f"{v:.3f}" for v in group.sort_values("seed")["value"]),
            }
        )
    frame = pd.DataFrame(rows).set_index("method")
    return frame.loc[method_order(frame.index)]


def flamby_stats(dataset: str, reference_dir: str | Path | None) -> pd.DataFrame:
    if reference_dir is not None:
        return reference_stats(reference_dir, dataset)[["mean", "sd", "n"]]
    table = PUBLISHED.get(dataset, {})
    return pd.DataFrame.from_dict(table, orient="index", columns=["mean", "sd", "n"])


def compare(dataset: str, ours: pd.DataFrame, reference_dir: str | Path | None = None) -> pd.DataFrame:
    ref = flamby_stats(dataset, reference_dir)
    out = ours.copy()
    out.insert(0, "dataset", dataset)
    out["flamby_mean"] = [ref["mean"].get(m, math.nan) for m in out.index]
    out["flamby_sd"] = [ref["sd"].get(m, math.nan) for m in out.index]
    out["flamby_n"] = [ref["n"].get(m, math.nan) for m in out.index]
    out["difference"] = out["mean"] - out["flamby_mean"]
    band = out["flamby_sd"].fillna(0).clip(lower=MIN_BAND)
    out["in_band"] = [
        "" if math.isnan(d) else ("yes" if abs(d) <= b else "no") for d, b in zip(out["difference"], band)
    ]
    return out


def to_markdown(table: pd.DataFrame) -> str:
    lines = [
        "| dataset | method | ours mean ± sd | seeds | diverged | FLamby mean ± sd | difference | in band | per seed "
        "| worst site | best-worst gap | spread | personalized mean ± sd (worst site) | KB per site and round "
        "| training s per site and round |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, r in table.iterrows():
        fl = "-" if math.isnan(r["flamby_mean"]) else f"{r['flamby_mean']:.3f} ± {r['flamby_sd']:.3f}"
        diff = "-" if math.isnan(r["difference"]) else f"{r['difference']:+.3f}"
        lines.append(
            f"| {r['dataset']} | {method} | {r['mean']:.3f} ± {r['sd']:.3f} | {r['seeds']} | {r['diverged']} | "
            f"{fl} | {diff} | {r['in_band'] or '-'} | {r['per_seed']} | {_f3(r['worst'])} | {_f3(r['gap'])} | "
            f"{_f3(r['spread'])} | {_personalized(r)} | {_kb(r.get('bytes_per_round', math.nan))} | {_f3(r.get('train_s_per_round', math.nan))} |"
        )
    return "\n".join(lines)


def _personalized(r) -> str:
    mean = r.get("personalized_mean", math.nan)
    return "-" if math.isnan(mean) else f"{mean:.3f} ± {r['personalized_sd']:.3f} ({r['personalized_worst']:.3f})"


def _kb(value: float) -> str:
    return "-" if math.isnan(value) else f"{value / 1000:.1f}"


def _f3(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _axis_top(values) -> float:
    """The y-axis top: 1.05 for metrics in [0, 1] (all of FLamby's), else a margin over the largest value."""
    top = max((v for v in values if not math.isnan(v)), default=1.0)
    return 1.05 if top <= 1.0 else top * 1.1


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def _count_range(counts: pd.Series) -> str:
    """``"5"``, or ``"1 to 3"`` when methods had different numbers of seeds; ``"-"`` when none."""
    values = sorted({int(n) for n in counts.dropna()})
    return "-" if not values else str(values[0]) if len(values) == 1 else f"{values[0]} to {values[-1]}"


def plot(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """``benchmark_figure`` written to ``path``."""
    return _save(benchmark_figure(tables), path)


def benchmark_figure(tables: dict[str, pd.DataFrame]):
    """Figure 2 of the paper, ours: per dataset grouped pooled / local / federated bars from 0 with our sd over
    seeds, FLamby's mean ± sd as a red diamond with its error bar, the seeds of each side in the legend, and a
    diverged method's count written inside the axes."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tables), figsize=(7.8 * len(tables), 4.8), squeeze=False)
    colors = {"pooled": "#4c72b0", "local": "#55a868", "federated": "#dd8452"}
    for ax, (dataset, table) in zip(axes[0], tables.items()):
        kinds = [
            "pooled" if m == "Pooled Training" else "local" if m.startswith("Local") else "federated"
            for m in table.index
        ]
        x = list(range(len(table)))
        ax.bar(
            x,
            table["mean"].fillna(0),
            yerr=table["sd"].fillna(0),
            capsize=3,
            color=[colors[k] for k in kinds],
            edgecolor="black",
            linewidth=0.5,
        )
        flamby = ax.errorbar(
            [i + 0.25 for i in x],
            table["flamby_mean"],
            yerr=table["flamby_sd"],
            fmt="D",
            markersize=5,
            color="#c44e52",
            markeredgecolor="white",
            ecolor="#c44e52",
            elinewidth=1,
            capsize=2,
            zorder=3,
        )
        for i, (_, r) in enumerate(table.iterrows()):
            if r["diverged"]:  # x in data, y in axes units: inside the axes whatever the bar's height
                ax.text(
                    i,
                    0.03,
                    f"{r['diverged']} diverged",
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color="#b00000",
                    transform=ax.get_xaxis_transform(),
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
                )
        labels = [m.replace(" Training", "").replace("100", "") for m in table.index]
        ax.set_xticks(x, labels, rotation=45, ha="right")
        ax.set_ylabel(get_constants(dataset).METRIC_NAME.replace("_", " "))
        ax.set_ylim(
            0.0,
            _axis_top([*table["mean"] + table["sd"].fillna(0), *table["flamby_mean"] + table["flamby_sd"].fillna(0)]),
        )
        seeds, flamby_n = _count_range(table["seeds"]), _count_range(table["flamby_n"])
        ax.set_title(f"{dataset} (seeds: ours {seeds}, FLamby {flamby_n})")
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
        ax.legend(
            handles + [flamby.lines[0]],
            ["pooled (ours)", "local (ours)", "federated (ours)", "FLamby"],
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
        )  # outside: it hides no bar or label
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Mean over the local test sets; bars and diamonds: mean ± sd over seeds")
    return fig


def plot_traffic(tables: dict[str, pd.DataFrame], path: Path) -> Path | None:
    """``traffic_figure`` written to ``path`` (None: no federated cell recorded its traffic)."""
    fig = traffic_figure(tables)
    return None if fig is None else _save(fig, path)


def traffic_figure(tables: dict[str, pd.DataFrame]):
    """Accuracy against communication: per dataset, each federated method at its bytes per site and round
    (down + up; log scale when they span more than 10x) and its mean metric ± sd over seeds; the pooled
    model's metric as a line."""
    tables = {d: t for d, t in tables.items() if "bytes_per_round" in t and t["bytes_per_round"].notna().any()}
    if not tables:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tables), figsize=(6.4 * len(tables), 4.6), squeeze=False)
    for ax, (dataset, table) in zip(axes[0], tables.items()):
        federated = table[table["bytes_per_round"].notna()]
        for method, r in federated.iterrows():
            ax.errorbar(
                [r["bytes_per_round"] / 1000],
                [r["mean"]],
                yerr=[r["sd"]],
                fmt="o",
                capsize=3,
                label=method.replace("100", ""),
            )
        if "Pooled Training" in table.index:
            ax.axhline(table.loc["Pooled Training", "mean"], color="grey", linestyle="--", linewidth=1, label="pooled")
        kb = federated["bytes_per_round"] / 1000
        if kb.max() > 10 * kb.min():  # a wide range (quantized against full models): log scale, plain labels
            from matplotlib.ticker import FuncFormatter, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            ax.margins(x=0.15)
        ax.set_xlabel("KB per site and round (down + up, as NVFlare serialized them)")
        ax.set_ylabel(get_constants(dataset).METRIC_NAME.replace("_", " "))
        ax.set_ylim(0.0, _axis_top([*(federated["mean"] + federated["sd"].fillna(0))]))
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Accuracy against communication\n(mean over the local test sets, ± sd over seeds)", fontsize=10)
    return fig


def per_site_means(results: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Method x site: each method's metric on each center's local test set, mean over the seeds that did not
    diverge (columns named by the center)."""
    local = results[results["Test"].str.startswith("client_test") & (results["status"] != "diverged")].copy()
    local["site"] = local["Test"].str.removeprefix("client_test_").astype(int)
    table = local.groupby(["Method", "site"])["Metric"].mean().unstack("site")
    names = list(getattr(get_constants(dataset), "CENTER_NAMES", []) or [])
    table.columns = [f"{k}: {names[k]}" if k < len(names) else str(k) for k in table.columns]
    return table.loc[method_order(table.index)]


def plot_sites(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """``sites_figure`` written to ``path``."""
    return _save(sites_figure(tables), path)


def sites_figure(tables: dict[str, pd.DataFrame]):
    """A heatmap per dataset: methods (rows) x sites (columns), each cell the mean metric written in it."""
    plt = _pyplot()
    width = [max(3.0, 1.1 * t.shape[1] + 2.5) for t in tables.values()]
    height = max(2.5, 0.38 * max(t.shape[0] for t in tables.values()) + 1.6)
    fig, axes = plt.subplots(
        1, len(tables), figsize=(sum(width), height), squeeze=False, gridspec_kw={"width_ratios": width}
    )
    for ax, (dataset, table) in zip(axes[0], tables.items()):
        image = ax.imshow(
            values := table.to_numpy(dtype=float),
            cmap="viridis",
            vmin=0.0,
            vmax=max(1.0, float(table.max().max())),
            aspect="auto",
        )
        for (i, j), value in np.ndenumerate(values):
            text = "-" if math.isnan(value) else f"{value:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if value < 0.6 else "black")
        ax.set_xticks(range(table.shape[1]), table.columns, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(
            range(table.shape[0]), [m.replace(" Training", "").replace("100", "") for m in table.index], fontsize=8
        )
        ax.set_title(f"{dataset}: {get_constants(dataset).METRIC_NAME.replace('_', ' ')} per site", fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def _dp_section(dataset: str, results: pd.DataFrame, reference_dir, png: Path) -> tuple[pd.DataFrame, str]:
    from flamby_flare.benchmark.dp_report import compare_dp, dp_markdown, plot_dp, summarize_dp

    table = compare_dp(dataset, summarize_dp(results), reference_dir)
    plot_dp(table, png, f"{dataset}: DP-SGD at every site, FedAvg")
    return table, (
        f"\n## DP experiment: {dataset}\n\nDP-SGD at every site; the noise is set for each site's exact number "
        "of steps (rounds x local updates at sample rate batch / n_site). Epsilon spent: the largest over the "
        f"sites, mean over seeds.\n\n{dp_markdown(table)}\n\n![DP {dataset}]({png.name})\n"
    )


def _perso_section(dataset: str, results: pd.DataFrame, reference_dir, png: Path) -> tuple[pd.DataFrame, str]:
    from flamby_flare.benchmark.perso_report import compare_perso, per_site, perso_markdown, plot_perso, summarize_perso

    table = compare_perso(dataset, summarize_perso(results), reference_dir)
    plot_perso(per_site(results), dataset, png)
    return table, (
        f"\n## Personalization: {dataset}\n\nGlobal: the final federated model on each site's test set; "
        "personalized: each site's own model on it. Mean over sites per seed, mean ± sd over seeds.\n\n"
        f"{perso_markdown(table)}\n\n![personalization {dataset}]({png.name})\n"
    )


# Experiments beside the benchmark: results folder suffix -> its report section (table, markdown; draws the PNG)
_EXPERIMENTS = {"dp": _dp_section, "perso": _perso_section}


def write_report(results_dir: str | Path, reference_dir: str | Path | None = None) -> dict[str, Path]:
    """Write report.md into ``results_dir``, with report.csv and report.png for the benchmark, report_dp_<dataset>.png
    (+ report_dp.csv) for DP experiments (``<dataset>_dp`` folders) and report_perso_<dataset>.png (+ report_perso.csv)
    for personalization experiments (``<dataset>_perso``); returns their paths."""
    results_dir = Path(results_dir)
    found = sorted(results_dir.glob("*/results.csv"))
    if not found:
        raise FlambyFlareError(f"no <dataset>/results.csv under {results_dir}: run `flamby-flare benchmark` first")
    main = [p for p in found if not p.parent.name.endswith(tuple(f"_{name}" for name in _EXPERIMENTS))]
    source = (
        f"FLamby's result CSVs in {reference_dir}"
        if reference_dir
        else "FLamby's published results (summarized in flamby_flare.benchmark.published)"
    )
    text = f"# flamby-flare benchmark vs FLamby\n\nReference: {source}. In band: |difference| <= max(FLamby sd, {MIN_BAND}).\n"
    paths = {"md": results_dir / "report.md"}
    if main:
        results = {p.parent.name: pd.read_csv(p) for p in main}
        tables = {name: compare(name, summarize(frame), reference_dir) for name, frame in results.items()}
        full = pd.concat(tables.values())
        paths.update(
            csv=results_dir / "report.csv", png=results_dir / "report.png", sites_png=results_dir / "report_sites.png"
        )
        text += (
            "\n" + to_markdown(full) + "\n\n![benchmark](report.png)\n\nPer site (mean over seeds), method x site:\n\n"
            "![per site](report_sites.png)\n"
        )
        full.rename_axis("method").reset_index().to_csv(paths["csv"], index=False)
        plot(tables, paths["png"])
        plot_sites({name: per_site_means(frame, name) for name, frame in results.items()}, paths["sites_png"])
        if plot_traffic(tables, results_dir / "report_traffic.png") is not None:
            paths["traffic_png"] = results_dir / "report_traffic.png"
            text += "\nAccuracy against communication (bytes per site and round):\n\n![traffic](report_traffic.png)\n"
    for name, section in _EXPERIMENTS.items():
        tables = []
        for p in found:
            if not p.parent.name.endswith(f"_{name}") or (results := pd.read_csv(p)).empty:
                continue
            dataset = p.parent.name[: -len(name) - 1]
            png = paths[f"{name}_{dataset}"] = results_dir / f"report_{name}_{dataset}.png"
            table, markdown = section(dataset, results, reference_dir, png)
            tables.append(table)
            text += markdown
        if tables:
            paths[f"{name}_csv"] = results_dir / f"report_{name}.csv"
            pd.concat(tables).to_csv(paths[f"{name}_csv"], index=False)
    paths["md"].write_text(text)
    return paths
