"""The command line: bad input gets a clear message and exit code 2, never a traceback."""

import pytest

from trustwatch.cli import main


def _suite(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    "suite, target, message",
    [
        ("tasks: [nope/task]\n", "vllm:m", "unknown task 'nope/task'"),
        ("tasks: [safety/misuse\n", "vllm:m", "not valid YAML"),
        ("tasks: [safety/misuse]\n", "gpt4", "cannot parse target 'gpt4'"),
    ],
)
def test_run_rejects_bad_input(tmp_path, capsys, suite, target, message, data_dir):
    code = main(
        [
            "run",
            "--suite",
            _suite(tmp_path, suite),
            "--target",
            target,
            "--data-dir",
            str(data_dir),
            "--db",
            f"sqlite:///{tmp_path}/x.db",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_missing_dataset_file(tmp_path, capsys):
    code = main(
        [
            "run",
            "--suite",
            _suite(tmp_path, "tasks: [safety/misuse]\n"),
            "--target",
            "vllm:m",
            "--data-dir",
            str(tmp_path),
            "--db",
            f"sqlite:///{tmp_path}/x.db",
        ]
    )
    assert code == 2 and "safety/misuse.json" in capsys.readouterr().err


def test_tasks_and_evaluators_listed(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "truthfulness/external" in out and "safety/misuse" in out
    assert main(["evaluators"]) == 0
    assert "fact_check" in capsys.readouterr().out


def test_report_of_unknown_run(tmp_path, capsys):
    assert main(["report", "nope", "--db", f"sqlite:///{tmp_path}/x.db"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_datasets_verify(data_dir, capsys, tmp_path):
    assert main(["datasets", "verify", "--data-dir", str(data_dir)]) == 0
    assert main(["datasets", "verify", "--data-dir", str(tmp_path)]) == 1


def test_evaluator_settings_come_from_declared_variables_and_flags(monkeypatch):
    import argparse

    from trustwatch.cli import UsageError, _settings

    monkeypatch.setenv("TRUSTWATCH_JUDGE_CONCURRENCY", "7")
    monkeypatch.setenv("TRUSTWATCH_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("TRUSTWATCH_REFUSAL_BACKEND", "hf")
    s = _settings(argparse.Namespace(refusal_backend="phrases", refusal_model=None))
    v = s.as_dict()
    assert (v["judge_concurrency"], v["judge_base_url"]) == (7, "http://127.0.0.1:9/v1")
    assert v["refusal_backend"] == "phrases"
    monkeypatch.setenv("TRUSTWATCH_JUDGE_TIMEOUT_S", "soon")
    with pytest.raises(UsageError, match="TRUSTWATCH_JUDGE_TIMEOUT_S='soon' is not a valid float"):
        _settings(argparse.Namespace())
