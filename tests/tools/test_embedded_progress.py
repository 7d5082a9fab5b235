"""Progress of an embedded run: bars with rate per stage when asked (or on a terminal), status lines
otherwise."""

from tests.generator.fakes import ScriptedBackend
from trustwatch.scheduler.suite import parse_suite, parse_target
from trustwatch.tools.embedded import run_embedded

SUITE = {"name": "bars", "tasks": [{"task": "safety/misuse", "limit": 12}]}


def test_bars_show_each_stage_to_its_total(tmp_path, data_dir, capsys):
    lines: list[str] = []
    run_embedded(
        parse_suite(SUITE),
        [parse_target("vllm:fake")],
        data_dir,
        f"sqlite:///{tmp_path}/r.db",
        lambda t: ScriptedBackend(),
        progress=lines.append,
        bars=True,
    )
    err = capsys.readouterr().err
    assert "generate" in err and "12/12" in err and "prompt/s" in err
    assert "judge" in err and "judgment/s" in err
    assert not any(line.startswith("  judged") for line in lines)  # the bars replace the status lines


def test_without_bars_status_lines_report_the_count(tmp_path, data_dir, capsys):
    lines: list[str] = []
    run_embedded(
        parse_suite(SUITE),
        [parse_target("vllm:fake")],
        data_dir,
        f"sqlite:///{tmp_path}/r.db",
        lambda t: ScriptedBackend(),
        progress=lines.append,
        bars=False,
    )
    assert any(line.startswith("  judged 12/12") for line in lines)
    assert "generate" not in capsys.readouterr().err
