"""deploy/ checked by the tools its formats have: hadolint, kubernetes-validate, the compose spec, systemd-analyze;
and every ``switchboard`` command line in it is one the CLI accepts."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from compose_spec import PyCompose

from service.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
# Where the units expect the installed command; verify needs an executable there.
INSTALLED = "/opt/switchboard/venv/bin/switchboard"


def _run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)


def test_the_dockerfile_passes_hadolint() -> None:
    done = _run(BIN / "hadolint", DEPLOY / "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_kubernetes_manifests_are_valid_resources_without_unknown_fields() -> None:
    manifests = sorted((DEPLOY / "k8s").glob("*.yaml"))
    done = _run(BIN / "kubernetes-validate", "--strict", *manifests)
    assert done.returncode == 0, done.stdout + done.stderr
    # Every resource in every file was checked, not only the first of each.
    resources = sum(1 for m in manifests for doc in yaml.safe_load_all(m.read_text()) if doc)
    assert done.stdout.count(" passed for resource ") == resources


def _compose() -> dict[str, Any]:
    # Loaded by YAML first: the file's `<<: *switchboard` merge keys are YAML's, which the spec parser does not read.
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # type: ignore[no-any-return]


def test_the_compose_file_follows_the_compose_spec() -> None:
    compose = PyCompose.from_json(json.dumps(_compose()))
    assert compose.service_names() == ["postgres", "redis", "migrate", "api", "worker"]


def test_the_compose_validator_refuses_what_compose_would() -> None:
    broken = _compose()
    broken["services"]["api"]["restart"] = "sometimes"
    with pytest.raises(ValueError, match="unknown variant `sometimes`"):
        PyCompose.from_json(json.dumps(broken))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_the_systemd_units_verify(tmp_path: Path) -> None:
    stub = tmp_path / "switchboard"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    for unit in UNITS:
        # The same unit with the command at a path that exists on this machine.
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED, str(stub)))
    done = _run("systemd-analyze", "verify", *(tmp_path / u.name for u in UNITS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.strip() == ""


def _command_lines() -> list[tuple[str, list[str]]]:
    """Every ``switchboard ...`` argv in deploy/: Dockerfile CMD/ENTRYPOINT, compose, Kubernetes, systemd."""
    found: list[tuple[str, list[str]]] = []
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if match := re.match(r"(CMD|ENTRYPOINT)\s+(\[.*\])", line):
            found.append((f"Dockerfile {match[1]}", json.loads(match[2])))
    for name, service in _compose()["services"].items():
        for key in ("command", "entrypoint"):
            if key in service:
                found.append((f"compose {name}.{key}", list(service[key])))
        if "healthcheck" in service:
            found.append((f"compose {name}.healthcheck", service["healthcheck"]["test"][1:]))
    for manifest in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(manifest.read_text()):
            for container in (doc or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                found.append((f"{manifest.name} {container['name']}", container.get("command", [])))
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    if argv := container.get(probe, {}).get("exec", {}).get("command"):
                        found.append((f"{manifest.name} {container['name']}.{probe}", argv))
    for unit in UNITS:
        for line in unit.read_text().splitlines():
            if match := re.match(r"(ExecStart\w*)=(.*)", line):
                found.append((f"{unit.name} {match[1]}", shlex.split(match[2])))
    return [(where, argv) for where, argv in found if argv and Path(argv[0]).name == "switchboard"]


def _parse(argv: list[str]) -> click.Command:
    """The command ``argv`` names, its options parsed as the CLI would (a usage error raises); nothing runs."""
    command: click.Command = main
    context = None
    args = argv[1:]
    while True:
        context = command.make_context(command.name or "switchboard", args, parent=context)
        if not isinstance(command, click.Group):
            return command
        name, sub, args = command.resolve_command(context, [*context._protected_args, *context.args])
        assert sub is not None, f"no command {name}"
        command = sub


def test_every_switchboard_command_line_in_deploy_is_one_the_cli_accepts() -> None:
    lines = _command_lines()
    where = {w.split()[0] for w, _ in lines}
    # All four kinds of deploy file were read, and the api, worker and migrations are each started somewhere.
    assert {"Dockerfile", "compose", "api.yaml", "worker.yaml", "switchboard-api.service"} <= where, where
    started = {_parse(argv).name for _, argv in lines}
    assert {"api", "worker", "upgrade"} <= started, started


def test_a_command_line_the_cli_does_not_know_is_caught() -> None:
    with pytest.raises(click.UsageError):
        _parse(["switchboard", "api", "--hots", "0.0.0.0"])
    with pytest.raises(click.UsageError):
        _parse(["switchboard", "serve"])
