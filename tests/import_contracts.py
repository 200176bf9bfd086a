"""Two import-linter contract types the built-in ones cannot express (see ``[tool.importlinter]``
in pyproject.toml and ``docs/architecture.md``).

``only_imports``: every direct import made by ``source_modules`` (and their descendants) that
leaves them must match ``allowed_modules`` (a module or a package, with import-linter's
wildcards), optionally restricted to imports into ``scope`` and with the standard library always
allowed when ``allow_stdlib`` is true; ``exempt_importers`` may import anything. It states what a
package MAY use, where ``forbidden`` can only list what it may not.

``acyclic_modules``: no cycle at all among the modules of ``root_modules`` (a strongly connected
component of two or more modules in the direct-import graph), wherever the modules sit. The
built-in ``acyclic_siblings`` looks at siblings of one package; this also catches a cycle that
runs through several packages' submodules.
"""
from __future__ import annotations

import sys

import grimp
import networkx as nx
from importlinter import Contract, ContractCheck, fields, output
from importlinter.domain import helpers


def _names(graph: grimp.ImportGraph, expressions) -> set[str]:
    """The graph's modules matched by ``expressions``, each with its descendants."""
    tops = {m.name for m in helpers.module_expressions_to_modules(graph=graph, expressions=expressions,
                                                                    as_packages=False)}
    return {m for m in graph.modules if _within(m, tops)}


def _within(module: str, packages: set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


class OnlyImportsContract(Contract):
    type_name = "only_imports"

    source_modules = fields.ListField(subfield=fields.ModuleExpressionField())
    allowed_modules = fields.ListField(subfield=fields.ModuleExpressionField())
    scope = fields.ListField(subfield=fields.ModuleExpressionField(), required=False)
    exempt_importers = fields.ListField(subfield=fields.ModuleExpressionField(), required=False)
    allow_stdlib = fields.BooleanField(required=False, default=True)

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        sources = _names(graph, self.source_modules)
        allowed = {e.expression for e in self.allowed_modules}
        allowed_names = _names(graph, self.allowed_modules)
        scope = _names(graph, self.scope) if self.scope else None
        exempt = _names(graph, self.exempt_importers) if self.exempt_importers else set()
        bad = []
        for importer in sorted(sources - exempt):
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                if imported in sources or imported in allowed_names:
                    continue
                if scope is not None and imported not in scope:
                    continue
                if self.allow_stdlib and imported.split(".")[0] in sys.stdlib_module_names:
                    continue
                bad.append((importer, imported))
        return ContractCheck(kept=not bad, metadata={"bad": bad, "allowed": sorted(allowed)})

    def render_broken_contract(self, check: ContractCheck) -> None:
        output.print(f"allowed: {', '.join(check.metadata['allowed'])}")
        for importer, imported in check.metadata["bad"]:
            output.print_error(f"{importer} imports {imported}")


class AcyclicModulesContract(Contract):
    type_name = "acyclic_modules"

    root_modules = fields.ListField(subfield=fields.ModuleExpressionField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        modules = _names(graph, self.root_modules)
        g = nx.DiGraph()
        for m in modules:
            g.add_node(m)
            g.add_edges_from((m, i) for i in graph.find_modules_directly_imported_by(m) if i in modules)
        cycles = []
        for component in nx.strongly_connected_components(g):
            if len(component) > 1:
                cycles.append(nx.find_cycle(g.subgraph(component)))
        return ContractCheck(kept=not cycles, metadata={"cycles": sorted(cycles)})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error(" -> ".join([a for a, _ in cycle] + [cycle[0][0]]))
