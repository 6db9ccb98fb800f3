"""Allow ``python -m tgi_autoscaler``."""

from tgi_autoscaler.cli import main

raise SystemExit(main())
