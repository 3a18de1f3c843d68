"""The house's floors: the contract at the bottom, no import running back up, no circles.

Inside `router_model` the rooms have floors of their own: the ground (contract, config,
files), then `logs/` and `model/` side by side, then `decide/`, then `serve/`.
"""

from __future__ import annotations

from tests.imports import import_graph

# Lowest first; a module may import its own floor or any floor below it. Rooms that share a
# floor (logs and model) may not import each other.
FLOORS = (("router_model.contract",), ("router_model",), ("router_model.logs",
          "router_model.model"), ("router_model.decide",), ("router_model.serve",),
          ("pipeline",), ("training",), ("training.evaluation",), ("training.monitoring",),
          ("training.benchmarks",))


def room(module: str) -> tuple[int, str]:
    """(floor, room) of a module: the longest room name that prefixes it."""
    found = [(len(r), i, r) for i, rooms in enumerate(FLOORS) for r in rooms
             if module == r or module.startswith(r + ".")]
    _, floor, name = max(found)
    return floor, name


def test_the_contract_imports_no_project_code():
    assert import_graph()["router_model.contract"] == set()


def test_no_import_runs_back_up_a_floor():
    upward = [(m, d) for m, deps in import_graph().items() for d in deps
              if room(d)[0] > room(m)[0]]
    assert not upward, f"imports that run up a floor: {upward}"


def test_rooms_on_one_floor_keep_to_themselves():
    sideways = [(m, d) for m, deps in import_graph().items() for d in deps
                if room(d)[0] == room(m)[0] and room(d)[1] != room(m)[1]]
    assert not sideways, f"imports between rooms of one floor: {sideways}"


def test_router_model_needs_neither_pipeline_nor_training():
    for module, deps in import_graph().items():
        if module.startswith("router_model"):
            assert not {d for d in deps if d.split(".")[0] in ("pipeline", "training")}, module


def test_the_simulator_needs_no_model_and_no_service():
    """The log world model runs the rules and the gate only: a change to the model, the
    planner or the service never reruns `router-simulate`."""
    from tests.imports import closure

    reached = closure("pipeline.simulate_cli", import_graph())
    heavy = sorted(m for m in reached if m.startswith(("router_model.model",
                   "router_model.serve", "router_model.decide.policy",
                   "router_model.decide.planner")))
    assert not heavy, f"router-simulate reaches {heavy}"


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
