"""Command line interface (placeholder until the CLI lands)."""


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("scherbelberg-dask: CLI not implemented yet")
