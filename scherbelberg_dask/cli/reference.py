"""The CLI reference page (``docs/cli.md``), generated from the argument parser.

Regenerate it after changing an option::

    python -m scherbelberg_dask.cli.reference > docs/cli.md

A test checks that the page matches the parser.  The page is built from the parser's
actions rather than from ``--help`` output, so it does not depend on the terminal width
or on how a Python version formats help.
"""

from __future__ import annotations

import argparse
import sys

INTRO = """\
# Command line

Every verb is a thin layer over the Python API: `create` makes a
`HetznerCluster` and leaves it running, `ls`, `ssh` and `destroy` find it again
(from any process on the same machine) by its prefix.

```bash
scherbelberg-dask create --workers 4 --worker cx33   # or: python -m scherbelberg_dask create
scherbelberg-dask ls
scherbelberg-dask ssh worker000 uname -a
scherbelberg-dask destroy
```

- The Hetzner Cloud API token comes from `HCLOUD_TOKEN`, the endpoint from
  `HCLOUD_ENDPOINT`; other defaults from Dask's configuration under
  `scherbelberg` (e.g. `DASK_SCHERBELBERG__WORKER_TYPE=cx33`). The token is never
  printed.
- Every verb that works on a cluster takes `--prefix` (default `cluster`), so several
  clusters live side by side.
- Log lines go to stderr (`-l/--log-level`, INFO by default), with a progress bar
  when stderr is a terminal; results go to stdout (`ls --json` and `catalog --json`
  for scripts).
- Expected errors (no such cluster, an invalid server type, a missing token, an
  unreachable endpoint, ...) print one line starting with `error:` and exit with
  status 1; `-l DEBUG` adds the traceback. `ssh` exits with the remote command's
  status.
- The same CLI is a command of Dask's own: `dask hetzner VERB ...` takes exactly these
  verbs and options.
- Try everything without an account: run `scherbelberg-dask emulator` in one shell,
  paste the `export ...` lines it prints into another, and use the verbs there.

This page is generated from the parser (`python -m scherbelberg_dask.cli.reference`).
"""


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest.upper()


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{_metavar(action)}`"
    value = f" {_metavar(action)}" if _takes_value(action) else ""
    return ", ".join(f"`{flag}{value}`" for flag in action.option_strings)


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        params["prog"] = prog
        if params.get("choices") is not None:
            params["choices"] = ", ".join(map(str, params["choices"]))
        text = text % params
    if action.nargs == argparse.REMAINDER:
        text += " (everything after it)"
    elif action.nargs == "+":
        text += " (one or more)"
    return text.replace("|", "\\|")


def _usage_part(action: argparse.Action) -> str:
    metavar = _metavar(action)
    if not action.option_strings:
        if action.nargs == argparse.REMAINDER:
            return f"[{metavar} ...]"
        if action.nargs == "+":
            return f"{metavar} [{metavar} ...]"
        if action.nargs == "?":
            return f"[{metavar}]"
        return metavar
    flag = max(action.option_strings, key=len)
    return f"[{flag} {metavar}]" if _takes_value(action) else f"[{flag}]"


def _wrap(head: str, parts: list[str], width: int = 88) -> str:
    """``head`` and ``parts`` on lines of at most ``width``, continued under the first."""
    lines = [head]
    indent = " " * (len(head) + 1)
    for part in parts:
        if len(lines[-1]) + 1 + len(part) > width and lines[-1].strip() != head:
            lines.append(indent + part)
        else:
            lines[-1] += " " + part
    return "\n".join(lines)


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
        and a.help is not argparse.SUPPRESS
    ]


def _section(name: str, parser: argparse.ArgumentParser, prog: str, summary: str) -> list[str]:
    actions = _actions(parser)
    optionals = [a for a in actions if a.option_strings]
    positionals = [a for a in actions if not a.option_strings]
    usage = _wrap(f"{prog} {name}", [_usage_part(a) for a in optionals + positionals])
    lines = [f"## `{name}`", "", parser.description or summary, "", "```text", usage, "```", ""]
    if positionals:
        lines += ["| Argument | Description |", "| --- | --- |"]
        lines += [f"| {_flags(a)} | {_help(a, prog)} |" for a in positionals]
        lines.append("")
    if optionals:
        lines += ["| Option | Description |", "| --- | --- |"]
        lines += [f"| {_flags(a)} | {_help(a, prog)} |" for a in optionals]
        lines.append("")
    return lines


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The reference page as Markdown (MyST), from ``parser`` (default: the CLI's)."""
    if parser is None:
        from scherbelberg_dask.cli import build_parser

        parser = build_parser()
    prog = parser.prog
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {choice.dest: choice.help or "" for choice in verbs._choices_actions}
    lines = [INTRO, "## Overview", "", "| Verb | What it does |", "| --- | --- |"]
    lines += [f"| [`{name}`](#{name}) | {summaries.get(name, '')} |" for name in verbs.choices]
    lines += ["", "Options before the verb:", "", "| Option | Description |", "| --- | --- |"]
    lines += [f"| {_flags(a)} | {_help(a, prog)} |" for a in _actions(parser)]
    lines.append("")
    for name, sub in verbs.choices.items():
        lines += _section(name, sub, prog, summaries.get(name, ""))
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for group in nested:  # sub-verbs, e.g. ``emulator prepare``
            helps = {choice.dest: choice.help or "" for choice in group._choices_actions}
            for child, parser_ in group.choices.items():
                lines += _section(f"{name} {child}", parser_, prog, helps.get(child, ""))
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    """Print the reference page on stdout."""
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
