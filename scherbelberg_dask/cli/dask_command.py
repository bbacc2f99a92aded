"""``dask hetzner VERB``: this CLI as a command of Dask's own ``dask`` command line.

Dask's ``dask`` command adds the click commands that packages register in the
``dask_cli`` entry point group (that is how ``dask ssh`` and others appear).  The
``hetzner`` command registered there hands its arguments, unparsed, to
:func:`scherbelberg_dask.cli.main`: one implementation, so ``dask hetzner`` has exactly
the verbs, options, help and exit statuses of ``scherbelberg-dask``.
"""

from __future__ import annotations

import click

__all__ = ["hetzner"]


@click.command(
    name="hetzner",
    add_help_option=False,  # --help belongs to our own parser, as every other option
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def hetzner(args: tuple[str, ...]) -> None:
    """Dask clusters on Hetzner Cloud (the scherbelberg-dask CLI)."""
    from scherbelberg_dask.cli import main

    raise SystemExit(main(list(args), prog="dask hetzner"))
