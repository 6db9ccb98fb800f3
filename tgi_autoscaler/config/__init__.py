"""Typed configuration: the service spec (``service``), alert and dashboard settings
(``observability``), shared names (``constants``) and the error type (``errors``).

Everything here is pure data and validation; no module imports an I/O library, so the controller,
the ``render`` command and the tests all judge a spec by exactly the same rules.
"""
