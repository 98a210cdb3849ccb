"""``python -m sklearn_ntkal``: the same command line as ``sklearn-ntkal``."""

from .cli import main

raise SystemExit(main())
