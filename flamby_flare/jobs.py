"""The job folders under ``jobs/``: generated here, committed, and checked against this generator by the tests.

A job ``jobs/<dataset>_<strategy>`` runs with NVFlare's own commands as typed (``nvflare simulator
jobs/<dataset>_<strategy>``, ``nvflare job submit -j ...``) and with ``flamby-flare simulator``: its deploy map
names the dataset's sites, so the simulator starts all of them.

Its classes come from the installed package. Its ``app/custom/`` folder holds no code, only ``CUSTOM_README``:
it makes NVFlare treat the job as bringing its own code ("BYOC"), which NVFlare admits without a class
allow-list, and which POC and production sites govern by their authorization policy (the ``byoc`` right).
For a site that forbids custom code, ``custom_code=False`` (``flamby-flare jobs --no-custom-code``) writes the
same job without that folder: that site's class allow-list (``flamby_flare.site_policy``) then admits it
class by class and refuses any other class the job would name (docs/security.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from flamby_flare.datasets import DATASETS, get_constants
from flamby_flare.hyperparameters import NUM_UPDATES, run_hyperparameters
from flamby_flare.paths import check_tracking_uri
from flamby_flare.sites import expected_sites
from flamby_flare.strategies.base import get_strategy, strategy_names

# NVFlare 2.9 streams every NumPy array through a download transaction (about 25 ms each way, even for the 14
# numbers of heart's model); for the tabular datasets' kilobyte models the arrays travel inline in the task
# (NVFlare's `np_download_chunk_size` 0), the image models' megabytes keep NVFlare's streaming.
INLINE_ARRAYS = ("fed_heart_disease", "fed_tcga_brca")
# Seconds a train / validate task may take before the run fails: minutes for tabular data, an hour for images.
TIMEOUTS_S = {"fed_heart_disease": (600, 300), "fed_tcga_brca": (600, 300), "fed_synthetic": (600, 300)}
DEFAULT_TIMEOUTS_S = (3600, 1800)
# NVFlare polls every 2 s (server) and 0.5 s (sites) by default; a FLamby round is often shorter than that.
# 0.1 s: 10 polls a second per site, cheap for a real server (benchmarks/simulator_overhead.py).
TASK_REQUEST_INTERVAL_S = 0.1
TASK_FETCH_INTERVAL_S = 0.1
# A starting site asks the server whether the run is up, each ask waiting NVFlare's default 2 s for the reply, for
# at most 60 s. 50 simulator sites starting at once on 2 cores answered slower than that for a minute, and a site
# gave up (benchmarks/scaling.py); a slow hospital link can do the same. Longer waits cost nothing when it is fast.
RUNNER_SYNC_TIMEOUT_S = 10.0
MAX_RUNNER_SYNC_TIMEOUT_S = 300.0


# Sample-level DP-SGD of the committed DP job: FLamby's DP example's clipping norm, and a budget a
# hospital would accept for 30-200 patients per site (delta well below 1 / n).
DP_JOB_SETTINGS = {"max_grad_norm": 1.1, "target_epsilon": 1.0, "delta": 1e-3}
# Variants committed beside the (dataset, strategy) jobs: name -> (dataset, strategy, job_files arguments).
EXTRA_JOBS = {
    "fed_heart_disease_fedavg_dp": ("fed_heart_disease", "fedavg", {"dp_sgd": DP_JOB_SETTINGS}),
    "fed_heart_disease_fedavg_he": ("fed_heart_disease", "fedavg", {"homomorphic_encryption": True}),
}


def job_name(
    dataset: str,
    strategy: str,
    dp_sgd: dict | None = None,
    client_dp: dict | None = None,
    personalization: dict | None = None,
) -> str:
    """``<dataset>_<strategy>``, then ``_<personalization method>``, ``_dp`` for DP-SGD, ``_cdp`` for client-level DP."""
    return (
        f"{dataset}_{strategy}"
        + (f"_{personalization['method']}" if personalization else "")
        + ("_dp" if dp_sgd else "")
        + ("_cdp" if client_dp else "")
    )


# Metric streams (controllers/tracking.py): name -> the server's receiver component (none: no stream written).
TRACKING = {
    "tensorboard": {"id": "tensorboard", "path": "controllers.tracking.TensorBoardReceiver", "args": {}},
    "mlflow": {"id": "mlflow", "path": "controllers.mlflow_tracking.MLflowReceiver", "args": {}},
    "none": None,
}


QUANTIZATIONS = ("float16", "blockwise8")  # executors.quantization's (which imports bitsandbytes)
QUANTIZATION_SUFFIX = {"float16": "_fp16", "blockwise8": "_q8"}
# The classes a job names besides the strategy's controller (``controllers.<Label>``) and the receivers of TRACKING.
EXECUTOR = "executors.FlambySiteExecutor"
MESSAGE_SIZE = "controllers.traffic.MessageSize"  # the server's traffic measure, a filter both ways
QUANTIZER, DEQUANTIZER = "executors.quantization.Quantizer", "executors.quantization.Dequantizer"
ENCRYPTOR, DECRYPTOR = "executors.homomorphic.Encryptor", "executors.homomorphic.Decryptor"
CLIENT_DP_FILTER = "privacy.ClientLevelDP"  # the sites' task-result filter of client-level DP


def component_classes() -> list[str]:
    """Every class a job written here may name (what a site's class allow-list admits, ``site_policy``): each
    registered strategy's controller, plug-ins included, the executor, the filters and the receivers."""
    from flamby_flare.strategies.base import get_strategy, strategy_names

    return sorted(
        {f"controllers.{get_strategy(name).label}" for name in strategy_names()}
        | {EXECUTOR, MESSAGE_SIZE, QUANTIZER, DEQUANTIZER, ENCRYPTOR, DECRYPTOR, CLIENT_DP_FILTER}
        | {receiver["path"] for receiver in TRACKING.values() if receiver}
    )


# The one file of a job's app/custom/ folder (see the module docstring): its presence is NVFlare's BYOC mark.
CUSTOM_README = "app/custom/README.md"
CUSTOM_README_TEXT = """\
This folder holds no code. Its presence makes NVFlare treat the job as bringing its own code ("BYOC"), so
`nvflare simulator` and `nvflare job submit` run the job without a class allow-list prepared for it. The
job's classes (controllers.*, executors.*, privacy.*) come from the installed flamby-flare package.

A POC or production site decides whether it runs such jobs with its authorization policy (NVFlare's "byoc"
right, local/authorization.json). A site that forbids custom code runs the same job written without this
folder, `flamby-flare jobs --no-custom-code`, which its class allow-list admits class by class
(`flamby-flare site-policy KIT`).
"""


def _filter(path: str, **args) -> dict:
    return {"path": path, "args": args}


def _message_size(direction: str) -> dict:
    """The server's ``controllers.traffic.MessageSize`` filter for ``direction``."""
    return _filter(MESSAGE_SIZE, direction=direction)


def job_files(
    dataset: str,
    strategy: str,
    seed: int | None = None,
    num_rounds: int | None = None,
    client_dp: dict | None = None,
    tracking: str = "tensorboard",
    tracking_uri: str | None = None,
    quantization: str | None = None,
    homomorphic_encryption: bool = False,
    custom_code: bool = True,
    **arguments,
) -> dict[str, str]:
    """Relative path -> file content of the job folder: FLamby's settings, or a variant of them.

    ``arguments`` are routed by name: the sites' settings (``executors.settings.SiteSettings``' fields:
    ``data_root``, ``dp_sgd``, ``precision``, ``num_workers``, ``dataset_args``, ``model_args``, ...) go to
    the executor, the others (``controllers.settings.RunSettings``' fields and the strategy's
    hyperparameters, e.g. ``learning_rate=0.03``, ``mu=0.1``) override the controller's. ``client_dp``: the
    sites' train results go through ``privacy.ClientLevelDP`` (its arguments). ``tracking``: where the run's
    metrics stream (``TRACKING``: TensorBoard event files or an MLflow store in the run directory, or none);
    ``tracking_uri``: with ``mlflow``, an MLflow tracking server's http(s) address instead. ``quantization``
    (``QUANTIZATIONS``): the train task's model and results cross the wire quantized (``executors.quantization``;
    the job name gets ``_fp16`` or ``_q8``). ``homomorphic_encryption``: secure aggregation, the sites encrypt
    their results and the server aggregates ciphertexts (``flamby_flare.homomorphic``; the job name gets
    ``_he``; strategies with a ``he_refusal`` are refused). ``custom_code``: the job has its ``app/custom/``
    folder (``CUSTOM_README``, NVFlare's BYOC mark; False: for sites that forbid custom code). Everything is checked here,
    as the job will check it at start: a bad value is refused in one line naming it.
    """
    from controllers.settings import split_arguments
    from executors.settings import SiteSettings

    constants = get_constants(dataset)
    if tracking not in TRACKING:
        raise ValueError(f"tracking must be one of {', '.join(TRACKING)}, got {tracking!r}")
    check_tracking_uri(tracking_uri)
    if tracking_uri is not None and tracking != "mlflow":
        raise ValueError(f"tracking_uri is for tracking='mlflow', not {tracking!r}")
    receiver = TRACKING[tracking] and {
        **TRACKING[tracking],
        "args": {"tracking_uri": tracking_uri} if tracking_uri else {},
    }
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    quantizing = [_filter(QUANTIZER, quantization_type=quantization)] if quantization else []
    dequantizing = [_filter(DEQUANTIZER)] if quantization else []
    strategy_class = get_strategy(strategy)  # an unknown name is refused, listing the known ones
    for flag, value in (("homomorphic_encryption", homomorphic_encryption), ("custom_code", custom_code)):
        if not isinstance(value, bool):
            raise ValueError(f"{flag} must be true or false, got {value!r}")
    if homomorphic_encryption and strategy_class.he_refusal:
        raise ValueError(f"homomorphic encryption cannot serve {strategy}: {strategy_class.he_refusal}")
    if homomorphic_encryption and quantization:
        raise ValueError("quantization and homomorphic encryption do not combine: a ciphertext cannot be quantized")
    encrypting = [_filter(ENCRYPTOR)] if homomorphic_encryption else []
    decrypting = [_filter(DECRYPTOR)] if homomorphic_encryption else []
    site_names = set(SiteSettings.names()) - {"dataset"}
    site_args = {k: v for k, v in arguments.items() if k in site_names and v is not None}
    SiteSettings.from_arguments({"dataset": dataset, **site_args}, "site settings")
    controller_args = {k: v for k, v in arguments.items() if k not in site_names}
    dp_sgd = site_args.get("dp_sgd")
    if controller_args.get("personalization") and strategy_class.personal_state:
        raise ValueError(f"{strategy} keeps personal models of its own: personalization cannot be added to it")
    if dp_sgd and strategy_class.dp_sgd_refusal:
        raise ValueError(
            f"DP-SGD cannot serve {strategy}: {strategy_class.dp_sgd_refusal}; use client_dp or another strategy"
        )
    filters = []
    if client_dp:
        from privacy.client_dp import ClientDPConfig

        if strategy_class.client_dp_refusal:
            raise ValueError(
                f"client-level DP cannot serve {strategy}: {strategy_class.client_dp_refusal}; "
                "use dp_sgd or another strategy"
            )
        ClientDPConfig.from_dict(client_dp)
        filters = [_filter(CLIENT_DP_FILTER, **client_dp)]
    generated = hasattr(constants, "DEFAULT_NUM_CLIENTS")  # its centers are those generated: deployed to @ALL
    sites = ["@ALL"] if generated else expected_sites(constants.NUM_CLIENTS)
    train_timeout, validate_timeout = TIMEOUTS_S.get(dataset, DEFAULT_TIMEOUTS_S)
    # NVFlare aborts a job once fewer than meta's min_clients sites are alive: the controller's minimum
    min_clients = controller_args.get("min_clients") or (1 if generated else len(sites))
    name = (
        job_name(dataset, strategy, dp_sgd, client_dp, controller_args.get("personalization"))
        + QUANTIZATION_SUFFIX.get(quantization, "")
        + ("_he" if homomorphic_encryption else "")
    )
    meta = {
        "name": name,
        "resource_spec": {},
        "min_clients": min_clients,
        "deploy_map": {"app": sites if generated else ["server", *sites]},
    }
    controller_args = {
        "dataset": dataset,
        # a generated dataset's round budget follows its size: the controller sets it at run time
        **(
            {}
            if generated and num_rounds is None
            else {"num_rounds": num_rounds if num_rounds is not None else constants.get_nb_max_rounds(NUM_UPDATES)}
        ),
        "num_updates": NUM_UPDATES,
        "batch_size": constants.BATCH_SIZE,
        **run_hyperparameters(dataset, strategy),
        **({"seed": seed} if seed is not None else {}),
        **({"homomorphic_encryption": True} if homomorphic_encryption else {}),
        "train_timeout": train_timeout,
        "validate_timeout": validate_timeout,
        **controller_args,
    }
    split_arguments(
        strategy_class,
        dataset,
        {k: v for k, v in controller_args.items() if k != "dataset"},
        f"controllers.{strategy_class.label}",
    )
    inline = {"np_download_chunk_size": 0} if dataset in INLINE_ARRAYS else {}
    server = {
        "format_version": 2,
        **inline,
        "server": {"task_request_interval": TASK_REQUEST_INTERVAL_S},
        "task_data_filters": [{"tasks": ["train"], "filters": [*quantizing, _message_size("task_data")]}],
        "task_result_filters": [{"tasks": ["train"], "filters": [_message_size("task_result"), *dequantizing]}],
        "components": [receiver] if receiver else [],
        "workflows": [{"id": "controller", "path": f"controllers.{strategy_class.label}", "args": controller_args}],
    }
    executor_args = {"dataset": dataset, **site_args}
    client = {
        "format_version": 2,
        **inline,
        "default_task_fetch_interval": TASK_FETCH_INTERVAL_S,
        "runner_sync_timeout": RUNNER_SYNC_TIMEOUT_S,
        "max_runner_sync_timeout": MAX_RUNNER_SYNC_TIMEOUT_S,
        "executors": [
            {
                "tasks": ["train", "validate"],
                "executor": {"id": "executor", "path": EXECUTOR, "args": executor_args},
            }
        ],
        "task_data_filters": ([{"tasks": ["train"], "filters": dequantizing}] if dequantizing else [])
        + ([{"tasks": ["train", "validate"], "filters": decrypting}] if decrypting else []),
        "task_result_filters": (
            [{"tasks": ["train"], "filters": filters + quantizing + encrypting}]
            if filters or quantizing or encrypting
            else []
        ),
        "components": [],
    }
    dump = lambda obj: json.dumps(obj, indent=2) + "\n"  # noqa: E731
    return {
        "meta.json": dump(meta),
        "app/config/config_fed_server.json": dump(server),
        "app/config/config_fed_client.json": dump(client),
        **({CUSTOM_README: CUSTOM_README_TEXT} if custom_code else {}),
    }


def all_jobs() -> list[tuple[str, str]]:
    return [(dataset, strategy) for dataset in DATASETS for strategy in strategy_names()]


def committed_jobs() -> dict[str, dict[str, str]]:
    """Every job folder under ``jobs/``: name -> its files (the 56 pairs and ``EXTRA_JOBS``)."""
    jobs = {job_name(d, s): job_files(d, s) for d, s in all_jobs()}
    jobs.update({name: job_files(d, s, **variant) for name, (d, s, variant) in EXTRA_JOBS.items()})
    return jobs


def write_files(folder: str | Path, files: dict[str, str]) -> Path:
    """Write a job folder from ``job_files``-style content. A job without custom code written over one with it
    loses the BYOC mark (a folder holding anything else is refused: the job would stay BYOC)."""
    folder = Path(folder)
    custom = folder / Path(CUSTOM_README).parent
    if CUSTOM_README not in files and custom.exists():
        (folder / CUSTOM_README).unlink(missing_ok=True)
        if any(custom.iterdir()):
            raise ValueError(f"{custom} holds files: a job without custom code cannot be written there")
        custom.rmdir()
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(content)
    return folder


def write_job(dataset: str, strategy: str, jobs_dir: str | Path, **variant) -> Path:
    """Write ``jobs_dir/<job name>``; ``variant`` as for ``job_files``."""
    files = job_files(dataset, strategy, **variant)
    return write_files(Path(jobs_dir) / json.loads(files["meta.json"])["name"], files)
