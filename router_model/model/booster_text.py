"""LightGBM's text model, checked before LightGBM (or lleaves) reads a byte of it.

LightGBM's own parser trusts its input: it jumps through the text by the byte counts in
`tree_sizes` (a wrong count reads past the end of the buffer), a malformed tree raises
inside an OpenMP loop (which aborts the whole process), and prediction follows child
indices without checking them (a child pointing back up loops forever; an index out of
range reads memory that is not the model's). So an artifact's `booster.txt` is never handed
to LightGBM as it is. `checked_model_text` parses it here, in Python, and checks:

- the header: a binary model with one class and one tree per iteration, `max_feature_idx`
  matching the feature spec, one name and one info per feature;
- every tree: its arrays have the lengths `num_leaves` implies, every number is a plain
  finite decimal, split features and categorical bitsets are in range, decision types are
  ones LightGBM writes, and the children form a tree: every node but the root and every
  leaf has exactly one parent, a node's children come after it (which LightGBM's growth
  guarantees and which rules out a cycle), and the depth is capped;
- sizes: trees, leaves per tree, all leaves together and depth are capped (module
  constants), so a model cannot make loading, predicting or compiling unbounded.

Then it writes the text LightGBM will read from the checked values: the header lines it
knows, `tree_sizes` recomputed, the trees, and nothing else (the parameters section is
dropped; predictions do not read it). For a model LightGBM wrote, the trees come out byte
for byte as they went in (tested), so predictions are unchanged.

Why a validator and not a child process: a child that loads the booster can survive a
crash, but a probe prediction in it cannot prove that every path through every tree ends
(a cycle reached only by some inputs would hang a later request, not the probe), and the
same structure feeds lleaves' compiler; the structural check covers both, costs no process
per reload, and names the tree and the rule that failed. Compiling, which can take minutes
and gigabytes, does run in a child process (`compiled.py`).
"""

from __future__ import annotations

import re

import numpy as np

MAX_TREES = 10_000
MAX_LEAVES_PER_TREE = 131_072  # LightGBM's own limit for num_leaves
MAX_TOTAL_LEAVES = 2_000_000
MAX_DEPTH = 512
MAX_FEATURES = 100_000
INT32 = 2**31

_INT = r"-?\d{1,10}"
_FLOAT = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d{1,4})?"
_INTS = re.compile(rf"(?:{_INT}(?: {_INT})*)?")
_FLOATS = re.compile(rf"(?:{_FLOAT}(?: {_FLOAT})*)?")
_NAME = re.compile(r"[!-<>-~]{1,256}")  # printable ASCII without space or '='
_INFO = re.compile(rf"none|\[{_FLOAT}:{_FLOAT}\]|{_INT}(?::{_INT})*")
_OBJECTIVE = re.compile(rf"binary sigmoid:({_FLOAT})")

HEADER_KEYS = ("version", "num_class", "num_tree_per_iteration", "label_index",
               "max_feature_idx", "objective", "feature_names", "feature_infos", "tree_sizes")
# A tree's lines, in the order LightGBM writes them, and each one's element type.
TREE_KEYS = {"num_leaves": "int", "num_cat": "int", "split_feature": "ints",
             "split_gain": "floats", "threshold": "floats", "decision_type": "ints",
             "left_child": "ints", "right_child": "ints", "leaf_value": "floats",
             "leaf_weight": "floats", "leaf_count": "ints", "internal_value": "floats",
             "internal_weight": "floats", "internal_count": "ints", "cat_boundaries": "ints",
             "cat_threshold": "ints", "is_linear": "int", "shrinkage": "float"}
# Per node (n - 1 of them) and per leaf (n of them), for a tree of n > 1 leaves.
NODE_ARRAYS = ("split_feature", "split_gain", "threshold", "decision_type", "left_child",
               "right_child", "internal_value", "internal_weight", "internal_count")
LEAF_ARRAYS = ("leaf_value", "leaf_weight", "leaf_count")
REQUIRED = ("num_leaves", "num_cat", "leaf_value")
REQUIRED_SPLIT = ("split_feature", "threshold", "left_child", "right_child")


class BoosterTextError(ValueError):
    """The model text is not a LightGBM model this router can load; says where and why."""


def checked_model_text(text: str, n_features: int | None = None) -> str:
    """The text LightGBM should read for `text`, or `BoosterTextError` naming the problem.

    `n_features`: the width the feature spec encodes (the model must read exactly that).
    """
    if not isinstance(text, str) or not text.isascii():
        raise BoosterTextError("the model text is not ASCII")
    if "\r" in text or "\x00" in text:
        raise BoosterTextError("the model text holds carriage returns or NUL bytes")
    body, found, _ = text.partition("\nend of trees\n")
    if not found:
        raise BoosterTextError("the model text has no 'end of trees' line (truncated?)")
    blocks = [b for b in body.split("\n\n") if b.strip("\n")]
    if not blocks:
        raise BoosterTextError("the model text is empty")
    header = _header(blocks[0], n_features)
    trees = blocks[1:]
    if not trees:
        raise BoosterTextError("the model has no trees")
    if len(trees) > MAX_TREES:
        raise BoosterTextError(f"the model has {len(trees)} trees, more than {MAX_TREES}")
    declared = header.pop("tree_sizes")
    if len(declared.split(" ")) != len(trees):
        raise BoosterTextError(f"tree_sizes lists {len(declared.split(' '))} trees, the text "
                               f"holds {len(trees)} (truncated or edited)")
    n_feat = int(header["max_feature_idx"]) + 1
    total = 0
    out_trees = []
    for i, block in enumerate(trees):
        lines, leaves = _tree(block.strip("\n"), i, n_feat)
        total += leaves
        if total > MAX_TOTAL_LEAVES:
            raise BoosterTextError(f"the model has more than {MAX_TOTAL_LEAVES} leaves in all")
        out_trees.append("\n".join(lines) + "\n\n\n")
    head = [f"{k}={header[k]}" for k in HEADER_KEYS if k != "tree_sizes"]
    sizes = " ".join(str(len(t)) for t in out_trees)
    return ("tree\n" + "\n".join(head) + f"\ntree_sizes={sizes}\n\n" + "".join(out_trees)
            + "end of trees\n\npandas_categorical:null\n")


def _pairs(lines: list[str], where: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for line in lines:
        key, eq, value = line.partition("=")
        if not eq:
            raise BoosterTextError(f"{where}: line {line[:40]!r} is not key=value")
        if key in pairs:
            raise BoosterTextError(f"{where}: {key} appears twice")
        pairs[key] = value
    return pairs


def _header(block: str, n_features: int | None) -> dict[str, str]:
    lines = block.strip("\n").split("\n")
    if lines[0] != "tree":
        raise BoosterTextError("the model text does not start with LightGBM's 'tree' line")
    pairs = _pairs(lines[1:], "header")
    unknown = sorted(set(pairs) - set(HEADER_KEYS))
    if unknown:
        raise BoosterTextError(f"header: unknown keys {[k[:40] for k in unknown[:5]]} (this "
                               "router reads binary LightGBM v4 models as router-train writes"
                               " them)")
    missing = [k for k in HEADER_KEYS if k not in pairs]
    if missing:
        raise BoosterTextError(f"header: missing {missing}")
    expect = {"version": "v4", "num_class": "1", "num_tree_per_iteration": "1",
              "label_index": "0"}
    for key, value in expect.items():
        if pairs[key] != value:
            raise BoosterTextError(f"header: {key}={pairs[key][:40]!r}, expected {value}")
    if not re.fullmatch(r"\d{1,6}", pairs["max_feature_idx"]):
        raise BoosterTextError("header: max_feature_idx is not a small whole number")
    n = int(pairs["max_feature_idx"]) + 1
    if n > MAX_FEATURES:
        raise BoosterTextError(f"header: {n} features, more than {MAX_FEATURES}")
    if n_features is not None and n != n_features:
        raise BoosterTextError(f"the booster reads {n} features, the feature spec "
                               f"encodes {n_features}")
    objective = _OBJECTIVE.fullmatch(pairs["objective"])
    if not objective or not 0 < float(objective.group(1)) < 1e6:
        raise BoosterTextError(f"header: objective={pairs['objective'][:40]!r}; expected "
                               "'binary sigmoid:<positive number>'")
    names, infos = pairs["feature_names"].split(" "), pairs["feature_infos"].split(" ")
    if len(names) != n or not all(_NAME.fullmatch(x) for x in names):
        raise BoosterTextError(f"header: feature_names must be {n} names of printable "
                               "characters")
    if len(infos) != n or not all(_INFO.fullmatch(x) for x in infos):
        raise BoosterTextError(f"header: feature_infos must be {n} entries as LightGBM "
                               "writes them")
    if not _INTS.fullmatch(pairs["tree_sizes"]) or not pairs["tree_sizes"]:
        raise BoosterTextError("header: tree_sizes is not a list of whole numbers")
    return pairs


def _numbers(value: str, kind: str, where: str) -> np.ndarray:
    if not (_INTS if kind == "ints" else _FLOATS).fullmatch(value):
        raise BoosterTextError(f"{where}: not a list of plain decimal numbers")
    if not value:
        return np.zeros(0, dtype=np.int64 if kind == "ints" else float)
    if kind == "ints":
        return np.array(value.split(" "), dtype=np.int64)
    array = np.array(value.split(" "), dtype=float)
    if not np.isfinite(array).all():
        raise BoosterTextError(f"{where}: a number is not finite")
    return array


def _tree(block: str, index: int, n_features: int) -> tuple[list[str], int]:
    """A tree's checked lines (in LightGBM's order) and its number of leaves."""
    where = f"Tree={index}"
    lines = block.split("\n")
    if lines[0] != where:
        raise BoosterTextError(f"tree {index}: expected a line {where!r}, found "
                               f"{lines[0][:40]!r}")
    pairs = _pairs(lines[1:], where)
    unknown = sorted(set(pairs) - set(TREE_KEYS))
    if unknown:
        raise BoosterTextError(f"{where}: unknown keys {[k[:40] for k in unknown[:5]]}")
    missing = [k for k in REQUIRED if k not in pairs]
    if missing:
        raise BoosterTextError(f"{where}: missing {missing}")
    values: dict[str, np.ndarray] = {}
    for key, value in pairs.items():
        kind = TREE_KEYS[key]
        if kind in ("int", "float"):
            if not re.fullmatch(_INT if kind == "int" else _FLOAT, value):
                raise BoosterTextError(f"{where}: {key}={value[:40]!r} is not a number")
            kind += "s"
        values[key] = _numbers(value, kind, f"{where} {key}")
    n = int(values["num_leaves"][0])
    if not 1 <= n <= MAX_LEAVES_PER_TREE:
        raise BoosterTextError(f"{where}: num_leaves={n}, expected 1..{MAX_LEAVES_PER_TREE}")
    if "is_linear" in values and int(values["is_linear"][0]) != 0:
        raise BoosterTextError(f"{where}: linear trees are not supported")
    if len(values["leaf_value"]) != n:
        raise BoosterTextError(f"{where}: leaf_value has {len(values['leaf_value'])} values "
                               f"for {n} leaves")
    if n > 1:
        _check_splits(values, n, n_features, where)
    return [where, *(f"{k}={pairs[k]}" for k in TREE_KEYS if k in pairs)], n


def _check_splits(values: dict[str, np.ndarray], n: int, n_features: int, where: str) -> None:
    missing = [k for k in REQUIRED_SPLIT if k not in values]
    if missing:
        raise BoosterTextError(f"{where}: missing {missing}")
    for key in NODE_ARRAYS:
        if key in values and len(values[key]) != n - 1:
            raise BoosterTextError(f"{where}: {key} has {len(values[key])} values for "
                                   f"{n - 1} splits")
    for key in LEAF_ARRAYS:
        if key in values and len(values[key]) != n:
            raise BoosterTextError(f"{where}: {key} has {len(values[key])} values for "
                                   f"{n} leaves")
    for key in ("leaf_count", "internal_count"):
        if key in values and ((values[key] < 0) | (values[key] >= INT32)).any():
            raise BoosterTextError(f"{where}: {key} out of range")
    feature = values["split_feature"]
    if ((feature < 0) | (feature >= n_features)).any():
        raise BoosterTextError(f"{where}: a split_feature is outside 0..{n_features - 1}")
    decision = values.get("decision_type", np.zeros(n - 1, dtype=np.int64))
    if ((decision < 0) | (decision > 15) | (((decision >> 2) & 3) == 3)).any():
        raise BoosterTextError(f"{where}: a decision_type is not one LightGBM writes")
    left, right = values["left_child"], values["right_child"]
    nodes = np.arange(n - 1)
    children = np.concatenate([left, right])
    parents = np.concatenate([nodes, nodes])
    inner = children >= 0
    if (children[inner] >= n - 1).any() or (children[~inner] < -n).any():
        raise BoosterTextError(f"{where}: a child index is out of range")
    # Every split but the root, and every leaf, has exactly one parent; a split's children
    # come after it (LightGBM numbers splits as it grows the tree), so there is no cycle.
    if not np.array_equal(np.sort(children[inner]), np.arange(1, n - 1)) or \
            not np.array_equal(np.sort(~children[~inner]), np.arange(n)):
        raise BoosterTextError(f"{where}: the children do not form a tree (a node or leaf "
                               "is reached twice or never)")
    if (children[inner] <= parents[inner]).any():
        raise BoosterTextError(f"{where}: a split points back to an earlier node (a cycle)")
    depth = np.zeros(n - 1, dtype=np.int64)
    parent_of = np.empty(n - 1, dtype=np.int64)
    parent_of[children[inner]] = parents[inner]
    for node in range(1, n - 1):  # parents come first, so one pass sets every depth
        depth[node] = depth[parent_of[node]] + 1
    if n > 1 and int(depth.max()) + 1 > MAX_DEPTH:
        raise BoosterTextError(f"{where}: deeper than {MAX_DEPTH}")
    categorical = (decision & 1).astype(bool)
    num_cat = int(values["num_cat"][0])
    if categorical.any() or num_cat:
        _check_categorical(values, categorical, num_cat, where)


def _check_categorical(values: dict[str, np.ndarray], categorical: np.ndarray, num_cat: int,
                       where: str) -> None:
    if not 0 <= num_cat <= len(categorical):
        raise BoosterTextError(f"{where}: num_cat={num_cat} out of range")
    if num_cat and ("cat_boundaries" not in values or "cat_threshold" not in values):
        raise BoosterTextError(f"{where}: categorical splits need cat_boundaries and "
                               "cat_threshold")
    threshold = values["threshold"][categorical]
    if ((threshold != np.floor(threshold)) | (threshold < 0) | (threshold >= num_cat)).any():
        raise BoosterTextError(f"{where}: a categorical split names no bitset")
    if not num_cat:
        return
    bounds, bits = values["cat_boundaries"], values["cat_threshold"]
    if len(bounds) != num_cat + 1 or bounds[0] != 0 or (np.diff(bounds) < 0).any() \
            or bounds[-1] != len(bits):
        raise BoosterTextError(f"{where}: cat_boundaries do not cut cat_threshold into "
                               f"{num_cat} bitsets")
    if ((bits < 0) | (bits >= 2**32)).any():
        raise BoosterTextError(f"{where}: a cat_threshold word is not 32-bit")
