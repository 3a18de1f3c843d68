"""The service under hostile input (issue 12, items 1, 5, 6, 7, 9, 10, 11, 12): no 5xx, errors
that name the field and the problem without echoing the input, a body limit, strict bearer
auth, degraded readiness without leaked paths, O(1) rotation with dropped-content metrics,
and an API fuzz over every endpoint of a real server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from router_model.contract import EXAMPLE_TASK, Analysis
from router_model.logs.decisions import DecisionLog
from router_model.model.artifact import LATEST_FILE, resolve_version_dir, save_artifact
from router_model.serve.requests import (
    BRIEF_MAX_CHARS,
    EscalateIn,
    RequestValueError,
    TaskIn,
    check_plain_json,
    surely_plain,
)
from tests.helpers import metric_samples, metric_values
from tests.router_model.model.test_artifact import _fit
from tests.router_model.serve.test_app import running

TASK = EXAMPLE_TASK
JSON = {"content-type": "application/json"}
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """A small real LightGBM artifact (fitted in a second), so this module needs no training."""
    root = tmp_path_factory.mktemp("hardening-artifacts") / "router"
    model, _ = _fit("lightgbm", "isotonic")
    save_artifact(model, root, data_hash="d" * 64, config={}, metrics={})
    return root


@pytest.fixture(scope="module")
def server(small_root, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROUTER_ADMIN_TOKEN", TOKEN)
        tmp = tmp_path_factory.mktemp("hardening-serve")
        with running(tmp, str(small_root), reload_poll_s=0, max_body_bytes=200_000,
                     decision_log_max_bytes=20_000, decision_log_backups=2) as (url, service):
            yield url, service, tmp


def post(url: str, path: str, raw: bytes | str, client: httpx.Client | None = None,
         headers: dict | None = None) -> httpx.Response:
    content = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return (client or httpx).post(f"{url}{path}", content=content, headers=headers or JSON)


def locs(response: httpx.Response) -> list[str]:
    return [".".join(map(str, e["loc"])) for e in response.json()["detail"]]


# ---- item 1: non-finite numbers and lone surrogates --------------------------------------------

HOSTILE = [
    ("/v1/route", '{"field":"exercise","prompt_tokens":1,"analysis":{"complexity":NaN}}',
     "body.analysis.complexity", "NaN is not a finite number"),
    ("/v1/route", '{"field":"exercise","prompt_tokens":Infinity}', "body.prompt_tokens",
     "Infinity is not a finite number"),
    ("/v1/route", '{"field":"exercise","prompt_tokens":1e400}', "body.prompt_tokens",
     "overflows a 64-bit float"),
    ("/v1/route", '{"field":"exercise","prompt_tokens":1,"analysis":{"x":-Infinity}}',
     "body.analysis.x", "-Infinity is not a finite number"),
    ("/v1/route/batch",
     '{"tasks":[{"field":"exercise","prompt_tokens":1,"context_tokens":1e999}]}',
     "body.tasks.0.context_tokens", "overflows"),
    ("/v1/escalate", '{"tier":"gpt-oss-20b","schema_valid":true,"similarity":NaN}',
     "body.similarity", "NaN is not a finite number"),
    ("/v1/route", '{"field":"\\ud800","prompt_tokens":1}', "body.field", "lone UTF-16 surrogate"),
    ("/v1/route", '{"field":"exercise","prompt_tokens":1,"analysis":{"\\udfff":1}}',
     "body.analysis", "lone UTF-16 surrogate"),
    ("/v1/escalate", '{"tier":"\\udbff","schema_valid":true}', "body.tier", "surrogate"),
    ("/v1/route", '{"field":"exercise","prompt_tokens":1,"analysis":{"section_count":'
     f'{2**70}}}}}', "body.analysis.section_count", "outside the 64-bit integer range"),
    ("/v1/route", f'{{"field":"exercise","prompt_tokens":1,"analysis":{{"x":[{-2**64}]}}}}',
     "body.analysis.x.0", "outside the 64-bit integer range"),
]


@pytest.mark.parametrize(("path", "raw", "loc", "message"), HOSTILE)
def test_non_finite_numbers_and_surrogates_get_a_422_and_the_connection_survives(
        server, path, raw, loc, message):
    url, _, _ = server
    with httpx.Client() as client:  # one keep-alive connection for both requests
        r = post(url, path, raw, client)
        assert r.status_code == 422, r.text
        assert loc in locs(r) and message in r.text, r.text
        assert client.post(f"{url}/v1/route", json=TASK).status_code == 200


def test_a_valid_surrogate_pair_is_fine(server):
    url, _, _ = server
    r = post(url, "/v1/route", '{"field":"exercise \\ud83d\\ude00","prompt_tokens":1}')
    assert r.status_code == 200 and r.json()["unknown_categories"]["field"] == "exercise \U0001f600"


@pytest.mark.parametrize("task", [
    {**TASK, "analysis": {"complexity": float("nan")}},
    {**TASK, "analysis": {"extra": float("inf")}},
    {**TASK, "analysis": {"extra": [1.0, float("nan")]}},
    {**TASK, "field": "\ud800"},
    {**TASK, "brief": "ok \udfff"},
    {**TASK, "analysis": {"domain": "\ud800"}},
])
def test_the_in_process_client_refuses_the_same_values(task):
    with pytest.raises(ValidationError) as err:
        TaskIn.model_validate(task)
    assert any(reason in str(err.value) for reason in (
        "finite", "surrogate", "unicode string", "greater than", "less than"))
    with pytest.raises(ValidationError):
        EscalateIn.model_validate({"schema_valid": True, "similarity": float("nan")})


# Any BMP character, lone surrogates included (hypothesis leaves them out by default).
_TEXT = st.characters(min_codepoint=0, max_codepoint=0xFFFF, exclude_categories=())
_ANALYSIS_VALUES = st.one_of(
    st.none(), st.booleans(), st.floats(), st.integers(min_value=-2**70, max_value=2**70),
    st.text(alphabet=_TEXT, max_size=8))


@given(st.dictionaries(st.sampled_from(sorted(Analysis.model_fields)), _ANALYSIS_VALUES,
                       max_size=4),
       st.text(alphabet=_TEXT, min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_the_quick_plain_check_refuses_exactly_what_the_full_walk_refuses(analysis, field):
    """`surely_plain` only decides when the walk may be skipped: a task is refused by the
    plain-JSON checks, with the walk's message, exactly when walking every value would
    refuse it (pydantic refuses some values first, e.g. a surrogate in a length-capped
    string)."""
    task = {**TASK, "field": field, "analysis": analysis}
    try:
        parsed = Analysis.model_validate(analysis)
    except ValidationError:  # refused by type or range before any plain-JSON check
        return
    expected = []  # what the walk says of each part (the model reports one of them)
    for value, where in (({k: getattr(parsed, k) for k in Analysis.model_fields},
                          ("analysis",)), (field, ("field",))):
        try:
            check_plain_json(value, where)
        except RequestValueError as exc:
            expected.append(exc.message)
    try:
        TaskIn.model_validate(task)
    except ValidationError as exc:
        error = exc.errors()[0]
        if error["type"] != "value_error":  # pydantic's own refusal (type, length, unicode)
            return
        assert any(message in error["msg"] for message in expected), (error, expected)
    else:
        assert not expected


@given(st.lists(_ANALYSIS_VALUES, max_size=6))
@settings(max_examples=300, deadline=None)
def test_surely_plain_values_pass_the_full_walk(values):
    """Whatever `surely_plain` lets skip the walk, the walk would have let through."""
    if surely_plain(values):
        check_plain_json(values)


# ---- item 5: admin auth -------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "status"), [
    ("Bearer s3cret-tok\xe9n".encode("latin-1"), 401),   # non-ASCII: a 401, not a 500
    ("Bearer \xff\xfe".encode("latin-1"), 401),
    (TOKEN.encode(), 401),                                 # no scheme
    (f"Basic {TOKEN}".encode(), 401),                      # another scheme
    (f"Bearer{TOKEN}".encode(), 401),
    (f"Bearer {TOKEN}x".encode(), 401),
    (f"Bearer {TOKEN}".encode(), 200),
    (f"bearer  {TOKEN}".encode(), 200),                    # schemes are case-insensitive
])
def test_admin_auth_needs_the_bearer_scheme_and_survives_any_header(server, header, status):
    url, _, _ = server
    r = httpx.post(f"{url}/admin/reload", headers={"Authorization": header})
    assert r.status_code == status, r.text
    assert TOKEN not in r.text


# ---- item 6: body limit, caps on extra analysis keys, no echo ------------------------------------


def test_a_body_over_the_limit_gets_a_413(server):
    url, _, _ = server
    huge = json.dumps({**TASK, "analysis": {"blob": "x" * 10_000_000}})
    r = post(url, "/v1/route", huge)
    assert r.status_code == 413 and len(r.content) < 500
    assert "serve.max_body_bytes=200000" in r.json()["detail"][0]["msg"]

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(50):
            yield b"x" * 10_000

    r = httpx.post(f"{url}/v1/route", content=chunks(), headers=JSON)
    assert r.status_code == 413
    assert httpx.post(f"{url}/v1/route", json=TASK).status_code == 200


@pytest.mark.parametrize(("analysis", "message"), [
    ({"blob": "x" * 150_000}, "more than 1000"),
    ({f"k{i}": i for i in range(33)}, "33 extra keys is more than 32"),
    ({"k" * 65: 1}, "more than 64"),
    ({"nested": [[[[[[[[[[1]]]]]]]]]] * 60}, "more than 1000"),
])
def test_extra_analysis_keys_are_capped_and_never_echoed_or_logged(server, analysis, message):
    url, service, tmp = server
    log = tmp / "decisions" / "decisions.jsonl"
    service.decision_log.flush()  # earlier tests' decisions may still be queued
    before = log.stat().st_size if log.exists() else 0
    r = httpx.post(f"{url}/v1/route", json={**TASK, "analysis": analysis})
    assert r.status_code == 422 and message in r.text, r.text
    assert len(r.content) < 1_000
    service.decision_log.flush()
    assert (log.stat().st_size if log.exists() else 0) == before


def test_a_422_never_echoes_a_large_input(server):
    url, _, _ = server
    for body in ({**TASK, "field": "f" * 150_000}, {**TASK, "brief": ["b"] * 30_000},
                 {**TASK, "course_id": ["c"] * 20_000}, {"tasks": "t" * 150_000}):
        r = httpx.post(f"{url}/v1/route", json=body)
        assert r.status_code == 422 and len(r.content) < 1_000, (len(r.content), r.text[:300])


@pytest.fixture(scope="module")
def default_limits(small_root, tmp_path_factory):
    """router-serve with conf/serve's own body limits (4 MB, 256 KB for one task)."""
    with running(tmp_path_factory.mktemp("default-limits"), str(small_root),
                 reload_poll_s=0) as (url, _):
        yield url


NESTED = b"[" * 28 + b"]" * 28


@pytest.mark.parametrize("path, body", [
    ("/v1/route/batch", b'{"tasks":[' + b",".join([NESTED] * 60_000) + b"]}"),
    ("/v1/route", b'{"field":"x","prompt_tokens":1,"analysis":{"a":['
     + b",".join([NESTED] * 4_000) + b"]}}")])
def test_nested_brackets_are_counted_before_parsing(default_limits, path, body):
    """Arrays nested deep have no comma to count, yet each is walked: 60,000 of them held
    the event loop for 5.9 s. They count now, and one task's body counts for less."""
    r = post(default_limits, path, body)
    assert r.status_code == 413 and "JSON values and containers" in r.text, r.text[:200]


def test_an_empty_body_is_a_422_on_every_post(server):
    """/v1/route reads its body itself (it also takes OpenAI requests): an empty one was a
    500 there while the other endpoints answered 422."""
    url, _, _ = server
    for path in ("/v1/route", "/v1/route/batch", "/v1/escalate"):
        r = post(url, path, b"")
        assert r.status_code == 422 and "body" in r.text, (path, r.status_code, r.text[:200])


def test_a_long_brief_is_cut_not_refused_and_the_log_keeps_the_cut(server):
    """A batch of long lesson briefs runs past the limit; the brief is a feature, not data."""
    url, service, tmp = server
    r = httpx.post(f"{url}/v1/route", json={**TASK, "brief": "cut-me:" + "b" * 150_000})
    assert r.status_code == 200, r.text[:300]
    service.decision_log.flush()
    records = [json.loads(line) for f in (tmp / "decisions").glob("decisions.jsonl*")
               for line in f.read_text().splitlines()]
    briefs = [r["task"]["brief"] for r in records
              if str(r["task"].get("brief", "")).startswith("cut-me:")]
    assert [len(b) for b in briefs] == [BRIEF_MAX_CHARS]


def test_the_decision_log_never_writes_nan(tmp_path):
    log = DecisionLog(tmp_path / "d.jsonl")
    log.write("route", {"field": "exercise"}, {"decision_id": "a", "p": float("nan")})
    log.write("route", {"field": "exercise"}, {"decision_id": "b", "p": 0.5})
    log.close()
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert [json.loads(x)["decision"]["decision_id"] for x in lines] == ["b"]
    assert log.dropped["unwritten_lines"] == 1


# ---- item 7 at the service: LATEST out of the root ----------------------------------------------


def test_a_latest_out_of_the_root_is_never_served(small_root, tmp_path):
    root = tmp_path / "root"
    version = resolve_version_dir(small_root)
    import shutil

    shutil.copytree(version, root / version.name)
    shutil.copytree(version, tmp_path / "elsewhere" / "v")
    (root / LATEST_FILE).write_text(version.name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROUTER_ADMIN_TOKEN", TOKEN)
        with running(tmp_path / "serve", str(root), reload_poll_s=0.1) as (url, service):
            assert service.policy.learned
            (root / LATEST_FILE).write_text("../elsewhere/v")
            r = httpx.post(f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 409 and "not a version folder directly inside" in r.text
            assert str(tmp_path) not in r.text
            time.sleep(0.5)  # the watcher sees the change and refuses it too
            assert service.policy.learned and service.reloads["ok"] == 0


# ---- item 9: degraded readiness, no absolute paths ----------------------------------------------


@pytest.mark.parametrize("ready_when_degraded", [True, False])
def test_a_degraded_start_is_reported_and_leaks_no_paths(small_root, tmp_path,
                                                         ready_when_degraded):
    root = tmp_path / "artifacts"
    root.mkdir()
    (root / LATEST_FILE).write_text("no-such-version")
    with running(tmp_path, str(root), reload_poll_s=0,
                 ready_when_degraded=str(ready_when_degraded).lower()) as (url, _):
        r = httpx.get(f"{url}/readyz")
        ready = r.json()
        assert (ready["status"], ready["mode"], ready["ready"]) == (
            "degraded", "rules", ready_when_degraded)
        assert r.status_code == (200 if ready_when_degraded else 503)
        assert metric_values(httpx.get(f"{url}/metrics").text, "router_degraded",
                             replica=ready["replica"]) == [1.0]
        decision = httpx.post(f"{url}/v1/route", json=TASK)
        for text in (r.text, decision.text):
            assert str(tmp_path) not in text and "/tmp" not in text, text
        assert decision.json()["fallback_reason"].startswith("artifact_error")


def test_a_healthy_start_is_ok_and_not_degraded(server):
    url, _, _ = server
    ready = httpx.get(f"{url}/readyz").json()
    assert (ready["status"], ready["mode"], ready["ready"]) == ("ok", "learned", True)
    assert metric_values(httpx.get(f"{url}/metrics").text, "router_degraded",
                         replica=ready["replica"]) == [0.0]


# ---- item 10: rotation is O(1) and what it drops is counted -------------------------------------


def test_rotation_never_scans_the_folder_whatever_the_backup_count(tmp_path, monkeypatch):
    """Rotation is one rename and one open: it never lists the folder or walks the backups
    (before, it tried every backup number up to `backups`: about 2 s per rotation here)."""
    import os
    from pathlib import Path

    log = DecisionLog(tmp_path / "d.jsonl", max_bytes=300, backups=200_000)
    calls = {"list": 0, "exists": 0}
    real_scandir, real_listdir, real_exists = os.scandir, os.listdir, Path.exists

    def scandir(*args, **kwargs):
        calls["list"] += 1
        return real_scandir(*args, **kwargs)

    def listdir(*args, **kwargs):
        calls["list"] += 1
        return real_listdir(*args, **kwargs)

    def exists(self, *args, **kwargs):
        calls["exists"] += 1
        return real_exists(self, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(Path, "exists", exists)
    for i in range(40):  # every write rotates
        log.write("route", {"field": "exercise", "i": i}, {"decision_id": "x" * 200})
    log.close()
    monkeypatch.undo()
    assert calls == {"list": 0, "exists": 0}
    assert len(list(tmp_path.iterdir())) == 40


def test_dropped_rotations_show_in_metrics(server):
    url, service, _ = server
    with httpx.Client() as client:
        for _ in range(120):  # about 1 KB per line, 20 KB per file, 2 backups kept
            assert client.post(f"{url}/v1/route", json=TASK).status_code == 200
    service.decision_log.wait_for_cleanup()
    text = httpx.get(f"{url}/metrics").text
    samples = metric_samples(text)
    size = [value for name, _, value in samples
            if name == "router_decision_log_dropped_bytes_total"]
    lines = {labels["reason"]: value for name, labels, value in samples
             if name == "router_decision_log_dropped_lines_total"}
    assert size[0] > 0 and lines["rotated"] > 0 and lines["unwritten"] == 0


# ---- item 11: errors that say what is wrong ------------------------------------------------------


@pytest.mark.parametrize(("raw", "headers", "status", "message"), [
    (b'{"field": "ex\xffercise", "prompt_tokens": 1}', JSON, 422, "not valid UTF-8 (byte 13"),
    (b"[" * 150_000 + b"]" * 150_000, JSON, 413, "max_body_bytes"),
    (b"[" * 20_000 + b"]" * 20_000, JSON, 422, "nested too deeply"),
    (b'{"field": "exercise", "prompt_tokens": 1, "analysis": {"a": ' + b"[" * 40 + b"]" * 40
     + b"}}", JSON, 422, "nested more than 32 levels deep"),
    (b'{"field": "exercise", "prompt_tokens": ' + b"9" * 5000 + b"}", JSON, 422,
     "an integer in the body has more than 4300 digits"),
    (b'{"field": "exercise", "prompt_tokens": 1', JSON, 422, "not valid JSON"),
    (b"field=exercise", {"content-type": "text/plain"}, 415, "got 'text/plain'"),
    (b'{"field": "exercise"}', {}, 415, "Content-Type: application/json"),
    (b'{"field": "exercise"}', {"content-type": "application/x-www-form-urlencoded"}, 415,
     "application/json"),
])
def test_body_errors_name_their_cause(server, raw, headers, status, message):
    url, _, _ = server
    r = httpx.post(f"{url}/v1/route", content=raw, headers=headers)
    assert r.status_code == status and message in r.text, r.text
    assert "There was an error parsing the body" not in r.text


# ---- item 12: tests write only under tmp paths ---------------------------------------------------


def test_the_repository_guard_sees_a_write(tmp_path):
    from tests.conftest import snapshot_outputs

    (tmp_path / "data" / "generated").mkdir(parents=True)
    before = snapshot_outputs(tmp_path)
    (tmp_path / "data" / "generated" / "decisions.jsonl").write_text("{}\n")
    assert snapshot_outputs(tmp_path) != before


# ---- the API fuzz ---------------------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(-(10**30), 10**30)
           | st.floats() | st.text(max_size=30)
           | st.sampled_from(["\ud800", "\udfff", "x\ud83d", "\x00", "\u202e"]))
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10) | st.just("\ud800"), inner, max_size=4),
    max_leaves=12)
KEYS = st.sampled_from(["field", "prompt_tokens", "context_tokens", "expected_output_tokens",
                        "analysis", "brief", "course_id", "task_id", "tasks", "tier",
                        "decision_id", "similarity", "schema_valid", "error_kind",
                        "retry_count", "extra"])
BODY = st.dictionaries(KEYS, JSON_VALUES, max_size=8) | JSON_VALUES
SPECIALS = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999",
                            b"9" * 400, b'"\\ud800"', b"[" * 3000, b"{" * 50])
RAW = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda body, special: json.dumps(body, allow_nan=True).encode(
        "utf-8", "surrogatepass").replace(b"null", special, 1), BODY, SPECIALS),
    st.builds(lambda n: b'{"field": "exercise", "prompt_tokens": 1, "brief": "' + b"b" * n
              + b'"}', st.integers(0, 400_000)),
)
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8",
                                 "text/plain", "application/x-www-form-urlencoded", "",
                                 "application/problem+json", "multipart/form-data"])
PATHS = st.sampled_from(["/v1/route", "/v1/route?explain=true", "/v1/route/batch",
                         "/v1/escalate", "/admin/reload", "/healthz", "/readyz", "/metrics"])


@pytest.mark.slow
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=PATHS, raw=RAW, content_type=CONTENT_TYPES, wrap=st.booleans())
def test_api_fuzz_never_gets_a_5xx(server, path, raw, content_type, wrap):
    url, _, _ = server
    if wrap and raw[:1] == b"{":
        raw = b'{"tasks": [' + raw + b"]}"
    headers = {"content-type": content_type} if content_type else {}
    headers["authorization"] = "Bearer wrong"
    r = httpx.post(f"{url}{path}", content=raw, headers=headers)
    assert r.status_code < 500, (path, raw[:200], r.status_code, r.text[:300])
    assert len(r.content) < 20_000 or r.status_code == 200, len(r.content)


@pytest.mark.slow
def test_the_server_is_healthy_after_the_fuzz(server):
    url, _, tmp = server
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.post(f"{url}/v1/route", json=TASK).status_code == 200
    for f in (tmp / "decisions").iterdir():
        for line in f.read_text(encoding="utf-8").splitlines():
            json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the decision log"))
