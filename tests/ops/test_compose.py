"""docker-compose.yml, the Dockerfile and .env.example, checked without a Docker engine: the
Compose specification's JSON schema (vendored by check-jsonschema), every command run against
the project, and every setting of tms/settings.py listed in .env.example and the README."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
APP_SERVICES = ("migrate", "web", "worker", "beat", "idle")


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, Any]:
    return compose()["services"]


def settings_names() -> list[str]:
    """Every environment variable tms/settings.py reads through its env_* helpers."""
    text = (ROOT / "tms" / "settings.py").read_text()
    names = re.findall(r"\benv_(?:str|int|bool|list|url)\(\s*\"([A-Z][A-Z0-9_]*)\"", text)
    return list(dict.fromkeys(names))


def env_example_names() -> dict[str, str]:
    """NAME -> value for each `NAME=value` line of .env.example, commented out (a default) or not."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def test_it_validates_against_the_compose_specification() -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_it_refuses_a_broken_file_so_the_schema_check_can_fail() -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    misspelt = compose()
    misspelt["services"]["worker"]["restart_policy"] = "always"  # belongs under deploy:
    assert list(validator.iter_errors(misspelt))
    wrong_type = compose()
    wrong_type["services"]["web"]["ports"] = {"8000": 8000}
    assert list(validator.iter_errors(wrong_type))


def test_it_has_every_service_with_health_checks_and_volumes() -> None:
    svc = services()
    assert {"postgres", "redis", "web", "worker", "beat", "idle", "migrate"} <= set(svc)
    assert "pg_isready" in " ".join(svc["postgres"]["healthcheck"]["test"])
    assert svc["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert "tms.healthcheck" in svc["web"]["healthcheck"]["test"]
    assert "/healthz" in " ".join(svc["web"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(svc["worker"]["healthcheck"]["test"])
    # one scheduler and one IDLE watcher, whatever the number of workers
    assert svc["beat"]["deploy"]["replicas"] == 1
    assert svc["idle"]["deploy"]["replicas"] == 1
    assert "deploy" not in svc["worker"] or svc["worker"]["deploy"].get("replicas", 1) >= 1
    volumes = compose()["volumes"]
    assert {"pgdata", "media"} <= set(volumes)
    assert "pgdata:/var/lib/postgresql/data" in svc["postgres"]["volumes"]
    for name in ("web", "worker", "idle"):
        assert "media:/data/media" in svc[name]["volumes"], name
        assert svc[name]["environment"]["MEDIA_ROOT"] == "/data/media"
        # every app service waits for the migration (upgrades: migrate before new workers start)
        assert svc[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        env = svc[name]["environment"]
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert "@postgres:5432/" in env["DATABASE_URL"]


def _manage_args_valid(args: list[str]) -> None:
    """`python manage.py NAME ARGS...` names a command of the project that accepts ARGS."""
    import django
    from django.core.management import get_commands, load_command_class

    django.setup()
    name, rest = args[0], args[1:]
    commands = get_commands()
    assert name in commands, f"manage.py has no command {name!r}"
    command = load_command_class(commands[name], name)
    parser = command.create_parser("manage.py", name)
    parser.parse_args(rest)  # raises CommandError / exits on arguments it does not take
    if name == "mailbox":
        assert (ROOT / "mailboxes" / "cli" / f"{rest[0]}.py").exists()


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def check_command(argv: list[str]) -> None:
    """Run what the container would run, as far as that can be done without starting it."""
    program, args = argv[0], argv[1:]
    if program == "python" and args[:1] == ["manage.py"]:
        _manage_args_valid(args[1:])
    elif program == "python" and args[:1] == ["-m"]:
        module = args[1]
        assert (ROOT / Path(*module.split("."))).with_suffix(".py").exists(), module
    elif program == "celery":
        # the app path imports, the sub-command and its options exist
        result = _run([str(VENV_BIN / "celery"), *args, "--help"])
        assert result.returncode == 0, (argv, result.stderr[-2000:])
        app_path = args[args.index("-A") + 1]
        __import__(f"{app_path}.celery")
    elif program == "gunicorn":
        result = _run([str(VENV_BIN / "gunicorn"), "--check-config", *args])
        assert result.returncode == 0, (argv, result.stdout[-2000:], result.stderr[-2000:])
    else:
        pytest.fail(f"unknown program in docker-compose.yml: {argv}")


def _as_argv(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else shlex.split(value)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_it_runs_commands_that_exist_in_the_project(name: str) -> None:
    service = services()[name]
    check_command(_as_argv(service["command"]))
    test = service.get("healthcheck", {}).get("test")
    if test:
        kind, *rest = test
        argv = _as_argv(rest[0].replace("$$HOSTNAME", "celery@x")) if kind == "CMD-SHELL" else rest
        check_command(argv)


def test_it_knows_a_bad_command_when_it_sees_one() -> None:
    with pytest.raises(AssertionError):
        check_command(["python", "manage.py", "no-such-command"])
    with pytest.raises(AssertionError):
        check_command(["gunicorn", "tms.wsgi:nothing_here"])
    with pytest.raises(AssertionError):
        check_command(["celery", "-A", "tms", "worker", "--no-such-option"])


def test_it_lists_every_setting_in_env_example() -> None:
    names = settings_names()
    assert len(names) > 50  # the parser found them
    listed = env_example_names()
    missing = [n for n in names if n not in listed]
    assert not missing, f".env.example lacks {missing}"
    # each under a comment that says what it is (its own, or its group's, with no blank line between)
    lines = (ROOT / ".env.example").read_text().splitlines()
    for name in names:
        index = next(i for i, line in enumerate(lines) if re.match(rf"^#?\s?{name}=", line))
        above = index - 1
        while above >= 0 and re.match(r"^#?\s?[A-Z][A-Z0-9_]*=", lines[above]):
            above -= 1
        assert above >= 0 and lines[above].startswith("# "), f"{name} has no comment"


def test_it_documents_every_setting_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in env_example_names() if f"`{n}`" not in readme]
    assert not missing, f"README's settings table lacks {missing}"


def test_the_dockerfile_builds_a_slim_non_root_image_with_static_files() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN pip install \.$", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "collectstatic --noinput" in text
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    assert cmd[:2] == ["gunicorn", "tms.wsgi:application"]
    # the throwaway secrets are given to the collectstatic step only, never as ENV
    env_block = "\n".join(re.findall(r"^ENV[\s\S]*?(?=^\S)", text, re.M))
    assert "SECRET_KEY" not in env_block and "FIELD_ENCRYPTION_KEYS" not in env_block


def test_the_dockerfiles_collectstatic_step_works_with_its_throwaway_values(tmp_path: Path) -> None:
    text = (ROOT / "Dockerfile").read_text()
    step = re.search(r"^RUN (SECRET_KEY=[\s\S]*?collectstatic --noinput)", text, re.M)
    assert step
    env = {"PATH": str(VENV_BIN), "DEBUG": "0", "VAR_DIR": str(tmp_path), "HOME": str(tmp_path)}
    for key, value in re.findall(r"\b([A-Z_]+)=(\S+)", step.group(1)):
        env[key] = value
    result = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "static" / "admin" / "css" / "base.css").exists()


def test_it_keeps_local_state_and_secrets_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "var/", ".env"):
        assert entry in ignored


def test_the_web_health_check_sends_the_allowed_host_and_reports_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tms import healthcheck

    seen: list[dict[str, str]] = []
    status = {"code": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **dict(self.headers)})
            self.send_response(status["code"])
            self.end_headers()
            self.wfile.write(b'{"status": "error", "database": "error"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/healthz"
    try:
        monkeypatch.setenv("ALLOWED_HOSTS", ".tms.example.com,other.example")
        assert healthcheck.main(["healthcheck", url]) == 0
        assert seen[-1]["path"] == "/healthz"
        assert seen[-1]["Host"] == "tms.example.com" and seen[-1]["X-Forwarded-Proto"] == "https"
        status["code"] = 503
        assert healthcheck.main(["healthcheck", url]) == 1
        server.shutdown()
        assert healthcheck.main(["healthcheck", url]) == 1  # nobody answers
        assert healthcheck.main(["healthcheck", "file:///etc/passwd"]) == 2
    finally:
        server.server_close()
