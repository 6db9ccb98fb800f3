"""Pure Kubernetes text: object names, label keys and values (``names``) and resource quantities
(``quantity``).

Every part of the project that judges or writes a Kubernetes name or quantity (the service spec, the
adapter's selectors and URLs, the renderer, the simulator) calls this package, so a name is valid or
invalid by one rule everywhere and a quantity is written one way. Nothing here does I/O.
"""

from __future__ import annotations

__all__: list[str] = []
