"""Label selector parsing matches k8s.io/apimachinery/pkg/labels.Parse, messages included."""

from __future__ import annotations

import pytest

from tgi_autoscaler.promql import Operator, Requirement, SelectorParseError, parse_selector

pytestmark = pytest.mark.unit

KEY_NAME_RULE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("   ", ()),
        ("a=b", (Requirement("a", Operator.EQUALS, ("b",)),)),
        ("a==b", (Requirement("a", Operator.DOUBLE_EQUALS, ("b",)),)),
        ("a!=b", (Requirement("a", Operator.NOT_EQUALS, ("b",)),)),
        ("a=", (Requirement("a", Operator.EQUALS, ("",)),)),
        ("a", (Requirement("a", Operator.EXISTS),)),
        ("!a", (Requirement("a", Operator.DOES_NOT_EXIST),)),
        (" a in ( y , x ) ", (Requirement("a", Operator.IN, ("x", "y")),)),
        ("a in (x,x)", (Requirement("a", Operator.IN, ("x",)),)),
        ("a notin ()", (Requirement("a", Operator.NOT_IN, ("",)),)),
        ("a in (x,,y)", (Requirement("a", Operator.IN, ("", "x", "y")),)),
        ("a in (,x)", (Requirement("a", Operator.IN, ("", "x")),)),
        ("a in (x,)", (Requirement("a", Operator.IN, ("", "x")),)),
        ("x in (in,notin)", (Requirement("x", Operator.IN, ("in", "notin")),)),
        ("a>1", (Requirement("a", Operator.GREATER_THAN, ("1",)),)),
        ("a<2", (Requirement("a", Operator.LESS_THAN, ("2",)),)),
        (
            "z=1,app.kubernetes.io/instance=foo,!b",
            (
                Requirement("app.kubernetes.io/instance", Operator.EQUALS, ("foo",)),
                Requirement("b", Operator.DOES_NOT_EXIST),
                Requirement("z", Operator.EQUALS, ("1",)),
            ),
        ),
        ("a=b\x00,garbage((", (Requirement("a", Operator.EQUALS, ("b",)),)),
    ],
)
def test_valid_selectors_parse_like_kubernetes(text: str, expected: tuple[Requirement, ...]) -> None:
    assert parse_selector(text) == expected


@pytest.mark.parametrize(
    ("text", "message", "part"),
    [
        ("=a", "found '=', expected: !, identifier, or 'end of string'", "="),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt", "b"),
        ("a in x", "unable to parse requirement: found 'x' expected: '('", "x"),
        ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'", ""),
        ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'", "y"),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier", "="),
        ("a,", "found '', expected: identifier after ','", ""),
        ("a,,b", "found ',', expected: identifier after ','", ","),
        ("a=b c", "found 'c', expected: ',' or 'end of string'", "c"),
        ("a==b!=c", "found '!=', expected: ',' or 'end of string'", "!="),
        ("!a=b", "found '=', expected: ',' or 'end of string'", "="),
        ("a=(", "unable to parse requirement: found '(', expected: identifier", "("),
        (
            "-a=b",
            f'unable to parse requirement: <nil>: Invalid value: "-a": {KEY_NAME_RULE}',
            "-a",
        ),
        (
            "a=b$c",
            f'unable to parse requirement: values[0][a]: Invalid value: "b$c": {VALUE_RULE}',
            "a",
        ),
        (
            "a<-2",
            f'unable to parse requirement: values[0][a]: Invalid value: "-2": {VALUE_RULE}',
            "a",
        ),
        (
            "a>x",
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, "
            "the value must be an integer",
            "a",
        ),
        (
            "a=" + "v" * 64,
            'unable to parse requirement: values[0][a]: Invalid value: "'
            + "v" * 64
            + '": must be no more than 63 bytes',
            "a",
        ),
        (
            "/a",
            'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be non-empty',
            "/a",
        ),
        (
            "k" * 64,
            'unable to parse requirement: <nil>: Invalid value: "'
            + "k" * 64
            + '": name part must be no more than 63 bytes',
            "k" * 64,
        ),
    ],
)
def test_invalid_selectors_are_rejected_with_the_api_servers_message(
    text: str, message: str, part: str
) -> None:
    with pytest.raises(SelectorParseError) as caught:
        parse_selector(text)
    assert str(caught.value) == message
    assert caught.value.part == part


def test_a_value_failing_two_rules_reports_both_like_an_aggregate() -> None:
    with pytest.raises(SelectorParseError) as caught:
        parse_selector("a>" + "x" * 64)
    text = str(caught.value)
    assert text.startswith("unable to parse requirement: [values[0]: Invalid value: ")
    assert "must be an integer, values[0][a]: Invalid value: " in text
    assert text.endswith("must be no more than 63 bytes]")


def test_requirement_string_form_matches_go() -> None:
    rendered = [str(r) for r in parse_selector("b in (y,x), !c, d, a>3, e!=f")]
    assert rendered == ["a>3", "b in (x,y)", "!c", "d", "e!=f"]
