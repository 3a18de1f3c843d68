"""The house's floors: the contract at the bottom, no import running back up, no circles."""

from __future__ import annotations

from tests.imports import import_graph

# Lowest first; a module may import its own floor or any floor below it.
FLOORS = ("router_model.contract", "router_model", "pipeline", "training",
          "training.evaluation", "training.monitoring", "training.benchmarks")


def floor(module: str) -> int:
    """The highest floor whose name prefixes the module."""
    return max(i for i, f in enumerate(FLOORS) if module == f or module.startswith(f + "."))


def test_the_contract_imports_no_project_code():
    assert import_graph()["router_model.contract"] == set()


def test_no_import_runs_back_up_a_floor():
    upward = [(m, d) for m, deps in import_graph().items() for d in deps
              if floor(d) > floor(m)]
    assert not upward, f"imports that run up a floor: {upward}"


def test_router_model_needs_neither_pipeline_nor_training():
    for module, deps in import_graph().items():
        if module.startswith("router_model"):
            assert not {d for d in deps if d.split(".")[0] in ("pipeline", "training")}, module


def test_there_are_no_import_circles():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            assert state.get(dep) != 1, f"import circle: {' -> '.join([*path, module, dep])}"
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
