"""The import contracts in pyproject.toml run and hold, and the floors contract catches what it must."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

from tests.architecture.floors import FloorsContract

ROOT = Path(__file__).resolve().parents[2]


def test_every_contract_in_pyproject_runs_and_is_kept() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in contracts:
        assert f"{contract['name']} KEPT" in result.stdout
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout
    assert {c["type"] for c in contracts} == {"floors", "forbidden", "independence", "acyclic_siblings"}


def _graph(*imports: tuple[str, str]) -> grimp.ImportGraph:
    graph = grimp.ImportGraph()
    for module in ("app", "app.edge", "app.domain", "app.plumbing", "app.stray"):
        graph.add_module(module)
    for importer, imported in imports:
        graph.add_import(importer=importer, imported=imported, line_number=7, line_contents=f"import {imported}")
    return graph


def _check(graph: grimp.ImportGraph, floors: list[str]) -> dict[str, object]:
    contract = FloorsContract("floors", {"root_packages": ["app"]}, {"floors": floors})
    check = contract.check(graph, verbose=False)
    return {"kept": check.kept, **check.metadata}


FLOORS = ["edges: app.edge", "domains: app.domain, app.stray", "plumbing: app, app.plumbing"]


def test_downward_imports_keep_the_floors() -> None:
    graph = _graph(("app.edge", "app.domain"), ("app.domain", "app.plumbing"), ("app.edge", "app.plumbing"))
    assert _check(graph, FLOORS) == {"kept": True, "violations": [], "unplaced": [], "ambiguous": []}


def test_an_upward_import_breaks_the_floors_with_its_line() -> None:
    result = _check(_graph(("app.plumbing", "app.domain"), ("app.domain", "app.edge")), FLOORS)
    assert result["kept"] is False
    assert result["violations"] == [
        ("app.domain", "domains", "app.edge", "edges", [7]),
        ("app.plumbing", "plumbing", "app.domain", "domains", [7]),
    ]


def test_a_module_on_no_floor_breaks_the_contract() -> None:
    result = _check(_graph(), ["edges: app.edge", "domains: app.domain", "plumbing: app.plumbing"])
    assert result["kept"] is False
    assert result["unplaced"] == ["app", "app.stray"]


def test_the_most_specific_expression_places_a_module() -> None:
    graph = _graph()
    graph.add_module("app.domain.controllers")
    graph.add_import(importer="app.domain.controllers", imported="app.domain", line_number=1, line_contents="")
    floors = ["edges: app.*.controllers, app.edge", "domains: app.domain, app.stray", "plumbing: app, app.plumbing"]
    assert _check(graph, floors)["kept"] is True
    graph.add_import(importer="app.domain", imported="app.domain.controllers", line_number=2, line_contents="")
    assert _check(graph, floors)["violations"] == [("app.domain", "domains", "app.domain.controllers", "edges", [2])]
