"""Typed configuration: the service spec (``service``), alert and dashboard settings
(``observability``), the adapter's documents (``metrics``), shared names (``constants``), the error
type (``errors``) and what every document is built on (``base``: model base class, YAML loading and
the one translation of validation errors into key-path issues).

Everything here is pure data and validation; no module imports an I/O library, so the controller,
the ``render`` command and the tests all judge a spec by exactly the same rules.
"""
