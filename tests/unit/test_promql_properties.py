"""Properties: no selector or value can change a query's structure; quantities round-trip."""

from __future__ import annotations

import re
from decimal import ROUND_UP, Decimal
from typing import Literal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tgi_autoscaler.promql import (
    Matcher,
    MatchOp,
    Operator,
    QueryBuilder,
    Requirement,
    SelectorError,
    compile_template,
    format_matchers,
    format_quantity,
    is_valid_label_name,
    parse_matchers,
    parse_selector,
    regex_escape,
    sanitize_label_name,
)

pytestmark = pytest.mark.unit

# Lone surrogates cannot be encoded, so no real label value holds one.
NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)

TEMPLATE = compile_template('sum by (pod) (tgi_queue_size{job="tgi",$matchers}) / count(up{$matchers})')
BUILDER = QueryBuilder(template=TEMPLATE, namespace_label="namespace", label_map={})

_name = st.from_regex(r"[A-Za-z]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?", fullmatch=True)
_prefix = st.lists(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True), min_size=1, max_size=3
).map(".".join)
label_keys = st.one_of(_name, st.builds(lambda p, n: f"{p}/{n}", _prefix, _name)).filter(
    lambda key: sanitize_label_name(key) != "namespace" and is_valid_label_name(sanitize_label_name(key))
)
label_values = st.one_of(st.just(""), _name.filter(lambda v: len(v) <= 63))
namespaces = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    key = draw(label_keys)
    op = draw(
        st.sampled_from(
            [
                Operator.EQUALS,
                Operator.DOUBLE_EQUALS,
                Operator.NOT_EQUALS,
                Operator.IN,
                Operator.NOT_IN,
                Operator.EXISTS,
                Operator.DOES_NOT_EXIST,
            ]
        )
    )
    if op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        return Requirement(key, op)
    if op in (Operator.IN, Operator.NOT_IN):
        values = draw(st.lists(label_values, min_size=1, max_size=4, unique=True))
        return Requirement(key, op, tuple(sorted(values)))
    return Requirement(key, op, (draw(label_values),))


def _strip_template(query: str) -> list[str]:
    """Split a rendered query back into the matcher lists, asserting the template text is intact."""
    first, middle, last = TEMPLATE.segments
    assert query.startswith(first)
    assert query.endswith(last)
    body = query[len(first) : len(query) - len(last)]
    halves = body.split(middle)
    assert len(halves) >= 2
    # Both placeholders receive the same list, so the body is list + middle + list.
    size = (len(body) - len(middle)) // 2
    assert body[:size] == body[size + len(middle) :]
    assert body[size : size + len(middle)] == middle
    return [body[:size]]


@given(st.lists(requirements(), max_size=6), namespaces)
@settings(max_examples=150, deadline=None)
def test_generated_matchers_parse_back_to_exactly_the_intended_ones(
    reqs: list[Requirement], namespace: str
) -> None:
    selector = ",".join(str(r) for r in reqs)
    built = BUILDER.build(namespace=namespace, selector=selector)
    (matcher_text,) = _strip_template(built.promql)
    parsed = parse_matchers(matcher_text)
    assert parsed == list(built.matchers)
    assert parsed[0] == Matcher("namespace", MatchOp.EQUAL, namespace)
    assert all(m.label != "namespace" for m in parsed[1:])
    expected_labels = {sanitize_label_name(r.key) for r in reqs}
    assert {m.label for m in parsed[1:]} == expected_labels


@given(st.lists(requirements(), max_size=6))
@settings(max_examples=200, deadline=None)
def test_selector_string_form_round_trips(reqs: list[Requirement]) -> None:
    selector = ",".join(str(r) for r in reqs)
    assert list(parse_selector(selector)) == sorted(reqs, key=lambda r: r.key)


@given(st.text(max_size=80), namespaces)
@settings(max_examples=200, deadline=None)
def test_arbitrary_selector_text_is_refused_or_confined_to_the_namespace(text: str, namespace: str) -> None:
    try:
        built = BUILDER.build(namespace=namespace, selector=text)
    except SelectorError:
        return
    (matcher_text,) = _strip_template(built.promql)
    parsed = parse_matchers(matcher_text)
    assert parsed[0] == Matcher("namespace", MatchOp.EQUAL, namespace)
    assert [m for m in parsed if m.label == "namespace"] == parsed[:1]


@given(
    st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True),
    st.sampled_from(list(MatchOp)),
    st.text(alphabet=st.characters(exclude_categories=NO_SURROGATES), max_size=40),
)
@settings(max_examples=200, deadline=None)
def test_no_value_escapes_its_quotes(label: str, op: MatchOp, value: str) -> None:
    matchers = [Matcher(label, op, value), Matcher("after", MatchOp.EQUAL, "x")]
    assert parse_matchers(format_matchers(matchers)) == matchers


@given(
    st.lists(
        st.text(alphabet=st.characters(exclude_categories=NO_SURROGATES), max_size=12), min_size=1, max_size=5
    ),
    st.text(max_size=12),
)
@settings(max_examples=150, deadline=None)
def test_escaped_alternation_matches_exactly_its_values(values: list[str], other: str) -> None:
    pattern = re.compile("^(?:" + "|".join(regex_escape(v) for v in values) + ")$", re.DOTALL)
    for value in values:
        assert pattern.fullmatch(value)
    assume(other not in values)
    assert not pattern.fullmatch(other)


_SUFFIX = {"m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def _parse_quantity(text: str) -> Decimal:
    match = re.fullmatch(r"(-?[0-9]+)(m|k|M|G|T|P|E|e[0-9]+)?", text)
    assert match is not None, text
    suffix = match.group(2) or ""
    exponent = int(suffix[1:]) if suffix.startswith("e") else _SUFFIX[suffix]
    return Decimal(match.group(1)).scaleb(exponent)


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**24), max_value=10**24, places=6))
@settings(max_examples=200, deadline=None)
def test_quantity_is_the_exact_milli_value_in_canonical_form(value: Decimal) -> None:
    text = format_quantity(value)
    milli = (value * 1000).to_integral_value(rounding=ROUND_UP)
    assert _parse_quantity(text) * 1000 == milli
    mantissa = re.match(r"-?([0-9]+)", text)
    assert mantissa is not None
    # Canonical: no trailing zero group could be moved into a larger suffix.
    if text not in ("0",) and not text.endswith("m"):
        assert not mantissa.group(1).endswith("000") or "e" in text


_metric_names = st.from_regex(r"[a-z_][a-z0-9_:]{0,15}", fullmatch=True).filter(
    lambda name: name.lower() not in {"and", "or", "unless", "by", "without", "on", "ignoring", "bool",
                                      "offset", "inf", "nan", "start", "end", "group_left", "group_right",
                                      "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar",
                                      "topk", "bottomk", "count_values", "quantile", "limitk", "limit_ratio",
                                      "atan2"}
)  # fmt: skip
_constants = st.lists(
    st.tuples(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda n: n != "namespace"),
              st.text(alphabet=st.characters(exclude_categories=NO_SURROGATES), max_size=10)),
    max_size=2,
)  # fmt: skip


@given(
    st.lists(st.tuples(_metric_names, _constants), min_size=1, max_size=3),
    st.sampled_from(["sum", "max", "avg by (pod)"]),
    st.sampled_from([" + ", " / on(pod) group_left ", " or "]),
    st.text(max_size=40),
)
@settings(max_examples=150, deadline=None)
def test_the_template_text_outside_the_placeholder_is_never_changed(
    selectors: list[tuple[str, list[tuple[str, str]]]], aggregation: str, joiner: str, matcher_text: str
) -> None:
    parts = []
    for metric, constants in selectors:
        fixed = "".join(f"{label}={format_matchers([Matcher(label, MatchOp.EQUAL, v)])[len(label) + 1 :]},"
                        for label, v in constants)  # fmt: skip
        parts.append(f"{aggregation}({metric}{{{fixed}$matchers}})")
    template_text = joiner.join(parts)
    compiled = compile_template(template_text)
    assert len(compiled.segments) == len(selectors) + 1
    assert compiled.render(matcher_text) == template_text.replace("$matchers", matcher_text)
