"""Kubernetes names: DNS labels and subdomains, label keys and values, env var names.

One rule per kind of name, as ``k8s.io/apimachinery`` states it, so that a name the project accepts
is one the API server accepts, with the same length caps everywhere (63 for a label, 253 for a
subdomain). A selector the adapter accepts must be one the API server would accept, and a rejection
should read the same as ``kubectl`` users see elsewhere; so ``label_key_errors`` and
``label_value_errors`` follow ``k8s.io/apimachinery/pkg/api/validate/content``
(``IsLabelKey``/``IsLabelValue``) exactly, including lengths counted in UTF-8 bytes. The predicates
(``is_dns1123_label`` and friends) leave the wording of a rejection to the caller, which knows which
field it is checking.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "MAX_DNS_LABEL_LENGTH",
    "MAX_DNS_SUBDOMAIN_LENGTH",
    "go_quote",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_env_var_name",
    "is_extended_resource_name",
    "label_key_errors",
    "label_value_errors",
]

MAX_DNS_LABEL_LENGTH: Final = 63
MAX_DNS_SUBDOMAIN_LENGTH: Final = 253

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
_DNS1035_LABEL_FMT: Final = "[a-z]([-a-z0-9]*[a-z0-9])?"
_ENV_VAR_NAME_FMT: Final = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_DNS1123_SUBDOMAIN_ERR: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_KEY_RE: Final = re.compile(_LABEL_KEY_FMT)
_LABEL_VALUE_RE: Final = re.compile(_LABEL_VALUE_FMT)
_DNS1123_LABEL_RE: Final = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE: Final = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE: Final = re.compile(_DNS1035_LABEL_FMT)
_ENV_VAR_NAME_RE: Final = re.compile(_ENV_VAR_NAME_FMT)
_MAX_NAME_BYTES: Final = MAX_DNS_LABEL_LENGTH
_MAX_SUBDOMAIN_BYTES: Final = MAX_DNS_SUBDOMAIN_LENGTH


def is_dns1123_label(value: str, *, max_length: int = MAX_DNS_LABEL_LENGTH) -> bool:
    """An RFC 1123 label (namespace names, most object names): ``[a-z0-9]([-a-z0-9]*[a-z0-9])?``.

    ``max_length`` lowers the cap of 63 where a caller appends suffixes to the name.
    """
    return len(value) <= min(max_length, MAX_DNS_LABEL_LENGTH) and bool(_DNS1123_LABEL_RE.fullmatch(value))


def is_dns1035_label(value: str, *, max_length: int = MAX_DNS_LABEL_LENGTH) -> bool:
    """An RFC 1035 label (Service names): as an RFC 1123 label, but starting with a letter."""
    return len(value) <= min(max_length, MAX_DNS_LABEL_LENGTH) and bool(_DNS1035_LABEL_RE.fullmatch(value))


def is_dns1123_subdomain(value: str) -> bool:
    """An RFC 1123 subdomain (ConfigMap, Secret, PVC names): dot-separated labels, at most 253."""
    return len(value) <= MAX_DNS_SUBDOMAIN_LENGTH and bool(_DNS1123_SUBDOMAIN_RE.fullmatch(value))


def is_extended_resource_name(value: str) -> bool:
    """An extended resource name (``nvidia.com/gpu``): a label key whose DNS prefix is required."""
    prefix, slash, _ = value.partition("/")
    return bool(slash and prefix) and not label_key_errors(value)


def is_env_var_name(value: str) -> bool:
    """A container environment variable name, as ``IsEnvVarName`` accepts it."""
    return bool(_ENV_VAR_NAME_RE.fullmatch(value))


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
