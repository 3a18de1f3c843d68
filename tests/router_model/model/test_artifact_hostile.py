"""A crafted artifact cannot crash, hang or steer the loader (issue 29, class 1).

Boosters are edited and their sha256 updated to match (a consistent forgery): truncated,
cyclic, with indices out of range or too big. Each must be an `ArtifactError` naming the
problem, before LightGBM reads a byte (before this, a truncated booster aborted the process
inside LightGBM's parser and a cyclic one hung it). Manifest edits are refused by the schema
with the key named; files are read only inside the root and within their caps; a path
written in the artifact never chooses where the process writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from router_model.model.artifact import (
    BOOSTER_FILE,
    LATEST_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    ArtifactError,
    load_artifact,
    probe,
    resolve_version_dir,
    save_artifact,
)
from tests.router_model.model.test_artifact import _fit


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile-artifacts")
    model, _ = _fit("lightgbm", "isotonic")
    save_artifact(model, root, data_hash="d" * 64, config={}, metrics={},
                  ladder_stats={"tiers": {"gpt-oss-20b": {
                      "schema_share": 0.1, "severe_share": 0.05,
                      "retry_pass_rate": float("nan"), "retries_seen": 0}},
                      "median_output_tokens": {"exercise": 300.0},
                      "gate_errors": {"tier": {"gpt-oss-20b": 0.02}, "field_tier": {},
                                      "audited_accepted": 10,
                                      "model": {"intercept": {"gpt-oss-20b": -1.0},
                                                "slope": -1.2, "rows": 300, "bad": 12}}},
                  extra_manifest={"lookup": {"exercise": {"gpt-oss-20b": 0.8}},
                                  "reference": {"tasks": 1}, "policy": {"lam": 0.05},
                                  "threshold_policy": {"knob": 0.8}})
    return root


def copy_version(saved: Path, dst: Path) -> Path:
    version = resolve_version_dir(saved)
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copytree(version, dst / version.name)
    (dst / LATEST_FILE).write_text(version.name)
    return dst / version.name


def forge(folder: Path, name: str, text: str | bytes) -> None:
    """Write `name` and update its sha256 in the manifest (a consistent forgery)."""
    data = text.encode() if isinstance(text, str) else text
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"][name] = hashlib.sha256(data).hexdigest()
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


def edit_tree(text: str, tree: int, key: str, change) -> str:
    """Replace `key`'s values in tree `tree` by change(list of tokens)."""
    block_start = text.index(f"Tree={tree}\n")
    line_start = text.index(f"\n{key}=", block_start) + 1
    line_end = text.index("\n", line_start)
    tokens = text[line_start + len(key) + 1:line_end].split(" ")
    return text[:line_start] + f"{key}=" + " ".join(change(tokens)) + text[line_end:]


def test_a_trained_model_loads_and_predicts_as_trained(saved):
    import lightgbm as lgb

    text = (resolve_version_dir(saved) / BOOSTER_FILE).read_text()
    artifact = load_artifact(saved)
    probe(artifact)
    X = np.random.default_rng(0).random((50, 7)) * 3
    X[::4, 3] = np.nan
    np.testing.assert_array_equal(artifact.model.estimator.booster_.predict(X),
                                  lgb.Booster(model_str=text).predict(X))


def test_wrong_tree_sizes_cannot_make_lightgbm_read_past_a_tree(saved, tmp_path):
    """LightGBM jumps through the text by tree_sizes; the checked text recomputes them, so
    a forged count (which made LightGBM read past the buffer) changes nothing."""
    folder = copy_version(saved, tmp_path)
    text = (folder / BOOSTER_FILE).read_text()
    forge(folder, BOOSTER_FILE, re.sub(r"tree_sizes=\d+", "tree_sizes=5", text, count=1))
    X = np.random.default_rng(1).random((20, 7))
    np.testing.assert_array_equal(load_artifact(tmp_path).model.predict_matrix(X),
                                  load_artifact(saved).model.predict_matrix(X))


def _cycle(tokens):
    # node 1 -> node 2 (as trained) and node 2 -> node 1: a loop below the root
    tokens = list(tokens)
    tokens[2] = "1"
    return tokens


CRAFTED_BOOSTERS = {
    "truncated in a tree": lambda t: t[:len(t) // 3],
    "truncated after the header": lambda t: t[:t.index("Tree=0") + 3],
    "tree_sizes for fewer trees": lambda t: re.sub(r"tree_sizes=\d+ ", "tree_sizes=", t, count=1),
    "a child pointing back up": lambda t: edit_tree(t, 0, "left_child",
                                                    lambda v: ["0", *v[1:]]),
    "a loop below the root": lambda t: edit_tree(t, 0, "right_child", _cycle),
    "a split feature out of range": lambda t: edit_tree(t, 1, "split_feature",
                                                        lambda v: ["99", *v[1:]]),
    "a leaf index out of range": lambda t: edit_tree(t, 2, "left_child",
                                                     lambda v: [*v[:-1], "-99"]),
    "a categorical split without its bitset": lambda t: edit_tree(
        t, 0, "num_cat", lambda v: ["0"]),
    "a leaf value that is not finite": lambda t: edit_tree(t, 0, "leaf_value",
                                                           lambda v: ["nan", *v[1:]]),
    "too many leaves": lambda t: edit_tree(t, 0, "num_leaves", lambda v: ["200000"]),
    "an array too short": lambda t: edit_tree(t, 3, "threshold", lambda v: v[:-1]),
    "a line without '='": lambda t: t.replace("is_linear=0\n", "is_linear\n", 1),
    "a NUL byte": lambda t: t.replace("shrinkage=1\n", "shrinkage=1\x00\n", 1),
    "another objective": lambda t: t.replace("objective=binary sigmoid:1",
                                             "objective=multiclass num_class:3", 1),
    "no end of trees": lambda t: t.replace("end of trees", "end of tree"),
}


@pytest.mark.parametrize("case", list(CRAFTED_BOOSTERS))
def test_a_crafted_booster_is_refused_before_lightgbm_reads_it(saved, tmp_path, case):
    folder = copy_version(saved, tmp_path)
    text = (folder / BOOSTER_FILE).read_text()
    forged = CRAFTED_BOOSTERS[case](text)
    assert forged != text
    forge(folder, BOOSTER_FILE, forged)
    with pytest.raises(ArtifactError, match="LightGBM model text is refused"):
        load_artifact(tmp_path)


# ---- the manifest: typed and range-checked, unknown keys ignored -------------------------------


def _manifest(saved: Path) -> dict:
    return json.loads((resolve_version_dir(saved) / MANIFEST_FILE).read_text())


MANIFEST_EDITS = {
    "router_version missing": (lambda m: m.pop("router_version"), "router_version"),
    "policy.lam a string": (lambda m: m.update(policy={"lam": "abc"}), "policy.lam"),
    "policy.lam NaN": (lambda m: m.update(policy={"lam": float("nan")}), "policy.lam"),
    "policy.lam negative": (lambda m: m.update(policy={"lam": -1.0}), "policy.lam"),
    "policy null": (lambda m: m.update(policy=None), "policy"),
    "threshold knob above 1": (lambda m: m.update(threshold_policy={"knob": 2}),
                               "threshold_policy.knob"),
    "ladder_stats a string": (lambda m: m.update(ladder_stats="fast"), "ladder_stats"),
    "gate_errors.model without slope": (
        lambda m: m["ladder_stats"]["gate_errors"]["model"].pop("slope"),
        "ladder_stats.gate_errors.model.slope"),
    "a share above 1": (lambda m: m["ladder_stats"]["tiers"]["gpt-oss-20b"].update(
        schema_share=3.0), "schema_share"),
    "a count as a bool": (lambda m: m["ladder_stats"]["gate_errors"].update(
        audited_accepted=True), "audited_accepted"),
    "a lookup rate above 1": (lambda m: m["lookup"]["exercise"].update({"gpt-oss-20b": 7}),
                              "lookup"),
    "schema_version true": (lambda m: m.update(schema_version=True), "schema_version"),
    "files not hashes": (lambda m: m["files"].update({MODEL_FILE: "x"}), "files"),
    "a version with a slash": (lambda m: m.update(router_version="../x"), "router_version"),
}


@pytest.mark.parametrize("case", list(MANIFEST_EDITS))
def test_a_manifest_edit_is_refused_naming_the_key(saved, tmp_path, case):
    edit, key = MANIFEST_EDITS[case]
    folder = copy_version(saved, tmp_path)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    edit(manifest)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=re.escape(key)):
        load_artifact(tmp_path)


def test_every_key_the_trainer_writes_passes_and_unknown_keys_are_ignored(saved, tmp_path):
    manifest = _manifest(saved)
    for key in ("router_version", "schema_version", "model_kind", "data_hash",
                "feature_columns", "library_versions", "config", "metrics", "ladder_stats",
                "lookup", "reference", "policy", "threshold_policy", "files"):
        assert key in manifest
    folder = copy_version(saved, tmp_path)
    manifest |= {"support": {"exercise": {"gpt-oss-20b": 120}}, "gate_version": 3,
                 "tiers": ["gpt-oss-20b", "qwen3-max"], "future": {"anything": [1, None]}}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert load_artifact(tmp_path).manifest["gate_version"] == 3


# ---- files: inside the root, regular, capped ---------------------------------------------


def test_a_file_symlinked_out_of_the_root_is_refused(saved, tmp_path):
    folder = copy_version(saved, tmp_path / "root")
    outside = tmp_path / "outside.txt"
    shutil.copy(folder / BOOSTER_FILE, outside)  # the very same bytes, but elsewhere
    (folder / BOOSTER_FILE).unlink()
    (folder / BOOSTER_FILE).symlink_to(outside)
    with pytest.raises(ArtifactError, match="leads outside the artifact root"):
        load_artifact(tmp_path / "root")


def test_a_symlink_inside_the_root_is_fine(saved, tmp_path):
    folder = copy_version(saved, tmp_path / "root")
    shutil.move(folder / BOOSTER_FILE, tmp_path / "root" / "shared-booster.txt")
    (folder / BOOSTER_FILE).symlink_to(tmp_path / "root" / "shared-booster.txt")
    probe(load_artifact(tmp_path / "root"))


def _in_time(fn, seconds: float = 20.0):
    """Run `fn` on a thread; fail (instead of hanging the suite) if it does not return."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.mark.parametrize("name", [LATEST_FILE, MANIFEST_FILE, BOOSTER_FILE])
def test_a_fifo_in_the_artifact_is_refused_not_waited_on(saved, tmp_path, name):
    folder = copy_version(saved, tmp_path)
    target = tmp_path / LATEST_FILE if name == LATEST_FILE else folder / name
    target.unlink()
    os.mkfifo(target)
    with pytest.raises(ArtifactError, match="not a regular file"):
        _in_time(lambda: load_artifact(tmp_path))


def test_an_oversized_manifest_is_refused_without_reading_it(saved, tmp_path):
    folder = copy_version(saved, tmp_path)
    manifest = (folder / MANIFEST_FILE).read_text()
    (folder / MANIFEST_FILE).write_text(manifest[:-1] + " " * 16_000_001 + "}")
    with pytest.raises(ArtifactError, match="more than the 16000000"):
        load_artifact(tmp_path)


@pytest.mark.parametrize(("content", "message"), [
    ("[" * 100_000 + "]" * 100_000, "corrupt"),
    ("[1, 2]", "schema"),
    ('{"schema_version": 2, "router_version": 1e999}', "schema"),
])
def test_a_manifest_that_is_no_manifest_is_an_artifact_error(saved, tmp_path, content, message):
    folder = copy_version(saved, tmp_path)
    (folder / MANIFEST_FILE).write_text(content)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(tmp_path)


def test_the_artifact_never_chooses_where_embeddings_are_cached(saved, tmp_path):
    """A path in model.json (spec.embedding_cache) is ignored: the loader's argument, or no
    disk cache at all, decides where brief embeddings may be written."""
    folder = copy_version(saved, tmp_path)
    data = json.loads((folder / MODEL_FILE).read_text())
    data["spec"]["embedding_cache"] = str(tmp_path / "outside" / "cache")
    forge(folder, MODEL_FILE, json.dumps(data))
    assert load_artifact(tmp_path).model.spec.embedding_cache is None
    mine = str(tmp_path / "mine")
    assert load_artifact(tmp_path, embedding_cache=mine).model.spec.embedding_cache == mine


def test_artifact_errors_end_a_command_on_one_line(saved, tmp_path):
    """ArtifactError is a user error: `user_errors` prints one line, never a traceback."""
    from router_model.cli_errors import USER_ERRORS

    with pytest.raises(USER_ERRORS):
        load_artifact(tmp_path / "nothing-here")
