"""``python -m h2mesh``: the same as the ``h2mesh`` command."""

from .cli import main

raise SystemExit(main())
