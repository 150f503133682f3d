"""MLflow as the run's metric stream (``--tracking mlflow``): a real simulator run writes, through NVFlare's
MLflow receiver, one MLflow run per site and one for the server into the run directory's SQLite store,
holding what the summary holds; only an http(s) tracking server may be named instead."""

import json
import re

import pytest

from flamby_flare.cli import main
from flamby_flare.jobs import job_files, write_job
from tests.simulator import run_dir, run_simulator


def _mlflow_metrics(store) -> dict[str, dict[str, dict[int, float]]]:
    """The store read back: the MLflow run's site (server or site-N) -> metric -> {step: value}."""
    from mlflow.tracking.client import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "flamby-flare"]
    out = {}
    for run in client.search_runs([experiment.experiment_id]):
        assert run.info.status == "FINISHED"
        site = re.match(r"(server|site-\d+)-", run.info.run_name).group(1)  # NVFlare's "<site>-<job id>-<job>-..."
        out[site] = {
            key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)} for key in run.data.metrics
        }
    return out


@pytest.mark.simulator
def test_an_mlflow_run_per_site_holds_the_summarys_numbers(tmp_path, data_root, capsys):
    job = write_job("fed_heart_disease", "fedavg", tmp_path, num_rounds=2, seed=3, tracking="mlflow")
    proc = run_simulator(job, tmp_path / "ws", 4, {"FLAMBY_FLARE_DATA": str(data_root)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = run_dir(tmp_path / "ws")
    summary = json.loads((out / "summary.json").read_text())
    assert not (out / "tb_events").exists()
    streams = _mlflow_metrics(out / "mlflow.db")
    assert set(streams) == {"server", "site-1", "site-2", "site-3", "site-4"}
    server = streams["server"]
    assert server["train_loss"] == {h["round"]: pytest.approx(h["train_loss"]) for h in summary["history"]}
    assert server["test_accuracy_mean"] == {2: pytest.approx(summary["mean"])}
    for site, value in summary["per_site"].items():
        assert streams[site]["test_accuracy"] == {2: pytest.approx(value)}
        assert streams[site]["train_loss"] == {
            h["round"]: pytest.approx(h["per_site"][site]) for h in summary["history"]
        }

    assert main(["results", str(tmp_path / "ws")]) == 0
    assert (
        f"metrics per round: mlflow ui --backend-store-uri sqlite:///{(out / 'mlflow.db').resolve()}"
        in capsys.readouterr().out
    )


def test_a_tracking_server_is_named_by_http_only(tmp_path, capsys):
    from controllers.mlflow_tracking import MLflowReceiver

    server = json.loads(
        job_files("fed_heart_disease", "fedavg", tracking="mlflow", tracking_uri="https://mlflow.hospital.org:5000")[
            "app/config/config_fed_server.json"
        ]
    )
    assert server["components"] == [
        {
            "id": "mlflow",
            "path": "controllers.mlflow_tracking.MLflowReceiver",
            "args": {"tracking_uri": "https://mlflow.hospital.org:5000"},
        }
    ]
    for bad in (
        "file:///etc",
        "sqlite:////tmp/x.db",
        "/tmp/mlruns",
        "http://host/../x?y=1",
        5,
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
    ):
        with pytest.raises(Exception, match="tracking_uri must be an http:// or https:// address"):
            job_files("fed_heart_disease", "fedavg", tracking="mlflow", tracking_uri=bad)
        with pytest.raises(Exception, match="tracking_uri must be an http:// or https:// address"):
            MLflowReceiver(tracking_uri=bad)  # a hand-edited job file: the server refuses it at start
    with pytest.raises(ValueError, match="tracking_uri is for tracking='mlflow', not 'tensorboard'"):
        job_files("fed_heart_disease", "fedavg", tracking_uri="http://localhost:5000")
    assert (
        main(
            [
                "jobs",
                "--out",
                str(tmp_path),
                "--dataset",
                "fed_heart_disease",
                "--tracking-uri",
                "http://localhost:5000",
            ]
        )
        == 1
    )
    assert "--tracking-uri is for --tracking mlflow" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_without_the_mlflow_extra_the_receiver_says_which_extra_to_install(tmp_path):
    from tests.test_packaging import blocked, python

    result = python(blocked("mlflow") + "import controllers.mlflow_tracking")
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "mlflow_tracking needs mlflow, from flamby-flare's 'mlflow' extra: pip install 'flamby-flare[mlflow]'"
        )
    )
    jobs = python(
        blocked("mlflow") + "from flamby_flare.cli import main\n"
        f"sys.exit(main(['jobs', '--out', {str(tmp_path)!r}, '--dataset', 'fed_heart_disease', '--strategy', 'fedavg', '--tracking', 'mlflow']))"
    )
    assert jobs.returncode == 0, jobs.stderr  # the job is written where MLflow is not installed; the server needs it
    assert (
        '"controllers.mlflow_tracking.MLflowReceiver"'
        in (tmp_path / "fed_heart_disease_fedavg" / "app" / "config" / "config_fed_server.json").read_text()
    )


def test_a_tracking_server_that_does_not_answer_fails_the_run_at_its_start():
    """Nothing listening at the job's tracking server: the receiver fails the run within seconds naming the address
    (NVFlare's waited out MLflow's retries, 246 s, logged it and trained on, exit 0, nothing tracked)."""
    import socket
    import time

    from nvflare.apis.event_type import EventType

    from controllers.mlflow_tracking import MLflowReceiver

    with socket.socket() as sock:  # a port nobody listens on: bound here, never listening
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
        receiver, panics = MLflowReceiver(tracking_uri=uri), []
        receiver.system_panic = lambda reason, fl_ctx: panics.append(reason)
        start = time.monotonic()
        receiver.handle_event(EventType.START_RUN, None)
    assert time.monotonic() - start < 10 and not receiver._initialized
    assert panics == [
        f"MLflow tracking cannot start: the MLflow tracking server {uri} does not answer ([Errno 111] "
        "Connection refused): start it, or write the job with another --tracking-uri or --tracking tensorboard"
    ]
