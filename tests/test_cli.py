"""The CLI's consistency: one spelling per option (older ones as aliases), names as choices, help and a
default for every option, plain text in --help, one-line usage errors."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from flamby_flare.cli import build_parser, main


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from commands(sub, prefix + (name,))


def parse(*argv: str) -> dict:
    args = vars(build_parser().parse_args(argv))
    args.pop("func")
    return args


def test_every_option_has_help_with_its_default_and_no_markup():
    for name, sub in commands(build_parser()):
        assert "``" not in sub.format_help() and ":class:" not in sub.format_help(), name
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, (name, action.dest)
            if action.option_strings and not action.required and not isinstance(action, argparse._StoreTrueAction):
                assert "default" in action.help or "required with" in action.help or action.dest == "dataset_option", (
                    name,
                    action.option_strings,
                )


def test_one_spelling_everywhere_older_ones_as_aliases():
    spellings = {}
    for _name, sub in commands(build_parser()):
        for action in sub._actions:
            spellings.setdefault(action.dest, set()).add(action.option_strings[0] if action.option_strings else "")
    for dest in ("dataset_option", "strategy", "seed", "dp_epsilon", "dp_delta"):
        assert spellings[dest] == {"--" + dest.removesuffix("_option").replace("_", "-")}, dest
    assert parse(
        "benchmark",
        "--dataset",
        "fed_heart_disease",
        "--strategies",
        "fedavg",
        "--seeds",
        "42",
        "--dp-epsilons",
        "1",
        "--dp-deltas",
        "0.1",
    ) == parse(
        "benchmark",
        "--dataset",
        "fed_heart_disease",
        "--strategy",
        "fedavg",
        "--seed",
        "42",
        "--dp-epsilon",
        "1",
        "--dp-delta",
        "0.1",
    )
    assert parse("jobs", "--strategies", "fedavg", "--strategy", "scaffold")["strategy"] == ["fedavg", "scaffold"]
    assert parse("poc", "up", "--sites", "2", "--dataset", "fed_tcga_brca", "--dataset", "fed_heart_disease")[
        "dataset"
    ] == ["fed_tcga_brca", "fed_heart_disease"]


@pytest.mark.parametrize("command", ["download", "verify", "preprocess"])
def test_the_dataset_is_an_option_or_positional(command, tmp_path):
    assert parse(command, "fed_heart_disease")["dataset"] == "fed_heart_disease"
    assert parse(command, "--dataset", "fed_heart_disease")["dataset_option"] == "fed_heart_disease"
    err = io.StringIO()
    for argv in ([command], [command, "fed_tcga_brca", "--dataset", "fed_heart_disease"]):
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
            main(argv + ["--data-root", str(tmp_path)])
        assert exit_.value.code == 2
    assert err.getvalue().splitlines() == [
        "error: the following arguments are required: --dataset (see `flamby-flare --help`)",
        "error: give the dataset once: --dataset NAME (see `flamby-flare --help`)",
    ]
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["jobs", "--dataset", "fed_mnist"], "argument --dataset: unknown dataset 'fed_mnist'; known datasets: "),
        (["jobs", "--strategy", "fedsgd"], "argument --strategy/--strategies: invalid choice: 'fedsgd' (choose from "),
        (
            ["benchmark", "--dataset", "fed_heart_disease", "--personalization", "lora"],
            "argument --personalization: invalid choice: 'lora' (choose from ",
        ),
        (["jobs", "--rounds", "ten"], "argument --num-rounds/--rounds: invalid int value: 'ten'"),
    ],
)
def test_names_are_choices_refused_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: " + message) and line.endswith("--help`)")


@pytest.mark.parametrize("jobs", ["0", "-2"])
def test_a_benchmark_without_a_job_at_a_time_is_refused_before_it_starts(jobs, tmp_path, capsys):
    assert (
        main(
            [
                "benchmark",
                "--dataset",
                "fed_heart_disease",
                "--jobs",
                jobs,
                "--out",
                str(tmp_path / "out"),
                "--data-root",
                str(tmp_path),
            ]
        )
        == 1
    )
    assert capsys.readouterr().err.splitlines() == [f"error: --jobs must be >= 1, got {jobs}"]
    assert not (tmp_path / "out").exists()


def test_a_command_skips_the_interpreters_final_collections(monkeypatch):
    """gc.freeze as the process exits (once, whatever the number of commands run in it): its final collections
    would walk every object torch and pandas made."""
    import atexit
    import gc

    from flamby_flare import cli

    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.delattr(cli._skip_the_final_collections, "registered", raising=False)
    cli._skip_the_final_collections(), cli._skip_the_final_collections()
    assert registered == [gc.freeze]


def test_a_command_puts_back_the_sigterm_handler_it_found(tmp_path):
    """During a command SIGTERM stops what it started as Ctrl-C does; after it, the caller's handler is back (a
    process that calls main() and goes on, and what it forks later, keep their SIGTERM)."""
    import signal

    from flamby_flare.cli import main

    before = signal.getsignal(signal.SIGTERM)
    assert main(["jobs", "--out", str(tmp_path), "--dataset", "fed_heart_disease", "--strategy", "fedavg"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before
