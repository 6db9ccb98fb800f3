"""Pure Kubernetes text: object names, label keys and values, and resource quantities.

Every part of the project that judges or writes a Kubernetes name or quantity (the service spec, the
adapter's selectors and URLs, the renderer, the simulator) calls this package, so a name is valid or
invalid by one rule everywhere and a quantity is written one way. Nothing here does I/O.
"""

from __future__ import annotations

from tgi_autoscaler.k8s.names import (
    MAX_DNS_LABEL_LENGTH,
    MAX_DNS_SUBDOMAIN_LENGTH,
    go_quote,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_extended_resource_name,
    label_key_errors,
    label_value_errors,
)
from tgi_autoscaler.k8s.quantity import (
    Notation,
    QuantityError,
    format_quantity,
    milli_value,
    parse_quantity,
)

__all__ = [
    "MAX_DNS_LABEL_LENGTH",
    "MAX_DNS_SUBDOMAIN_LENGTH",
    "Notation",
    "QuantityError",
    "format_quantity",
    "go_quote",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_env_var_name",
    "is_extended_resource_name",
    "label_key_errors",
    "label_value_errors",
    "milli_value",
    "parse_quantity",
]
