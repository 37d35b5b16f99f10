"""``python -m gaunt.bench [options]``: the same as ``gaunt bench`` (see ``gaunt.bench.main``)."""

from . import main

raise SystemExit(main())
