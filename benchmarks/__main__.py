"""``python -m benchmarks``: see :mod:`benchmarks.main`."""

from __future__ import annotations

from .main import main

raise SystemExit(main())
