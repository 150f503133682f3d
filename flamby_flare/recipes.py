"""NVFlare 2.9 recipes: ``FlambyRecipe(dataset, strategy, **overrides)`` runs in NVFlare's own ``SimEnv``,
``PocEnv`` and ``ProdEnv`` as NVFlare's own recipes do::

    from nvflare.recipe import PocEnv, SimEnv
    from flamby_flare.recipes import FlambyRecipe

    run = FlambyRecipe("fed_heart_disease", "fedavg", num_rounds=5).execute(SimEnv(num_clients=4))
    print(run.get_result())          # the server's run directory holds summary.json
    FlambyRecipe("fed_heart_disease", "fedavg").execute(PocEnv(num_clients=4)).get_result(clean_up=False)

``recipe.export(DIR)`` writes the job folder, the same one ``flamby-flare jobs`` writes (the overrides are
``flamby_flare.jobs.job_files``' arguments: the run's settings, the strategy's hyperparameters, the sites'
settings, ``dp_sgd``, ``client_dp``, ``personalization``, ``tracking``, ``custom_code``).

NVFlare's ``PocEnv`` provisions and starts a POC of its own for every run (stopping one that runs), whose sites
read their centers from the data root of the environment (``FLAMBY_FLARE_DATA``, else the per-user cache).
What it cannot do, and this module's ``PocEnv`` does: give each site a data root holding only its own center's
files, a POC whose lost sites are let go in a minute instead of NVFlare's ten, and run on a POC that is up
already (``flamby-flare poc up``) instead of provisioning anew.

What is kept by hand, and why: the job's JSON comes from ``flamby_flare.jobs`` rather than from NVFlare's
Job API serializer. That serializer rebuilds a component's arguments from its constructor's parameters
and the attributes of the same name (``FedJobConfig._get_args``): it drops our controllers' arguments
(``**arguments``, checked into settings dataclasses at start), and it copies the source of every
non-NVFlare class into the job's ``app/custom/`` (``_get_custom_file``), where the installed package is the
code. The recipe therefore holds a ``FedJob`` whose export writes our generated files and whose simulator
run gives each site a process of its own; NVFlare's environments deploy it unchanged (``SimEnv`` calls
``simulator_run``, ``PocEnv`` and ``ProdEnv`` submit what ``export_job`` writes).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from nvflare.job_config.api import FedJob
from nvflare.recipe.spec import ExecEnv, Recipe

from flamby_flare.jobs import job_files, write_files


class FlambyJob(FedJob):
    """A ``FedJob`` holding the files of a generated job folder."""

    def __init__(self, files: dict[str, str]):
        meta = json.loads(files["meta.json"])
        super().__init__(name=meta["name"], min_clients=meta["min_clients"])
        self.files = files

    def export_job(self, job_root: str) -> None:
        write_files(Path(job_root) / self.name, self.files)

    def simulator_run(
        self,
        workspace: str,
        n_clients: int | None = None,
        clients: list[str] | None = None,
        threads: int | None = None,
        gpu: str | None = None,
        log_config: str | None = None,
    ) -> int:
        """``flamby-flare simulator`` on the exported job: one process per site unless ``threads`` says
        otherwise, the workspace admitting this project's classes (for a job without custom code); returns the
        simulator's exit code."""
        from flamby_flare.simulator import command, prepare_workspace, run

        workspace = prepare_workspace(workspace)
        job = workspace.parent / f"{self.name}_job"
        self.export_job(str(job))
        cmd = command(job / self.name, workspace, threads)
        if clients:
            cmd += ["-c", ",".join(clients)]
        if gpu:
            cmd += ["-gpu", gpu]
        if log_config:
            cmd += ["-l", log_config]
        return run(cmd, workspace, env={"OMP_NUM_THREADS": "1", **os.environ}, stdout=sys.stdout, stderr=sys.stderr)


class FlambyRecipe(Recipe):
    """``dataset`` x ``strategy`` at FLamby's benchmark settings, with ``overrides`` (see the module)."""

    def __init__(self, dataset: str, strategy: str, **overrides):
        self.dataset, self.strategy, self.overrides = dataset, strategy, dict(overrides)
        try:
            files = job_files(dataset, strategy, **overrides)
        except (ValueError, TypeError) as exc:  # checked now, as the job would be at start: one line
            from flamby_flare.errors import FlambyFlareError

            raise FlambyFlareError(str(exc)) from None
        super().__init__(FlambyJob(files))

    @property
    def files(self) -> dict[str, str]:
        return self._job.files

    def process_env(self, env: ExecEnv) -> None:
        """A ``SimEnv`` (or ``PocEnv``) must have the job's sites; a ``SimEnv`` running fewer processes than
        sites would swap them every task: it says so once."""
        from flamby_flare.errors import FlambyFlareError
        from flamby_flare.simulator import job_sites

        threads, clients = getattr(env, "num_threads", None), getattr(env, "num_clients", None)
        names = getattr(env, "clients", None)
        clients = len(names) if names else clients
        if clients:
            with _exported(self) as job:
                sites = job_sites(job)
            if clients != sites:
                raise FlambyFlareError(
                    f"{self.name} runs {sites} sites (site-1..site-{sites}); the environment has {clients} clients"
                )
            if names and sorted(names) != sorted(f"site-{k}" for k in range(1, sites + 1)):
                raise FlambyFlareError(
                    f"{self.name} runs sites site-1..site-{sites} (site-k serves FLamby center k-1); "
                    f"the environment's clients are {', '.join(map(str, names))}"
                )
        if threads and clients and threads < clients:
            print(
                f"[flamby-flare] SimEnv runs {clients} sites in {threads} process(es): same results, several "
                f"times slower; num_threads={clients} gives one process per site",
                file=sys.stderr,
            )


class _exported:
    """The recipe's job folder, written to a temporary folder for the duration of a ``with``."""

    def __init__(self, recipe: FlambyRecipe):
        self.recipe = recipe

    def __enter__(self) -> Path:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="flamby_flare_recipe_")
        self.recipe._job.export_job(self._tmp.name)
        return Path(self._tmp.name) / self.recipe.name

    def __exit__(self, *exc) -> None:
        self._tmp.cleanup()


def PocEnv(
    num_clients: int = 4,
    poc_workspace: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    datasets: tuple[str, ...] = ("fed_heart_disease",),
    login_timeout: float = 30.0,
):
    """A POC as ``flamby-flare poc up`` makes it, for recipes: brought up when no POC of ``poc_workspace`` runs
    (site k holds only center k-1 of ``datasets``, lost sites are let go after 60 s, the kits also admit this
    project's classes), else the running one as it is; then NVFlare's ``ProdEnv`` on the POC admin's kit: the
    job is submitted, followed and downloaded through NVFlare's Flare API as in production. NVFlare's own
    ``PocEnv`` runs the same recipes on a POC it provisions anew (see the module)."""
    from nvflare.recipe import ProdEnv

    from flamby_flare.poc import ADMIN, Poc, PocError

    poc = Poc(poc_workspace)
    try:
        poc.wait_ready(poc.sites(), timeout=5)
    except PocError:  # not up (or not this many sites): bring it up
        poc.stop(grace=10)
        poc.prepare(num_clients)
        poc.provision_data(list(datasets), None if mirror is None else str(mirror))
        poc.start()
    if len(poc.sites()) != num_clients:
        raise PocError(
            f"the POC at {poc.workspace} has {len(poc.sites())} sites, not {num_clients}: `flamby-flare poc down` first"
        )
    env = ProdEnv(startup_kit_location=str(poc.kits / ADMIN), username=ADMIN, login_timeout=login_timeout)
    env.num_clients = num_clients  # what FlambyRecipe checks against the job's sites
    return env
