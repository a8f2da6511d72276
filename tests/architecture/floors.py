"""An import-linter contract type: every module sits on one floor and imports only its own floor or lower ones."""

from __future__ import annotations

from dataclasses import dataclass

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck, InvalidContractOptions


@dataclass(frozen=True)
class _Floor:
    index: int
    name: str
    expressions: tuple[str, ...]


def _parse(raw: list[str]) -> list[_Floor]:
    """``"name: module.expr, other.*.expr"`` per floor, highest floor first."""
    floors = []
    for index, line in enumerate(raw):
        name, sep, rest = line.partition(":")
        expressions = tuple(e.strip() for e in rest.split(",") if e.strip())
        if not sep or not expressions:
            raise InvalidContractOptions({"floors": f"'{line}' is not 'name: module, module.*.expression'"})
        floors.append(_Floor(index, name.strip(), expressions))
    return floors


def _matches(graph: ImportGraph, expression: str) -> set[str]:
    """The modules an expression names, each with its descendants (a package stands for all it holds)."""
    roots = graph.find_matching_modules(expression) if "*" in expression else {expression} & graph.modules
    found = set(roots)
    for root in roots:
        found |= graph.find_descendants(root)
    return found


class FloorsContract(Contract):
    """Layers by module expressions: a module's floor is its most specific (longest) matching expression.

    Every module of the root packages must sit on a floor, so checking direct imports checks every chain.
    """

    type_name = "floors"

    floors = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        floors = _parse(self.floors)  # type: ignore[arg-type]
        placed: dict[str, tuple[int, _Floor]] = {}
        ambiguous: set[str] = set()
        for floor in floors:
            for expression in floor.expressions:
                specificity = expression.count(".") + 1
                for module in _matches(graph, expression):
                    held = placed.get(module)
                    if held is None or specificity > held[0]:
                        placed[module] = (specificity, floor)
                        ambiguous.discard(module)
                    elif specificity == held[0] and held[1] != floor:
                        ambiguous.add(module)
        roots = self.session_options.get("root_packages") or [self.session_options["root_package"]]
        internal = {m for m in graph.modules if m.split(".")[0] in roots}
        unplaced = sorted(internal - placed.keys())
        violations = []
        for importer in sorted(placed.keys() & internal):
            own = placed[importer][1]
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                if imported in placed and placed[imported][1].index < own.index:
                    lines = [d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported)]
                    violations.append((importer, own.name, imported, placed[imported][1].name, lines))
        return ContractCheck(
            kept=not (violations or unplaced or ambiguous),
            metadata={"violations": violations, "unplaced": unplaced, "ambiguous": sorted(ambiguous)},
        )

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, own, imported, higher, lines in check.metadata["violations"]:
            where = ", ".join(f"l.{n}" for n in lines)
            output.print_error(f"{importer} ({own}) must not import {imported} ({higher}) [{where}]", bold=False)
        for module in check.metadata["unplaced"]:
            output.print_error(f"{module} is on no floor: add it to one", bold=False)
        for module in check.metadata["ambiguous"]:
            output.print_error(f"{module} matches two floors equally: make one expression more specific", bold=False)
        output.new_line()
