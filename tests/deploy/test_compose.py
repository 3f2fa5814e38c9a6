"""docker-compose.yml, the Dockerfile and .env.example checked statically (no Docker engine here).

What `docker compose config` would catch and a few things it would not: every service can get an
image, dependencies point at services that can satisfy their condition, named volumes are
declared, every variable the file reads is documented in .env.example, secrets only ever come
from the environment, the celery profile stays optional, and the variable names are the ones
the platform's settings modules read.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from retention import settings as retention_settings
from serving import settings as serving_settings
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

CORE_SERVICES = {
    "postgres",
    "mlflow",
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "api",
}
CELERY_SERVICES = {"redis", "airflow-worker", "airflow-flower"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; $${...} is an escape.
VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<rest>[^}]*)\}")
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|FERNET", re.IGNORECASE)
PLACEHOLDER = "change-me"
PLATFORM_ENV = {
    retention_settings.ENV_HOME,
    retention_settings.ENV_DATABASE_URL,
    retention_settings.ENV_MLFLOW_URI,
    retention_settings.ENV_AIRFLOW_HOME,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed file (PyYAML resolves the `<<` merges of the x- anchors)."""
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose also allows a list of KEY=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _example_variables() -> dict[str, str | None]:
    """{name: value} of .env.example; commented-out `# NAME=value` lines count as documented (None)."""
    out: dict[str, str | None] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(\S*)", line.strip())
        if match:
            out[match.group(2)] = None if match.group(1) else match.group(3)
    return out


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in depends.items()}


def _airflow_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if name.startswith("airflow-")}


def test_the_file_parses_and_defines_the_stack(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == CORE_SERVICES | CELERY_SERVICES


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name, s in services.items() if not (s.get("image") or s.get("build"))]
    assert missing == []
    built = {name for name, s in services.items() if s.get("build")}
    assert built == (CORE_SERVICES | CELERY_SERVICES) - {"postgres", "redis"}  # the project image


def test_every_variable_is_documented_in_env_example() -> None:
    used = {m.group("name") for m in VARIABLE.finditer(COMPOSE.read_text())}
    documented = _example_variables()
    assert used - set(documented) == set(), "add these to .env.example"
    assert set(documented) - used <= {"RETENTION_DATABASE_URL", "MLFLOW_TRACKING_URI"}  # host-side hints


def test_required_variables_are_set_in_env_example_with_placeholders() -> None:
    required = {
        m.group("name") for m in VARIABLE.finditer(COMPOSE.read_text()) if "?" in (m.group("op") or "")
    }
    documented = _example_variables()
    assert required, "secrets must be required (${VAR:?message})"
    for name in required:
        assert documented.get(name) is not None, f"{name} is required: set it (uncommented) in .env.example"
        if SECRET_NAME.search(name):
            assert documented[name] == PLACEHOLDER, (
                f"{name}: .env.example holds a placeholder, never a secret"
            )


def test_no_literal_secrets_in_the_file(services: dict[str, dict[str, Any]]) -> None:
    text = COMPOSE.read_text()
    for match in VARIABLE.finditer(text):  # a secret never has a default value to fall back on
        if SECRET_NAME.search(match.group("name")):
            assert match.group("op") in (":?", "?"), f"{match.group(0)} must be required, without a default"
    for name, service in services.items():
        for key, value in _env(service).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), f"{name}.{key} must come from .env"
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):  # user:password@host URLs
                assert re.fullmatch(r"\$\{\w*PASSWORD\w*:\?[^}]+\}", password), (
                    f"{name}.{key}: literal password"
                )
    assert not re.search(r"(?i)(password|token|secret)\s*[:=]\s*['\"]?(?!\$\{)[A-Za-z0-9]{8,}", text)


def test_dependencies_exist_and_their_conditions_can_be_met(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert condition in CONDITIONS, f"{name} -> {target}: unknown condition {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], (
                    f"{name} waits for {target} to be healthy: no healthcheck"
                )
            if condition == "service_completed_successfully":  # a one-off job, not a daemon
                assert services[target].get("restart", "no") == "no", f"{target} must not restart"


def test_long_running_services_have_health_checks(services: dict[str, dict[str, Any]]) -> None:
    one_offs = {name for name, s in services.items() if s.get("restart", "no") == "no"}
    assert one_offs == {"airflow-init"}
    for name in set(services) - one_offs:
        check = services[name].get("healthcheck") or {}
        assert check.get("test"), f"{name} has no health check"


def test_named_volumes_are_declared_and_bind_mounts_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert declared == used, "declared volumes no service uses"


def test_the_celery_profile_is_optional(services: dict[str, dict[str, Any]]) -> None:
    profiled = {name: s.get("profiles") for name, s in services.items() if s.get("profiles")}
    assert profiled == dict.fromkeys(CELERY_SERVICES, ["celery"])
    for name in set(services) - CELERY_SERVICES:  # the default stack starts without the profile
        assert not set(_depends_on(services[name])) & CELERY_SERVICES, f"{name} needs the celery profile"
    scheduler = _env(services["airflow-scheduler"])
    assert scheduler["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    assert scheduler["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert services["airflow-worker"]["command"][:3] == ["airflow", "celery", "worker"]


def test_airflow_components_share_one_configuration(services: dict[str, dict[str, Any]]) -> None:
    airflow = _airflow_services(services)
    assert {"airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"} <= set(
        airflow
    )
    configs = {
        name: {k: v for k, v in _env(s).items() if k.startswith("AIRFLOW__")} for name, s in airflow.items()
    }
    reference = configs["airflow-scheduler"]
    for name, config in configs.items():
        assert config == reference, f"{name} differs from the scheduler's Airflow settings"
    assert reference["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
    assert reference["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-api-server:8080/execution/"
    assert reference["AIRFLOW__CORE__DAGS_FOLDER"] == "/app/dags"
    commands = {tuple(s["command"][:2]) for s in airflow.values() if isinstance(s.get("command"), list)}
    assert {
        ("airflow", "api-server"),
        ("airflow", "scheduler"),
        ("airflow", "dag-processor"),
        ("airflow", "triggerer"),
    } <= commands
    assert "airflow db migrate" in " ".join(services["airflow-init"]["command"])


def test_environment_names_are_the_ones_the_settings_read(services: dict[str, dict[str, Any]]) -> None:
    known = {value for key, value in vars(retention_settings).items() if key.startswith("ENV_")}
    known |= {value for key, value in vars(serving_settings).items() if key.startswith("ENV_")}
    for name, service in services.items():
        env = _env(service)
        for key in env:
            if key.startswith("RETENTION_"):
                assert key in known, f"{name}.{key} is read by no settings module"
        if name.startswith("airflow-") or name == "api":  # they run platform code
            assert set(env) >= PLATFORM_ENV, f"{name} lacks {PLATFORM_ENV - set(env)}"
            assert env[retention_settings.ENV_DATABASE_URL].endswith("@postgres:5432/retention")
            assert env[retention_settings.ENV_MLFLOW_URI] == "http://mlflow:5000"
    api = _env(services["api"])
    assert {serving_settings.ENV_MARKETING_TOKEN, serving_settings.ENV_ADMIN_TOKEN} <= set(api)


def test_mlflow_runs_on_postgres_with_an_artifact_volume_and_allowed_hosts(
    services: dict[str, dict[str, Any]],
) -> None:
    mlflow = services["mlflow"]
    env = _env(mlflow)
    assert mlflow["command"][:2] == ["mlflow", "server"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert env["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    destination = env["MLFLOW_ARTIFACTS_DESTINATION"]
    assert any(v.split(":")[1] == destination for v in mlflow["volumes"]), "artifacts must be on a volume"
    assert env["MLFLOW_SERVER_ALLOWED_HOSTS"]
    assert "/health" in " ".join(mlflow["healthcheck"]["test"])


def test_the_api_serves_retention_on_all_interfaces_with_a_health_check(
    services: dict[str, dict[str, Any]],
) -> None:
    api = services["api"]
    assert api["command"][:2] == ["retention", "serve"] and "0.0.0.0" in api["command"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])


def test_published_ports_listen_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


def test_postgres_init_creates_the_three_databases() -> None:
    sql = (ROOT / "docker" / "postgres-init.sql").read_text()
    assert {d.lower() for d in re.findall(r"CREATE DATABASE (\w+)", sql)} == {
        "retention",
        "mlflow",
        "airflow",
    }


def test_dockerfile_builds_a_locked_non_root_image_that_serves_the_api() -> None:
    dockerfile = DOCKERFILE.read_text()
    instructions = [
        line.split(None, 1) for line in dockerfile.splitlines() if line and not line.startswith("#")
    ]
    assert ["FROM", "python:3.11-slim"] in instructions
    users = [args for op, *rest in instructions if op == "USER" for args in rest]
    assert users and users[-1] not in ("root", "0")
    cmd = [args for op, *rest in instructions if op in ("CMD", "ENTRYPOINT") for args in rest]
    assert cmd and "retention" in cmd[-1]
    assert "-c requirements.lock" in dockerfile  # the locked stack
    assert "download.pytorch.org/whl/cpu" in dockerfile and "torch==2.13.0" in dockerfile


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".venv", "var", ".git", ".env"} <= patterns
