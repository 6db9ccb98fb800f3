"""Allow ``python -m tgi_autoscaler_dev``."""

from tgi_autoscaler_dev.cli import run

raise SystemExit(run())
