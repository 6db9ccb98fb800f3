"""Kubernetes label key and value validation, with the API server's own error wording.

A selector the adapter accepts must be one the API server would accept, and a rejection should read
the same as ``kubectl`` users see elsewhere; so the rules and messages follow
``k8s.io/apimachinery/pkg/api/validate/content`` (``IsLabelKey``/``IsLabelValue``) exactly,
including lengths counted in UTF-8 bytes.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "go_quote",
    "label_key_errors",
    "label_value_errors",
    "sanitize_label_name",
]

_LABEL_KEY_FMT: Final = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_ERR: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_LABEL_VALUE_FMT: Final = f"({_LABEL_KEY_FMT})?"
_LABEL_VALUE_ERR: Final = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_FMT: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT: Final = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_ERR: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_KEY_RE: Final = re.compile(_LABEL_KEY_FMT)
_LABEL_VALUE_RE: Final = re.compile(_LABEL_VALUE_FMT)
_DNS1123_SUBDOMAIN_RE: Final = re.compile(_DNS1123_SUBDOMAIN_FMT)
_MAX_NAME_BYTES: Final = 63
_MAX_SUBDOMAIN_BYTES: Final = 253
_PROM_INVALID_CHARS: Final = re.compile(r"[^a-zA-Z0-9_]")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # Mirrors content.RegexError, double space before "or" included.
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len_error(length: int) -> str:
    return f"must be no more than {length} bytes"


def _byte_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _dns1123_subdomain_errors(value: str) -> list[str]:
    errors: list[str] = []
    if _byte_len(value) > _MAX_SUBDOMAIN_BYTES:
        errors.append(_max_len_error(_MAX_SUBDOMAIN_BYTES))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errors.append(_regex_error(_DNS1123_SUBDOMAIN_ERR, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errors


def label_key_errors(key: str) -> list[str]:
    """Why ``key`` is not a valid label key (a "qualified name"); empty when it is valid."""
    errors: list[str] = []
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors.extend(f"prefix part {msg}" for msg in _dns1123_subdomain_errors(prefix))
    else:
        return [
            "a valid label key "
            + _regex_error(_LABEL_KEY_ERR, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif _byte_len(name) > _MAX_NAME_BYTES:
        errors.append("name part " + _max_len_error(_MAX_NAME_BYTES))
    if not _LABEL_KEY_RE.fullmatch(name):
        errors.append(
            "name part " + _regex_error(_LABEL_KEY_ERR, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
        )
    return errors


def label_value_errors(value: str) -> list[str]:
    """Why ``value`` is not a valid label value; empty when it is valid ("" is valid)."""
    errors: list[str] = []
    if _byte_len(value) > _MAX_NAME_BYTES:
        errors.append(_max_len_error(_MAX_NAME_BYTES))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errors.append(_regex_error(_LABEL_VALUE_ERR, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


def sanitize_label_name(key: str) -> str:
    """The Prometheus label a Kubernetes label key becomes under ``labelmap`` relabeling.

    Prometheus' Kubernetes service discovery replaces every character outside ``[a-zA-Z0-9_]`` with
    ``_`` (``app.kubernetes.io/instance`` -> ``app_kubernetes_io_instance``).
    """
    return _PROM_INVALID_CHARS.sub("_", key)


_GO_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(text: str) -> str:
    """``text`` quoted like Go's ``%q`` (strconv.Quote), as the API server prints bad values."""
    out: list[str] = ['"']
    for char in text:
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)
