"""The rule index against a plain scan of every rule, for generated rules and spans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from vf_otel import Rule
from vf_otel._rules import RuleSet, _Compiled

from .test_rules import span

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NAMES = ["a", "b"]
_VALUES = st.sampled_from(["/x", "/y", 200, 201, 404, True, 1, "2xx", "4xx"])
_CONDITIONS = st.one_of(
    _VALUES,
    st.lists(_VALUES, min_size=1, max_size=3),
    st.fixed_dictionaries({"min": st.sampled_from([200, 300])}),
    st.fixed_dictionaries({"prefix": st.sampled_from(["/", "/x"])}),
    st.fixed_dictionaries({"exists": st.booleans()}),
)
_RULES = st.builds(
    lambda event, name, kind, status, where: Rule(
        event=event, span_name=name, kind=kind, status=status, where=where
    ),
    event=st.sampled_from(["e1", "e2", "e3"]),
    name=st.one_of(
        st.none(), st.sampled_from(_NAMES), st.lists(st.sampled_from(_NAMES), min_size=1)
    ),
    kind=st.one_of(st.none(), st.sampled_from(["server", "client"])),
    status=st.one_of(st.none(), st.sampled_from(["ok", "error", "unset"])),
    where=st.dictionaries(st.sampled_from(["http.route", "code", "flag"]), _CONDITIONS, max_size=2),
)
_ATTRS = st.dictionaries(
    st.sampled_from(["http.route", "code", "flag"]),
    st.sampled_from(["/x", "/y", "/z", 200, 201, 404, 500, True, False, 1, 1.0, "2xx"]),
)


def _plain_scan(rules: Sequence[Rule], made: ReadableSpan, include_errors: bool) -> int | None:
    """The reference: every rule in order, every condition checked, no index."""
    attrs = made.attributes or {}
    status = made.status.status_code.name.lower()
    for index, rule in enumerate(rules):
        compiled = _Compiled(rule, index)
        if compiled.span_name is not None and made.name not in compiled.span_name:
            continue
        wanted = compiled.status or (
            {"ok", "unset", "error"} if include_errors else {"ok", "unset"}
        )
        if status not in wanted:
            continue
        if compiled.kind is not None and made.kind.name.lower() not in compiled.kind:
            continue
        if compiled.matches(attrs):
            return index
    return None


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    rules=st.lists(_RULES, max_size=6),
    name=st.sampled_from([*_NAMES, "c"]),
    attrs=_ATTRS,
    kind=st.sampled_from([SpanKind.SERVER, SpanKind.CLIENT]),
    status=st.sampled_from([StatusCode.UNSET, StatusCode.OK, StatusCode.ERROR]),
    include_errors=st.booleans(),
)
def test_indexed_matching_equals_a_plain_scan(
    rules: list[Rule],
    name: str,
    attrs: dict[str, Any],
    kind: SpanKind,
    status: StatusCode,
    include_errors: bool,
) -> None:
    """RuleSet.match_span (indexes, merged candidates) picks the rule a plain in-order scan
    of every rule picks, for any rules and span (the differential test of the index)."""
    made = span(name, attrs, kind=kind, status=status)
    match = RuleSet(rules).match_span(made, include_errors=include_errors)
    assert (None if match is None else match.index) == _plain_scan(rules, made, include_errors)
