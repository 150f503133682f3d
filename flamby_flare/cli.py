"""The ``flamby-flare`` command line: download, verify, preprocess, simulator, site-policy, benchmark, report,
results, jobs, poc.

One spelling everywhere: ``--dataset NAME`` (download, verify and preprocess also take it positionally),
``--strategy NAME ...``, ``--seed N ...``, ``--dp-epsilon`` / ``--dp-delta``; the plural spellings of earlier
versions (``--strategies``, ``--seeds``, ``--dp-epsilons``, ``--dp-deltas``) stay as aliases. A bad argument is
one line, ``error: ...``, exit 2."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

from flamby_flare.errors import FlambyFlareError

DATA_ROOT_HELP = "data root (default: $FLAMBY_FLARE_DATA, else ~/.cache/flamby_flare)"
DESCRIPTION = (
    "flamby-flare: the FLamby cross-silo healthcare federated-learning benchmark on NVIDIA FLARE. "
    "Each command's --help tells more."
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors naming the command's --help."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _dataset_name(value: str) -> str:
    from flamby_flare.datasets import DATASETS

    if value not in DATASETS:
        raise argparse.ArgumentTypeError(f"unknown dataset {value!r}; known datasets: {', '.join(DATASETS)}")
    return value


def _add_dataset(
    parser: argparse.ArgumentParser, *, many: bool = False, positional: bool = False, help: str = "the dataset"
) -> None:
    """``--dataset NAME`` (``many``: one or more, repeatable); ``positional``: NAME also accepted without it."""
    from flamby_flare.datasets import DATASETS

    listing = f"one of {', '.join(DATASETS)}"
    if many:
        parser.add_argument(
            "--dataset", type=_dataset_name, nargs="+", action="extend", metavar="NAME", help=f"{help} ({listing})"
        )
        return
    parser.add_argument(
        "--dataset",
        type=_dataset_name,
        metavar="NAME",
        dest="dataset_option",
        required=not positional,
        help=f"{help} ({listing})",
    )
    if positional:
        parser.add_argument("dataset", type=_dataset_name, nargs="?", metavar="NAME", help="the same as --dataset NAME")


def _resolve_dataset(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """One dataset from ``--dataset`` or the positional NAME."""
    if not hasattr(args, "dataset_option"):
        return
    given = {v for v in (args.dataset_option, getattr(args, "dataset", None)) if v is not None}
    if len(given) != 1:
        parser.error(
            "give the dataset once: --dataset NAME" if given else "the following arguments are required: --dataset"
        )
    args.dataset = given.pop()


def _download(args: argparse.Namespace) -> None:
    from flamby_flare.datasets import get_constants
    from flamby_flare.download import download

    constants = get_constants(args.dataset)
    for center in args.center or []:
        if not 0 <= center < constants.NUM_CLIENTS:
            raise FlambyFlareError(
                f"--center must be one of {args.dataset}'s centers 0..{constants.NUM_CLIENTS - 1}, got {center}"
            )
    download(
        constants.SOURCE,
        data_root=args.data_root,
        mirror=args.mirror,
        centers=args.center,
        accept_new_checksums=args.accept_new_checksums,
    )
    _fetch_weights(args)


def _fetch_weights(args: argparse.Namespace) -> Path | None:
    """The dataset's ImageNet weights (``flamby_flare.pretrained``) under the data root, unless
    ``--no-pretrained`` or the dataset has none."""
    from flamby_flare.pretrained import WEIGHTS, fetch

    if args.no_pretrained or args.dataset not in WEIGHTS:
        return None
    return fetch(args.dataset, args.data_root, args.mirror, accept_other=args.accept_new_checksums)


def _simulator(args: argparse.Namespace) -> int:
    import tempfile

    from executors import simulator_forkserver
    from flamby_flare.capacity import check_capacity
    from flamby_flare.packages import check_not_shadowed, search_path
    from flamby_flare.simulator import command, failure_reason, job_sites, prepare_workspace, run

    check_not_shadowed(search_path(args.job))
    if args.threads is not None and args.threads < 1:
        raise FlambyFlareError(f"--threads must be >= 1, got {args.threads}")
    try:
        forked = simulator_forkserver.enabled()
    except ValueError as exc:
        raise FlambyFlareError(str(exc)) from None
    sites = job_sites(args.job)
    check_capacity(min(args.threads or sites, sites), f"simulator ({sites} sites)", fewer="-t", forked=forked)
    workspace = args.workspace or Path(tempfile.gettempdir()) / "flamby_flare" / "simulator" / args.job.resolve().name
    prepare_workspace(workspace)
    cmd = command(args.job, workspace, args.threads)
    print("[flamby-flare] " + " ".join(cmd[1:]), flush=True)
    try:
        code = run(cmd, workspace, env={"OMP_NUM_THREADS": "1", **os.environ})
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            "the simulator and every site process it started are stopped. Its completed rounds are checkpointed: "
            'to continue, run the job again with "resume": true in its controller\'s args (`flamby-flare jobs '
            "--resume` writes it so)"
        ) from None
    if code == 0 and (hint := _metric_streams(workspace / "server" / "simulate_job")):
        print(f"[flamby-flare] metrics per round: {hint}", flush=True)
    elif code != 0:  # the cause in one line, last, rather than NVFlare's "Could not start the Server App"
        reason = failure_reason(workspace) or f"the simulator exited {code}"
        print(f"error: {reason} (log: {workspace / 'server' / 'log.txt'})", file=sys.stderr)
    return code


def _site_policy(args: argparse.Namespace) -> None:
    from flamby_flare.site_policy import admit_project_classes, forbid_custom_code

    for kit in args.kits:
        if not kit.is_dir():
            raise FlambyFlareError(f"{kit} is not a folder (a participant's startup kit, or a simulator workspace)")
        print(admit_project_classes(kit / "local"))
        if args.forbid_custom_code:
            try:
                print(forbid_custom_code(kit / "local"))
            except (OSError, ValueError) as exc:
                raise FlambyFlareError(f"--forbid-custom-code: {exc}") from None


def _verify(args: argparse.Namespace) -> None:
    from flamby_flare.datasets import get_constants
    from flamby_flare.download import verify
    from flamby_flare.paths import dataset_dir

    source = get_constants(args.dataset).SOURCE
    folder = dataset_dir(args.dataset, args.data_root)
    print(f"{source.title} in {folder}: re-hashing every file")
    bad = verify(source, folder)
    if bad:
        raise FlambyFlareError(
            f"{len(bad)} file(s) of {args.dataset} failed verification ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}); run `{source.download_command}` to fetch them again"
        )
    print("all files verified")


def _preprocess(args: argparse.Namespace) -> None:
    from flamby_flare.datasets import get_dataset
    from flamby_flare.download import download

    module = get_dataset(args.dataset)
    if not hasattr(module, "preprocess"):
        print(f"{module.SOURCE.title} needs no preprocessing: it loads from its raw files")
        return
    options = {k: v for k, v in (("workers", args.workers), ("weights", args.weights)) if v is not None}
    accepted = inspect.signature(module.preprocess).parameters
    if unused := [f"--{k}" for k in options if k not in accepted]:
        raise FlambyFlareError(f"{args.dataset}'s preprocessing takes no {', '.join(unused)}")
    folder = download(
        module.SOURCE, data_root=args.data_root, mirror=args.mirror, accept_new_checksums=args.accept_new_checksums
    )
    weights = _fetch_weights(args)
    if "weights" in accepted and "weights" not in options and weights is not None:
        options["weights"] = weights  # the tile features from FLamby's ImageNet ResNet50
    print(f"preprocessing {module.SOURCE.title} into {folder / 'preprocessed'}")
    try:
        module.preprocess(folder, **options)
    except (ValueError, OSError) as exc:  # bad raw content: one line, the raw files stay
        raise FlambyFlareError(f"{module.SOURCE.title}: preprocessing failed: {exc}") from None


def _generate(args: argparse.Namespace) -> None:
    from flamby_flare.datasets.fed_synthetic.generator import generate
    from flamby_flare.paths import dataset_dir

    repartition = args.sample_repartition
    if repartition is not None and len(repartition) == 1:
        repartition = repartition[0]  # one number: a power law's exponent; several: per-center weights
    try:
        generate(
            dataset_dir("fed_synthetic", args.data_root),
            n_centers=args.centers,
            n_samples=args.samples,
            n_features=args.features,
            seed=args.seed,
            snr=args.snr,
            sample_repartition=repartition,
            noise_heterogeneity=args.noise_heterogeneity,
            features_heterogeneity=args.features_heterogeneity,
            label_heterogeneity=args.label_heterogeneity,
            n_clusters=args.clusters,
        )
    except ValueError as exc:
        raise FlambyFlareError(f"generate: {exc}") from None


def _heterogeneity(args: argparse.Namespace) -> None:
    from flamby_flare.heterogeneity import describe, heterogeneity
    from flamby_flare.paths import check_writable

    check_writable(args.out, "--out folder")  # before the work, not after it
    png, csv, table = heterogeneity(args.dataset, args.data_root, args.out, args.images)
    print(describe(table))
    print(f"written: {png}, {csv}")


def _poc_up(args: argparse.Namespace) -> None:
    from flamby_flare.capacity import check_capacity
    from flamby_flare.poc import Poc

    if args.sites >= 1:  # else Poc.prepare refuses it, naming --sites
        check_capacity(args.sites, f"poc up ({args.sites} sites)", poc=True, fewer="--sites")
    poc = Poc(args.workspace)
    poc.stop(grace=10)  # a previous POC of this workspace would hold the ports
    print(f"POC with {args.sites} sites at {poc.workspace}")
    poc.prepare(args.sites, heartbeat_timeout=args.heartbeat_timeout, he=args.he)
    poc.provision_data(args.dataset or ["fed_heart_disease"], args.mirror)
    poc.start(timeout=args.timeout)
    print(
        f"server and {args.sites} sites running; submit with `flamby-flare poc run JOB`, stop with `flamby-flare poc down`"
    )


def _poc_run(args: argparse.Namespace) -> None:
    from flamby_flare.poc import Poc, PocError
    from flamby_flare.results import format_table

    poc = Poc(args.workspace)
    tty = sys.stdout.isatty()
    last = [""]

    def progress(line: str) -> None:
        if tty:
            print("\r" + line.ljust(70), end="", flush=True)
        elif line.split()[2] != last[0]:  # one line per status change in logs
            print(line, flush=True)
        last[0] = line.split()[2]

    outcome = poc.run_job(args.job, timeout=args.timeout, out=args.out, progress=progress)
    if tty:
        print()
    if not outcome.ok:
        raise PocError(f"job {outcome.job_id} {outcome.status} after {outcome.seconds:.0f} s: {outcome.reason}")
    print(f"job {outcome.job_id} completed in {outcome.seconds:.1f} s; result in {outcome.result_dir}")
    if outcome.reason:  # the run finished, but NVFlare marked the job otherwise (a site lost mid-run)
        print(f"note: NVFlare marked the job {outcome.status} ({outcome.reason}); the run itself finished")
    if outcome.summary:
        print(format_table(json.loads(outcome.summary.read_text())))


def _poc_down(args: argparse.Namespace) -> None:
    import shutil

    from flamby_flare.poc import Poc

    poc = Poc(args.workspace)
    poc.stop()
    if args.clean:
        shutil.rmtree(poc.workspace, ignore_errors=True)
    print(f"POC at {poc.workspace} stopped" + (" and removed" if args.clean else ""))


def _results(args: argparse.Namespace) -> None:
    from flamby_flare.results import find_summaries, format_table

    for i, path in enumerate(find_summaries(args.path)):
        print(("\n" if i else "") + f"{path}\n" + format_table(json.loads(path.read_text())))
        if hint := _metric_streams(path.parent):
            print(f"metrics per round: {hint}")


def _metric_streams(run_dir: Path) -> str | None:
    """The command that shows the metric streams of the run whose results are in ``run_dir`` (a benchmark
    cell's: its parent's): TensorBoard's or MLflow's."""
    from flamby_flare.paths import METRIC_STREAMS_FOLDER, MLFLOW_STORE

    for d in (run_dir, run_dir.parent):
        if (d / METRIC_STREAMS_FOLDER).is_dir():
            return f"tensorboard --logdir {d / METRIC_STREAMS_FOLDER}"
        if (d / MLFLOW_STORE).is_file():
            return f"mlflow ui --backend-store-uri sqlite:///{(d / MLFLOW_STORE).resolve()}"
    return None


def _benchmark(args: argparse.Namespace) -> None:
    from flamby_flare.benchmark.runner import DPGrid, run_benchmark
    from flamby_flare.hyperparameters import STRATEGIES

    if args.jobs < 1:
        raise FlambyFlareError(f"--jobs must be >= 1, got {args.jobs}")
    grid = None
    if args.dp_epsilon or args.dp_delta:
        if not (args.dp_epsilon and args.dp_delta):
            raise FlambyFlareError("the DP experiment needs both --dp-epsilon and --dp-delta")
        grid = DPGrid(tuple(args.dp_epsilon), tuple(args.dp_delta), args.dp_max_grad_norm)
    variants = [_personalization(args, method) for method in args.personalization or []]
    if grid and variants:
        raise FlambyFlareError("run the DP and the personalization experiments separately")
    strategies = args.strategy if args.strategy is not None else (["fedavg"] if grid or variants else list(STRATEGIES))
    run_benchmark(
        args.dataset,
        args.seed,
        strategies,
        args.out,
        jobs=args.jobs,
        data_root=args.data_root,
        dp_grid=grid,
        personalization=variants or None,
        pretrained=not args.no_pretrained,
    )


def _personalization(args: argparse.Namespace, method: str | None) -> dict | None:
    """The controller's ``personalization`` argument for ``method`` from the ``--personalization-*`` flags."""
    if method is None:
        return None
    values = {
        "method": method,
        "num_updates": args.personalization_updates,
        "learning_rate": args.personalization_lr,
        "ditto_lambda": args.ditto_lambda if method == "ditto" else None,
    }
    return {k: v for k, v in values.items() if v is not None}


def _report(args: argparse.Namespace) -> None:
    from flamby_flare.benchmark.report import write_report

    paths = write_report(args.results_dir, args.reference)
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))


def _privacy_settings(args: argparse.Namespace) -> tuple[dict | None, dict | None]:
    """The ``dp_sgd`` and ``client_dp`` job settings the ``jobs`` flags ask for (None: off)."""

    def settings(prefix: str, clip_key: str, clip: float | None) -> dict | None:
        epsilon, noise = getattr(args, f"{prefix}_epsilon"), getattr(args, f"{prefix}_noise_multiplier")
        if epsilon is None and noise is None:
            return None
        flag, delta = "--" + prefix.replace("_", "-"), getattr(args, f"{prefix}_delta")
        if delta is None:
            raise FlambyFlareError(f"{flag}-delta is required with {flag}-epsilon or {flag}-noise-multiplier")
        if clip is None:
            raise FlambyFlareError(f"{flag}-clip (the update's L2 clipping norm) is required for client-level DP")
        values = {
            clip_key: clip,
            "delta": delta,
            "target_epsilon": epsilon,
            "noise_multiplier": noise,
            "accountant": args.dp_accountant,
        }
        return {k: v for k, v in values.items() if v is not None}

    return settings("dp", "max_grad_norm", args.dp_max_grad_norm), settings(
        "client_dp", "clip_norm", args.client_dp_clip
    )


# Settings the `jobs` command does not take as an option of their own: given otherwise (the dataset, the DP and
# personalization flags) or meaningful only inside a benchmark job (results_dir, checkpoint_dir).
RUN_EXCLUDED = ("dataset", "personalization", "results_dir", "checkpoint_dir")
SITE_EXCLUDED = ("dataset", "dp_sgd")


def _jobs(args: argparse.Namespace) -> None:
    from controllers.settings import RunSettings
    from executors.settings import SiteSettings
    from flamby_flare.datasets import get_constants
    from flamby_flare.jobs import EXTRA_JOBS, all_jobs, write_job
    from flamby_flare.settings import setting_values
    from flamby_flare.strategies.base import get_strategy

    for name in args.dataset or []:
        get_constants(name)  # unknown names fail here, with the list of known ones
    dp_sgd, client_dp = _privacy_settings(args)
    chosen = [
        (d, s)
        for d, s in all_jobs()
        if (not args.dataset or d in args.dataset) and (not args.strategy or s in args.strategy)
    ]
    variant = {**setting_values(args, RunSettings, RUN_EXCLUDED), **setting_values(args, SiteSettings, SITE_EXCLUDED)}
    if args.tracking != "tensorboard":
        variant["tracking"] = args.tracking
    if args.quantization is not None:
        variant["quantization"] = args.quantization
    if args.tracking_uri is not None:
        if args.tracking != "mlflow":
            raise FlambyFlareError("--tracking-uri is for --tracking mlflow")
        variant["tracking_uri"] = args.tracking_uri
    variant.update(
        {
            k: v
            for k, v in (
                ("dp_sgd", dp_sgd),
                ("client_dp", client_dp),
                ("personalization", _personalization(args, args.personalization)),
            )
            if v is not None
        }
    )
    todo = [(d, s, variant) for d, s in chosen]
    if not (variant or args.dataset or args.strategy):  # the committed set: also the named variants
        todo += list(EXTRA_JOBS.values())
    if args.no_custom_code:
        todo = [(d, s, {**settings, "custom_code": False}) for d, s, settings in todo]
    for dataset, strategy, settings in todo:
        refused = [
            what
            for what, key, reason in (
                ("client-level DP", "client_dp", "client_dp_refusal"),
                ("DP-SGD", "dp_sgd", "dp_sgd_refusal"),
                ("homomorphic encryption", "homomorphic_encryption", "he_refusal"),
            )
            if settings.get(key) and getattr(get_strategy(strategy), reason)
        ]
        if refused and not args.strategy:
            print(f"skipped {dataset}_{strategy}: {refused[0]} cannot serve {strategy}", file=sys.stderr)
            continue  # asked for by name, the generator refuses with the reason
        try:
            print(write_job(dataset, strategy, args.out, **settings))
        except (ValueError, TypeError) as exc:
            raise FlambyFlareError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from controllers.settings import RunSettings
    from executors.settings import SiteSettings
    from flamby_flare.jobs import QUANTIZATIONS, TRACKING
    from flamby_flare.settings import add_setting_arguments
    from flamby_flare.strategies.base import strategy_names

    STRATEGIES = strategy_names()
    from flamby_flare.personalization import METHODS

    perso = argparse.ArgumentParser(add_help=False)
    group = perso.add_argument_group("personalization (docs/personalization.md)")
    group.add_argument(
        "--personalization-updates",
        type=int,
        help="fine-tuning updates (default 100) or Ditto's personal updates per round (default: the round's)",
    )
    group.add_argument("--personalization-lr", type=float, help="their lr (default: the sites' training lr)")
    group.add_argument("--ditto-lambda", type=float, help="Ditto's lambda (default 0.1)")

    parser = _Parser(prog="flamby-flare", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    strategy_help = f"one or more of {', '.join(STRATEGIES)}"

    p = sub.add_parser("download", help="fetch and verify a dataset's raw files")
    _add_dataset(p, positional=True, help="the dataset to fetch")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.add_argument(
        "--mirror",
        help="take the files from this local folder (<mirror>/<dataset>/<file>) "
        "instead of the network (default: $FLAMBY_FLARE_MIRROR)",
    )
    p.add_argument(
        "--center",
        type=int,
        action="append",
        metavar="K",
        help="only this FLamby center's files (repeatable; "
        "what one hospital of a real deployment holds), where the dataset has per-center files (default: all)",
    )
    p.add_argument(
        "--accept-new-checksums",
        action="store_true",
        help="take a fetched file whose SHA-256 differs "
        "from the one pinned at its first download (files whose source publishes none; weights whose name "
        "gives another); it says which",
    )
    p.add_argument(
        "--no-pretrained",
        action="store_true",
        help="fed_isic2019, fed_camelyon16: without the ImageNet weights FLamby starts from "
        "(default: fetched and checked with the data, into <data root>/pretrained)",
    )
    p.set_defaults(func=_download)

    p = sub.add_parser(
        "simulator",
        help="run a job in NVFlare's simulator (`nvflare simulator JOB -w WS -t N`), one "
        "process per site by default; the workspace also admits this project's classes, for jobs "
        "without custom code",
    )
    p.add_argument("job", type=Path, help="a job folder, e.g. jobs/fed_heart_disease_fedavg")
    p.add_argument(
        "-w", "--workspace", type=Path, help="simulator workspace (default: <tmp>/flamby_flare/simulator/<job>)"
    )
    p.add_argument("-t", "--threads", type=int, help="site processes at once (default: one per site of the job)")
    p.set_defaults(func=_simulator)

    p = sub.add_parser(
        "site-policy",
        help="admit this project's classes in NVFlare startup kits' class allow-list "
        "(local/resources.json of each participant)",
    )
    p.add_argument(
        "kits",
        nargs="+",
        type=Path,
        help="participant folders of startup kits (each with local/), or a simulator workspace",
    )
    p.add_argument(
        "--forbid-custom-code",
        action="store_true",
        help="also refuse jobs that bring their own code: "
        "NVFlare's byoc right 'none' for every role in local/authorization.json (such a site runs jobs "
        "written with `flamby-flare jobs --no-custom-code`; default: the kit's own authorization policy)",
    )
    p.set_defaults(func=_site_policy)

    p = sub.add_parser(
        "verify", help="re-hash a downloaded dataset's every file against its published or pinned SHA-256"
    )
    _add_dataset(p, positional=True, help="the dataset to check")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.set_defaults(func=_verify)

    p = sub.add_parser(
        "preprocess", help="download (if needed) and preprocess a dataset once into its cache (the image datasets)"
    )
    _add_dataset(p, positional=True, help="the dataset to preprocess (the image datasets have a cache)")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.add_argument("--mirror", help="take the raw files from this local folder (default: $FLAMBY_FLARE_MIRROR)")
    p.add_argument(
        "--workers", type=int, help="fed_isic2019, fed_lidc_idri: processes for preprocessing (default: all cores)"
    )
    p.add_argument(
        "--weights",
        help="fed_camelyon16: torchvision's ResNet50 state dict, a local file, for the tile features "
        "(default: the ImageNet weights FLamby uses, fetched and checked into <data root>/pretrained)",
    )
    p.add_argument("--accept-new-checksums", action="store_true", help="as for download")
    p.add_argument(
        "--no-pretrained",
        action="store_true",
        help="as for download; fed_camelyon16: tile features from a randomly initialized ResNet50 "
        "(for tests; FLamby's use ImageNet weights)",
    )
    p.set_defaults(func=_preprocess)

    p = sub.add_parser(
        "generate",
        help="generate Fed-Synthetic (FLamby's generator and its heterogeneity knobs) "
        "into <data root>/fed_synthetic, replacing the one there",
    )
    from flamby_flare.datasets.fed_synthetic.common import DEFAULTS as d

    p.add_argument(
        "--centers", type=int, default=d["n_centers"], help=f"number of centers = sites (default: {d['n_centers']})"
    )
    p.add_argument(
        "--samples", type=int, default=d["n_samples"], help=f"samples over all centers (default: {d['n_samples']})"
    )
    p.add_argument(
        "--features", type=int, default=d["n_features"], help=f"features per sample (default: {d['n_features']})"
    )
    p.add_argument("--clusters", type=int, default=d["n_clusters"], help=f"classes (default: {d['n_clusters']})")
    p.add_argument(
        "--seed", type=int, default=d["seed"], help=f"generator seed (default: {d['seed']}, FLamby's datasets)"
    )
    p.add_argument(
        "--snr", type=float, default=d["snr"], help=f"signal-to-noise ratio of every center (default: {d['snr']:g})"
    )
    p.add_argument(
        "--sample-repartition",
        type=float,
        nargs="+",
        metavar="X",
        help="samples per center: one number a > 1, a power law (k+1)^(1-a); or one weight per center (default: equal)",
    )
    p.add_argument(
        "--noise-heterogeneity",
        type=float,
        nargs="+",
        metavar="SNR",
        help="one signal-to-noise ratio per center (default: --snr everywhere)",
    )
    p.add_argument(
        "--features-heterogeneity",
        type=float,
        metavar="H",
        help="each center shifts the class means by H x U[0,1)^d (default: no shift)",
    )
    p.add_argument(
        "--label-heterogeneity",
        type=float,
        metavar="ALPHA",
        help="class proportions per center drawn "
        "from Dirichlet(ALPHA): small, about one class per center (default: equal classes)",
    )
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.set_defaults(func=_generate)

    p = sub.add_parser(
        "heterogeneity",
        help="how the sites' data differ (FLamby's Figure 1): per-site distributions "
        "and the tests of their differences, as a PNG and a CSV",
    )
    _add_dataset(p, positional=True, help="the dataset (all its centers must be in the data root)")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.add_argument(
        "--images", type=int, default=12, help="image datasets: the sample of each site's train images (default: 12)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        help="folder for heterogeneity_<dataset>.png and .csv (default: the current folder)",
    )
    p.set_defaults(func=_heterogeneity)

    poc = sub.add_parser("poc", help="NVFlare POC mode: real server and site processes on this machine")
    poc_sub = poc.add_subparsers(dest="poc_command", required=True)
    workspace = argparse.ArgumentParser(add_help=False)
    workspace.add_argument("--workspace", help="POC workspace (default: $NVFLARE_POC_WORKSPACE, else nvflare's)")
    p = poc_sub.add_parser(
        "up", parents=[workspace], help="provision and start a server and N sites, each with its own center's data"
    )
    p.add_argument(
        "--sites", type=int, required=True, help="number of sites, site-1 .. site-N (site-k holds center k-1)"
    )
    _add_dataset(p, many=True, help="datasets to give the sites (default: fed_heart_disease)")
    p.add_argument(
        "--mirror", help="take the data from this local mirror (default: $FLAMBY_FLARE_MIRROR, else the network)"
    )
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for all sites to connect (default: 120)")
    p.add_argument(
        "--he",
        action="store_true",
        help="provision the HE contexts (NVFlare's HEBuilder) for jobs with "
        "homomorphic encryption: the sites get the key, the server only its public part (default: no)",
    )
    p.add_argument(
        "--heartbeat-timeout",
        type=int,
        default=60,
        help="seconds of silence after which the server deems a site gone (NVFlare's default: 600)",
    )
    p.set_defaults(func=_poc_up)
    p = poc_sub.add_parser(
        "run", parents=[workspace], help="submit a job folder, follow it, download and print its result"
    )
    p.add_argument("job", type=Path, help="a job folder, e.g. jobs/fed_heart_disease_fedavg")
    p.add_argument("--timeout", type=float, default=3600, help="abort the job after this many seconds (default: 3600)")
    p.add_argument(
        "--out", type=Path, default=Path("poc_results"), help="where results go (default: ./poc_results/<job id>)"
    )
    p.set_defaults(func=_poc_run)
    p = poc_sub.add_parser(
        "down", parents=[workspace], help="stop the server and sites (and kill any leftover process)"
    )
    p.add_argument("--clean", action="store_true", help="also delete the POC workspace")
    p.set_defaults(func=_poc_down)

    p = sub.add_parser(
        "benchmark", parents=[perso], help="FLamby's benchmark for one dataset: pooled, locals, strategies, over seeds"
    )
    _add_dataset(p, help="the dataset to benchmark")
    p.add_argument(
        "--seed",
        "--seeds",
        nargs="+",
        type=int,
        default=[42, 43, 44, 45, 46],
        metavar="N",
        help="seeds, one sweep each (default: FLamby's 42 43 44 45 46)",
    )
    p.add_argument(
        "--strategy",
        "--strategies",
        nargs="*",
        choices=STRATEGIES,
        metavar="NAME",
        help=f"strategies to run, {strategy_help} (default: all seven, fedavg for the DP and personalization "
        "experiments; given with no name: only the pooled and local baselines)",
    )
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: ./results)")
    p.add_argument(
        "--no-pretrained",
        action="store_true",
        help="fed_isic2019: train from scratch, not from the ImageNet weights FLamby starts from (results in "
        "OUT/<dataset>_scratch; default: the weights `flamby-flare download` fetched)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="simulator jobs at a time, and central cells training beside them (default: cores / 2)",
    )
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.add_argument(
        "--dp-epsilon",
        "--dp-epsilons",
        nargs="+",
        type=float,
        metavar="EPS",
        help="FLamby's DP experiment: "
        "DP-SGD at every site with each of these target epsilons x --dp-delta, plus a no-DP run (FLamby: "
        "0.1 1 5 10 50); results in OUT/<dataset>_dp (default: no DP experiment)",
    )
    p.add_argument(
        "--dp-delta",
        "--dp-deltas",
        nargs="+",
        type=float,
        metavar="DELTA",
        help="target deltas (FLamby: 0.1 0.01 0.001 0.0001; default: none)",
    )
    p.add_argument(
        "--dp-max-grad-norm", type=float, default=1.1, help="per-sample clipping norm (default 1.1, FLamby's)"
    )
    p.add_argument(
        "--personalization",
        nargs="+",
        choices=METHODS,
        metavar="METHOD",
        help="the personalization "
        f"experiment ({', '.join(METHODS)}): each strategy (default fedavg) with each of these, at FLamby's "
        "personalization-example lr; results in OUT/<dataset>_perso (default: no personalization experiment)",
    )
    p.set_defaults(func=_benchmark)

    p = sub.add_parser("report", help="compare a benchmark's results with FLamby's: markdown, CSV and a figure")
    p.add_argument("results_dir", type=Path, help="a benchmark's --out folder (its <dataset>/results.csv files)")
    p.add_argument(
        "--reference", type=Path, help="FLamby's results folder (default: the summary carried in the package)"
    )
    p.set_defaults(func=_report)

    p = sub.add_parser("results", help="print the per-site table of finished runs")
    p.add_argument("path", type=Path, help="a simulator workspace, a run directory or a summary.json")
    p.set_defaults(func=_results)

    p = sub.add_parser("jobs", parents=[perso], help="(re)generate the NVFlare job folders, or variants of them")
    p.add_argument("--out", type=Path, default=Path("jobs"), help="jobs folder (default: ./jobs)")
    _add_dataset(p, many=True, help="only these datasets (default: all)")
    p.add_argument(
        "--strategy",
        "--strategies",
        nargs="+",
        action="extend",
        choices=STRATEGIES,
        metavar="NAME",
        help=f"only these strategies, {strategy_help} (default: all)",
    )
    run = p.add_argument_group("the run (the controller's arguments; default: FLamby's benchmark settings)")
    add_setting_arguments(
        run, RunSettings, exclude=RUN_EXCLUDED, aliases={"num_rounds": "--rounds"}, show_defaults=False
    )
    site = p.add_argument_group("the sites (the executor's arguments)")
    add_setting_arguments(site, SiteSettings, exclude=SITE_EXCLUDED)
    p.add_argument(
        "--personalization",
        choices=METHODS,
        help="personalize at every site and report global and "
        "personalized metrics (the job name gets _<method>; default: none)",
    )
    p.add_argument(
        "--tracking",
        choices=tuple(TRACKING),
        default="tensorboard",
        help="stream each "
        "round's losses, epsilon spent and the final metrics to TensorBoard event files in the run "
        "directory (<run dir>/tb_events) or to MLflow (<run dir>/mlflow.db, or --tracking-uri; needs the "
        "mlflow extra) (default: tensorboard)",
    )
    p.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        help="the train task's model and results "
        "cross the wire quantized by NVFlare's filters (needs the quantization extra; the job name gets "
        "_fp16 or _q8; default: none)",
    )
    p.add_argument(
        "--tracking-uri",
        help="with --tracking mlflow: an MLflow tracking server, http(s)://host:port "
        "(default: the run directory's SQLite store)",
    )
    p.add_argument(
        "--no-custom-code",
        action="store_true",
        help="for sites whose authorization policy forbids custom "
        "code: no app/custom/ folder (NVFlare's mark of a job that brings its own code), so each site's "
        "class allow-list must admit the job's classes (`flamby-flare site-policy`; default: with it)",
    )
    dp = p.add_argument_group("sample-level DP-SGD at every site (docs/privacy.md); the job name gets _dp")
    dp.add_argument(
        "--dp-epsilon",
        type=float,
        help="the run's budget: noise set for exactly rounds x updates steps (default: no DP-SGD)",
    )
    dp.add_argument(
        "--dp-noise-multiplier",
        type=float,
        help="or a given noise multiplier (the epsilon is then reported; default: none)",
    )
    dp.add_argument("--dp-delta", type=float, help="delta of the (epsilon, delta) guarantee (required with DP-SGD)")
    dp.add_argument(
        "--dp-max-grad-norm", type=float, default=1.1, help="per-sample clipping norm (default 1.1, FLamby's)"
    )
    dp.add_argument("--dp-accountant", choices=("rdp", "prv"), default="rdp", help="Opacus accountant (default rdp)")
    cdp = p.add_argument_group("client-level DP (DP-FedAvg) on every site's update; the job name gets _cdp")
    cdp.add_argument(
        "--client-dp-clip", type=float, help="L2 clipping norm C of a site's update (required with client-level DP)"
    )
    cdp.add_argument(
        "--client-dp-epsilon",
        type=float,
        help="the run's budget (noise set for the job's rounds; default: no client-level DP)",
    )
    cdp.add_argument(
        "--client-dp-noise-multiplier",
        type=float,
        help="or a given noise multiplier sigma (std sigma * C; default: none)",
    )
    cdp.add_argument(
        "--client-dp-delta", type=float, help="delta of the (epsilon, delta) guarantee (required with client-level DP)"
    )
    p.set_defaults(func=_jobs)
    return parser


def _version() -> str:
    """flamby-flare's version and those of what it runs on, from the installed metadata (nothing imported)."""
    from importlib.metadata import PackageNotFoundError, version

    from flamby_flare import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    on = ", ".join(f"{name} {installed(name)}" for name in ("nvflare", "torch", "opacus"))
    return f"flamby-flare {__version__} ({on}; python {sys.version.split()[0]})"


def _skip_the_final_collections() -> None:
    """At exit, the interpreter's garbage collections walk every object torch and pandas made: 0.4 s of every
    command that imported them, on the 2-core machine. Frozen first (an ``atexit`` callback, so the others still
    run; what remains is freed as the modules are torn down, as before)."""
    import atexit
    import gc

    if not getattr(_skip_the_final_collections, "registered", False):
        atexit.register(gc.freeze)
        _skip_the_final_collections.registered = True


def main(argv: list[str] | None = None) -> int:
    from flamby_flare.packages import check_this_process

    _skip_the_final_collections()

    try:
        check_this_process()  # the parser itself imports our packages' settings
    except FlambyFlareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    parser = build_parser()
    args = parser.parse_args(argv)
    _resolve_dataset(args, parser)
    from flamby_flare.processes import terminate_as_interrupt

    try:
        with terminate_as_interrupt():  # SIGTERM cleans up as Ctrl-C does
            code = args.func(args)
    except FlambyFlareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # what the command started is stopped by now (flamby_flare.processes)
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
