"""Typed settings made of frozen dataclasses nested in one another (`config.typed`, a level
at a time).

`config.typed` merges a node onto its schema; OmegaConf marks every node of a frozen schema
read-only, so the merge cannot fill a frozen dataclass nested inside another. Here each
nested one (directly, or as the values of a dict) is typed on its own, under its full key,
and handed to `typed` ready-made: names, types and ranges are checked as `typed` checks them.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any, get_args, get_origin, get_type_hints

from router_model.config import plain, typed


def typed_tree(schema: type, node: Any, where: str) -> Any:
    """`schema` (a frozen dataclass, with frozen dataclasses inside) built from `node`."""
    values = plain(node)
    values = dict(values) if values is not None else {}
    hints = get_type_hints(schema)
    ready: dict[str, Any] = {}
    for f in fields(schema):
        if f.name not in values:  # left to `typed`, which names the missing key
            continue
        kind, value = hints[f.name], values[f.name]
        if is_dataclass(kind):
            ready[f.name] = typed_tree(kind, value, f"{where}.{f.name}")
        elif get_origin(kind) is dict and is_dataclass(get_args(kind)[1]):
            ready[f.name] = {str(k): typed_tree(get_args(kind)[1], v, f"{where}.{f.name}.{k}")
                             for k, v in (value or {}).items()}
    rest = {k: v for k, v in values.items() if k not in ready}
    return typed(schema, rest, where, **ready)
