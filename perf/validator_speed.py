"""The attempt-log column validator against a pandera schema derived from the same contract.

    python perf/validator_speed.py /tmp/big/attempt_logs.parquet    # needs `pip install pandera`

Both validate the same flat frame (read once, not timed) and report the rows they would
quarantine; pandera runs lazily, so its failure cases are the per-row reasons. The pandera
schema is built from `column_rules()`, i.e. from the pydantic record, like the validator's
own rules. Prints seconds and the ratio; never asserts.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from router_model.logs.validate import ISO_8601, column_rules, validate_frame


def pandera_schema():
    import pandera.pandas as pa

    def is_type(kind):
        types = {"str": str, "bool": (bool, np.bool_)}[kind]
        return pa.Check(lambda s: s.isna() | s.map(lambda v: isinstance(v, types)),
                        name=f"is_{kind}")

    finite = pa.Check(lambda s: ~np.isinf(pd.to_numeric(s, errors="coerce")), name="finite")
    numeric = pa.Check(lambda s: s.isna() | pd.to_numeric(s, errors="coerce").notna(),
                       name="numeric")
    columns = {}
    for rule in column_rules():
        checks = []
        if rule.kind in ("int", "float"):
            checks += [numeric, finite]
            if rule.kind == "int":
                checks += [pa.Check(lambda s: (s.isna() | (pd.to_numeric(s, errors="coerce") % 1
                                                           == 0)), name="whole"),
                           pa.Check(lambda s: s.isna() | (pd.to_numeric(s, errors="coerce").abs()
                                                          < 2.0**63), name="int64")]
            if rule.ge is not None:
                checks.append(pa.Check.ge(rule.ge, ignore_na=True))
            if rule.gt is not None:
                checks.append(pa.Check.gt(rule.gt, ignore_na=True))
            if rule.le is not None:
                checks.append(pa.Check.le(rule.le, ignore_na=True))
        elif rule.kind in ("str", "bool"):
            checks.append(is_type(rule.kind))
            if rule.min_length:
                checks.append(pa.Check.str_length(min_value=rule.min_length))
        elif rule.kind == "datetime":
            checks.append(pa.Check(
                lambda s: pd.api.types.is_datetime64_any_dtype(s)
                or s.astype("string").str.fullmatch(ISO_8601).fillna(False), name="iso8601"))
        elif rule.kind == "literal":
            checks.append(pa.Check.isin(list(rule.choices)))
        columns[rule.name] = pa.Column(None, checks=checks, nullable=not rule.required,
                                       required=rule.required)
    columns[r"analysis\..*"] = pa.Column(None, regex=True, required=False, nullable=True)
    return pa.DataFrameSchema(columns, unique=["task_id", "attempt"], strict=True)


def pandera_reasons(schema, frame: pd.DataFrame) -> pd.Series:
    from pandera.errors import SchemaErrors

    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as err:
        cases = err.failure_cases
        cases = cases[cases["index"].notna()]
        return cases.groupby("index").apply(
            lambda g: "; ".join(f"{c}: {k}" for c, k in zip(g["column"], g["check"],
                                                            strict=True)))
    return pd.Series(dtype=object)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--corrupt", type=int, default=1000,
                        help="rows to break (every tenth column rule gets a bad value)")
    args = parser.parse_args()
    frame = pd.read_parquet(args.log)
    rng = np.random.default_rng(0)
    bad_rows = rng.choice(len(frame), args.corrupt, replace=False)
    frame = frame.astype({"prompt_tokens": "float64", "cost_usd": "float64",
                          "timestamp": object})
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    frame.loc[bad_rows[0::4], "prompt_tokens"] = np.inf
    frame.loc[bad_rows[1::4], "cost_usd"] = -1.0
    frame.loc[bad_rows[2::4], "timestamp"] = "now"
    frame.loc[bad_rows[3::4], "error_kind"] = "boom"
    print(f"{len(frame):,} rows, {len(bad_rows):,} broken on purpose")

    started = time.perf_counter()
    _, reasons = validate_frame(frame)
    ours = time.perf_counter() - started
    print(f"validate_frame: {ours:.2f} s, {int((reasons != '').sum()):,} rows flagged")
    try:
        schema = pandera_schema()
    except ImportError:
        print("pandera is not installed: pip install pandera")
        return
    started = time.perf_counter()
    flagged = pandera_reasons(schema, frame)
    theirs = time.perf_counter() - started
    print(f"pandera (lazy): {theirs:.2f} s, {len(flagged):,} rows flagged "
          f"({theirs / ours:.1f}x validate_frame)")


if __name__ == "__main__":
    main()
