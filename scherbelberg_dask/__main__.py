"""``python -m scherbelberg_dask``: the command line interface."""

from scherbelberg_dask.cli import main

raise SystemExit(main())
