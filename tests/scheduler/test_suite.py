import pytest

from trustwatch.scheduler.suite import SuiteError, TargetError, load_suite, parse_suite, parse_target


def test_suite_accepts_names_and_mappings():
    s = parse_suite(
        {
            "name": "x",
            "seed": 3,
            "tasks": ["safety/misuse", {"task": "truthfulness/external", "limit": 5, "temperature": 0.5}],
        }
    )
    assert [t.task for t in s.tasks] == ["safety/misuse", "truthfulness/external"]
    assert s.tasks[1].limit == 5 and s.tasks[1].temperature == 0.5 and s.seed == 3


@pytest.mark.parametrize(
    "data, message",
    [
        ([1, 2], "top level must be a mapping"),
        ({"tasks": []}, "non-empty list"),
        ({"tasks": ["nope/task"]}, "unknown task 'nope/task'; known tasks: "),
        ({"tasks": [{"task": "safety/misuse", "limit": 0}]}, "limit must be an integer >= 1"),
        ({"tasks": [{"task": "safety/misuse", "limt": 3}]}, "unknown key(s) limt"),
        ({"tasks": ["safety/misuse"], "sed": 1}, "unknown key(s) sed"),
        ({"tasks": ["safety/misuse", "safety/misuse"]}, "listed twice"),
        ({"tasks": [{"task": "safety/misuse", "temperature": 9}]}, "temperature must be a number in [0.0, 2.0]"),
    ],
)
def test_bad_suites_say_what_to_fix(data, message):
    with pytest.raises(SuiteError) as err:
        parse_suite(data, "s.yaml")
    assert message in str(err.value)


def test_malformed_yaml_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("tasks: [safety/misuse\n")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(p)
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(tmp_path / "missing.yaml")


def test_targets_parse():
    t = parse_target("vllm:/models/Llama-3-8B")
    assert (t.backend, t.model, t.name) == ("vllm", "/models/Llama-3-8B", "Llama-3-8B")
    o = parse_target("openai:gpt-4o-mini@https://gw.example/v1/?key_env=GW_API_KEY&name=prod")
    assert (o.backend, o.model, o.base_url, o.api_key_env, o.name) == (
        "openai",
        "gpt-4o-mini",
        "https://gw.example/v1",
        "GW_API_KEY",
        "prod",
    )
    assert parse_target("openai:m@http://127.0.0.1:8000/v1").api_key_env == "OPENAI_API_KEY"


@pytest.mark.parametrize(
    "text, message",
    [
        ("llama", "cannot parse target"),
        ("tgi:model", "unknown back-end 'tgi'"),
        ("openai:gpt-4o", "has no @BASE_URL"),
        ("openai:gpt@ftp://x", "http(s) base URL"),
        ("vllm:", "names no model"),
        ("openai:m@http://h/v1?key_env=1BAD", "key_env must be an environment variable name"),
        ("openai:m@http://h/v1?api_key=sk-123", "credentials in the URL are refused"),
    ],
)
def test_bad_targets(text, message):
    with pytest.raises(TargetError) as err:
        parse_target(text)
    assert message in str(err.value)
    assert "sk-123" not in str(err.value)
