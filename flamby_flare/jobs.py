"""The job folders under ``jobs/``: generated here, committed, and checked against this generator by the tests.

A job ``jobs/<dataset>_<strategy>`` runs with ``nvflare simulator jobs/<dataset>_<strategy> -w WS`` and no
other flag: its deploy map names the dataset's sites, so the simulator starts all of them. Each app has a
``custom/`` folder (a README) so NVFlare treats it as bring-your-own-code and does not apply its class
allow-list to the flamby-flare classes, which come from the installed package.
"""

from __future__ import annotations

import json
from pathlib import Path

from flamby_flare.datasets import get_dataset
from flamby_flare.sites import expected_sites

# FLamby's benchmark hyperparameters per (dataset, strategy): reference §3 (client SGD lr, 100 updates).
STRATEGY_ARGS: dict[str, dict[str, dict]] = {
    "fedavg": {
        "fed_heart_disease": {"learning_rate": 0.001},
        "fed_tcga_brca": {"learning_rate": 0.1},
    },
}
STRATEGY_CLASSES = {"fedavg": "controllers.FedAvg"}
NUM_UPDATES = 100
TRAIN_TIMEOUT_S = 600
VALIDATE_TIMEOUT_S = 300
# NVFlare polls every 2 s (server) and 0.5 s (sites) by default; a FLamby round is often shorter than that.
# 0.1 s: 10 polls a second per site, cheap for a real server (benchmarks/simulator_overhead.py).
TASK_REQUEST_INTERVAL_S = 0.1
TASK_FETCH_INTERVAL_S = 0.1
CUSTOM_README = """\
This folder is intentionally (almost) empty. The job's classes (`controllers.*`, `executors.*`) come from
the installed `flamby-flare` package; the presence of `custom/` makes NVFlare treat the app as
bring-your-own-code, so its class allow-list does not reject them. Regenerate jobs with `flamby-flare jobs`.
"""


def job_name(dataset: str, strategy: str) -> str:
    return f"{dataset}_{strategy}"


def job_files(dataset: str, strategy: str) -> dict[str, str]:
    """Relative path -> file content of the job folder."""
    module = get_dataset(dataset)
    if strategy not in STRATEGY_CLASSES or dataset not in STRATEGY_ARGS[strategy]:
        raise ValueError(f"no job settings for strategy {strategy!r} on {dataset!r}")
    sites = expected_sites(module.NUM_CLIENTS)
    name = job_name(dataset, strategy)
    meta = {"name": name, "resource_spec": {}, "min_clients": len(sites), "deploy_map": {"app": ["server", *sites]}}
    controller_args = {
        "dataset": dataset,
        "num_rounds": module.get_nb_max_rounds(NUM_UPDATES),
        "num_updates": NUM_UPDATES,
        "batch_size": module.BATCH_SIZE,
        **STRATEGY_ARGS[strategy][dataset],
        "train_timeout": TRAIN_TIMEOUT_S,
        "validate_timeout": VALIDATE_TIMEOUT_S,
    }
    server = {
        "format_version": 2,
        "server": {"task_request_interval": TASK_REQUEST_INTERVAL_S},
        "task_data_filters": [],
        "task_result_filters": [],
        "components": [],
        "workflows": [{"id": "controller", "path": STRATEGY_CLASSES[strategy], "args": controller_args}],
    }
    client = {
        "format_version": 2,
        "default_task_fetch_interval": TASK_FETCH_INTERVAL_S,
        "executors": [
            {
                "tasks": ["train", "validate"],
                "executor": {"id": "executor", "path": "executors.FlambySiteExecutor", "args": {"dataset": dataset}},
            }
        ],
        "task_data_filters": [],
        "task_result_filters": [],
        "components": [],
    }
    dump = lambda obj: json.dumps(obj, indent=2) + "\n"  # noqa: E731
    return {
        "meta.json": dump(meta),
        "app/config/config_fed_server.json": dump(server),
        "app/config/config_fed_client.json": dump(client),
        "app/custom/README.md": CUSTOM_README,
    }


def all_jobs() -> list[tuple[str, str]]:
    return [(dataset, strategy) for strategy, per in STRATEGY_ARGS.items() for dataset in per]


def write_job(dataset: str, strategy: str, jobs_dir: str | Path) -> Path:
    folder = Path(jobs_dir) / job_name(dataset, strategy)
    for rel, content in job_files(dataset, strategy).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return folder
