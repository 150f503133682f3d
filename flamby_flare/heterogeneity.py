"""``flamby-flare heterogeneity NAME``: how the sites' data differ, as in Figure 1 of FLamby's paper.

Per dataset kind, a figure of the per-site distributions and the tests of their differences:

- tabular (Fed-Heart-Disease, Fed-Synthetic): histograms of the features with the most distinct values
  (heart: not normalized) and the class shares per site; Kruskal-Wallis H tests per feature across the
  sites (scipy) and a chi-square test of the class counts;
- survival (Fed-TCGA-BRCA): Kaplan-Meier curves per site with a multivariate log-rank test and pairwise
  log-rank tests (lifelines);
- images: the voxel, pixel (per colour for Fed-ISIC2019) or tile-feature (Fed-Camelyon16) intensity
  histograms per site over a sample of each site's train images, with pairwise two-sample
  Kolmogorov-Smirnov tests (scipy).

It reads every center's train set, so it runs where the whole dataset is (the simulator's machine, a
researcher's copy), not across a federation: nothing of it is part of a job.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from flamby_flare.datasets import get_dataset

TABULAR = ("fed_heart_disease", "fed_synthetic")
SURVIVAL = ("fed_tcga_brca",)
IMAGES_PER_SITE = 12  # a sample of each site's train images
VALUES_PER_SITE = 20_000  # intensities drawn from them
FEATURES_SHOWN = 5


def _centers(module, folder: Path) -> list:
    options = {"normalize": False} if module.SOURCE.name == "fed_heart_disease" else {}  # raw values
    return [module.FedClass(center=c, train=True, data_path=folder, **options) for c in range(int(module.NUM_CLIENTS))]


def _tabular(module, sets: list, fig_axes) -> list[dict]:
    from scipy.stats import chi2_contingency, kruskal

    X = [d.X.numpy() for d in sets]
    names = list(getattr(module, "FEATURE_NAMES", [f"x{j}" for j in range(X[0].shape[1])]))
    distinct = [len(np.unique(np.concatenate([x[:, j] for x in X]))) for j in range(len(names))]
    shown = sorted(sorted(range(len(names)), key=lambda j: -distinct[j])[:FEATURES_SHOWN])
    rows = []
    for ax, j in zip(fig_axes, shown):
        values = [x[:, j] for x in X]
        bins = np.histogram_bin_edges(np.concatenate(values), bins=20)
        for k, v in enumerate(values):
            ax.hist(v, bins=bins, density=True, histtype="step", linewidth=1.4, label=_site(k, module))
        ax.set_title(names[j], fontsize=9)
        statistic, p = kruskal(*values)
        rows.append({"test": "Kruskal-Wallis", "what": names[j], "sites": "all", "statistic": statistic, "p_value": p})
    labels = [d.y.numpy()[:, 0].astype(int) for d in sets]
    classes = sorted(set(np.concatenate(labels)))
    counts = np.array([[int((y == c).sum()) for c in classes] for y in labels])
    ax = fig_axes[len(shown)]
    bottom = np.zeros(len(sets))
    for i, c in enumerate(classes):
        share = counts[:, i] / counts.sum(axis=1)
        ax.bar([_site(k, module) for k in range(len(sets))], share, bottom=bottom, label=f"class {c}")
        bottom += share
    ax.set_title("class shares", fontsize=9)
    ax.tick_params(axis="x", rotation=45, labelsize=7)
    ax.legend(fontsize=7)
    statistic, p, _, _ = chi2_contingency(counts)
    rows.append({"test": "chi-square", "what": "class counts", "sites": "all", "statistic": statistic, "p_value": p})
    return rows


def _survival(module, sets: list, ax) -> list[dict]:
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test, pairwise_logrank_test

    events = np.concatenate([d.y.numpy()[:, 0] for d in sets])
    times = np.concatenate([d.y.numpy()[:, 1] for d in sets])
    groups = np.concatenate([[k] * len(d) for k, d in enumerate(sets)])
    for k in range(len(sets)):
        mask = groups == k
        KaplanMeierFitter(label=f"{_site(k, module)} (n={mask.sum()})").fit(
            times[mask], events[mask]
        ).plot_survival_function(ax=ax, ci_show=False)
    ax.set_xlabel("days")
    ax.set_ylabel("survival probability")
    overall = multivariate_logrank_test(times, groups, events)
    rows = [
        {
            "test": "log-rank",
            "what": "survival",
            "sites": "all",
            "statistic": overall.test_statistic,
            "p_value": overall.p_value,
        }
    ]
    pairwise = pairwise_logrank_test(times, groups, events).summary
    for (a, b), r in pairwise.iterrows():
        rows.append(
            {
                "test": "log-rank",
                "what": "survival",
                "sites": f"{_site(int(a), module)} vs {_site(int(b), module)}",
                "statistic": r["test_statistic"],
                "p_value": r["p"],
            }
        )
    ax.set_title(f"Kaplan-Meier per site (log-rank p = {overall.p_value:.2g})", fontsize=10)
    return rows


def _intensities(dataset, rng: np.random.Generator, images: int) -> np.ndarray:
    """Values of a sample of ``images`` of the dataset's images, channels last flattened: (values, channels)."""
    torch.manual_seed(0)  # the random crops some datasets take
    picks = rng.choice(len(dataset), size=min(images, len(dataset)), replace=False)
    images = [dataset[int(i)][0].float() for i in sorted(picks)]
    channels = images[0].shape[0] if images[0].dim() == 3 and images[0].shape[0] == 3 else 1
    values = np.concatenate([img.reshape(channels, -1).numpy().T for img in images])
    return values[rng.choice(len(values), size=min(VALUES_PER_SITE, len(values)), replace=False)]


def _images(module, sets: list, axes, images: int) -> list[dict]:
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    values = [_intensities(d, rng, images) for d in sets]
    channels = values[0].shape[1]
    names = ["red", "green", "blue"] if channels == 3 else ["intensity"]
    rows = []
    for c, (ax, name) in enumerate(zip(axes, names)):
        bins = np.histogram_bin_edges(np.concatenate([v[:, c] for v in values]), bins=40)
        for k, v in enumerate(values):
            ax.hist(v[:, c], bins=bins, density=True, histtype="step", linewidth=1.4, label=_site(k, module))
        ax.set_title(f"{name} per site", fontsize=9)
        ax.set_xlabel("value, as the loader gives it", fontsize=8)
        for a, b in itertools.combinations(range(len(sets)), 2):
            result = ks_2samp(values[a][:, c], values[b][:, c])
            rows.append(
                {
                    "test": "Kolmogorov-Smirnov",
                    "what": name,
                    "sites": f"{_site(a, module)} vs {_site(b, module)}",
                    "statistic": result.statistic,
                    "p_value": result.pvalue,
                }
            )
    return rows


def _site(center: int, module) -> str:
    names = getattr(module, "CENTER_NAMES", ())
    return f"site-{center + 1}" + (
        f" {names[center]}" if center < len(names) and not str(names[center]).startswith("center") else ""
    )


def heterogeneity(
    name: str, data_root: str | os.PathLike | None, out: str | os.PathLike, images: int = IMAGES_PER_SITE
) -> tuple[Path, Path, pd.DataFrame]:
    """Draw ``out/heterogeneity_<name>.png`` and write the tests to ``out/heterogeneity_<name>.csv``
    (``images``: the sample of each site's train images, for an image dataset)."""
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        from flamby_flare.errors import FlambyFlareError

        raise FlambyFlareError(f"--images must be an integer >= 1, got {images!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flamby_flare.download import locate_dataset
    from flamby_flare.paths import dataset_dir

    module = get_dataset(name)
    folder = locate_dataset(module.SOURCE, dataset_dir(name, data_root))
    sets = _centers(module, folder)
    if name in SURVIVAL:
        fig, ax = plt.subplots(figsize=(8, 5))
        rows, axes = _survival(module, sets, ax), [ax]
    elif name in TABULAR:
        panels = min(FEATURES_SHOWN, sets[0].X.shape[1]) + 1
        columns = min(3, panels)
        fig, axes = plt.subplots(
            math.ceil(panels / columns),
            columns,
            figsize=(3.6 * columns, 3.0 * math.ceil(panels / columns)),
            squeeze=False,
        )
        axes = list(axes.flat)
        for ax in axes[panels:]:
            ax.axis("off")
        rows = _tabular(module, sets, axes)
    else:
        channels = 3 if name == "fed_isic2019" else 1
        fig, axes = plt.subplots(1, channels, figsize=(5 * channels, 3.8), squeeze=False)
        axes = list(axes[0])
        rows = _images(module, sets, axes, images)
    handles, labels = axes[0].get_legend_handles_labels()
    if name not in SURVIVAL:
        fig.legend(handles, labels, loc="center right", fontsize=8, bbox_to_anchor=(1.0, 0.5))
    significant = sum(r["p_value"] < 0.05 for r in rows)
    fig.suptitle(
        f"{module.SOURCE.title}: per-site distributions ({significant} of {len(rows)} tests at p < 0.05)", fontsize=11
    )
    fig.tight_layout(rect=(0, 0, 0.84 if name not in SURVIVAL else 1, 0.95))  # the site legend on the right
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    png, csv = out / f"heterogeneity_{name}.png", out / f"heterogeneity_{name}.csv"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    table = pd.DataFrame(rows, columns=["test", "what", "sites", "statistic", "p_value"])
    table.to_csv(csv, index=False)
    return png, csv, table


def describe(table: pd.DataFrame) -> str:
    """The tests as a text table."""
    lines = [f"{'test':<20} {'what':<14} {'sites':<34} {'statistic':>10} {'p':>10}"]
    for r in table.itertuples():
        p = "nan" if math.isnan(r.p_value) else f"{r.p_value:.3g}"
        lines.append(f"{r.test:<20} {str(r.what):<14} {r.sites:<34} {r.statistic:>10.4g} {p:>10}")
    return "\n".join(lines)
