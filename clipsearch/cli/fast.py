"""The fast path: the commonest invocations run without typer, whose start-up a cold query cannot afford.

typer 0.29 coerces every parameter through pydantic: importing it and building the adapters of a command's
options costs ~0.2 s on a 2-core machine, a third of a cold query. These invocations are parsed here instead:

    clipsearch query TEXT... [--index S] [-k N | --top N] [--paths | --paths0 | -0 | --json]
    clipsearch index PATH... [--index S] [--json]

(options also as --index=S, --top=N; --index defaults to CLIPSEARCH_INDEX, as typer's option). Anything else —
another option, a repeated one, a value that does not parse, --help, a term that starts with "-" — returns None
and typer, the one full definition of the CLI, handles it (its usage errors included). Both paths call the same
functions (`query_run.run_query`, `index_run.run_index`) and print through `plain`, so the output is the same;
tests/e2e/test_fast_cli.py checks it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

FLAGS = {"query": {"--paths": "paths_only", "--paths0": "paths0", "-0": "paths0", "--json": "as_json"},
         "index": {"--json": "as_json"}}
VALUES = {"query": {"--index": "index_path", "-k": "k", "--top": "k"}, "index": {"--index": "index_path"}}


def parse(argv: list[str]) -> tuple[str, list[str], dict[str, Any]] | None:
    """(command, positional arguments, options) of an invocation the fast path takes, else None."""
    if not argv or argv[0] not in FLAGS:
        return None
    command, flags, values = argv[0], FLAGS[argv[0]], VALUES[argv[0]]
    positional: list[str] = []
    options: dict[str, Any] = {}
    rest = iter(argv[1:])
    for arg in rest:
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        given: Any
        name, eq, value = arg.partition("=")
        if eq and not name.startswith("--"):  # -k=5 is not how click reads a short option
            return None
        if name in flags and not eq:
            key, given = flags[name], True
        elif name in values:
            key = values[name]
            if not eq:
                given = next(rest, None)
                if given is None:
                    return None
            else:
                given = value
        else:
            return None
        if key in options:
            return None
        options[key] = given
    if not positional:
        return None
    if "k" in options:
        if not options["k"].isdigit() or int(options["k"]) < 1:
            return None
        options["k"] = int(options["k"])
    index = options.get("index_path", os.environ.get("CLIPSEARCH_INDEX") or None)
    options["index_path"] = Path(index) if index else None
    return command, positional, options


def run(argv: list[str]) -> bool:
    """Run the invocation if the fast path takes it (exiting with the command's code on failure); False if not."""
    parsed = parse(argv)
    if parsed is None:
        return False
    command, positional, options = parsed
    call: Callable[..., None]
    if command == "query":
        from clipsearch.cli.query_run import run_query as call
    else:
        from clipsearch.cli.index_run import run_index as call

        positional = [Path(p) for p in positional]  # type: ignore[misc]
    try:
        call(positional, **options)
    except BaseException as exc:
        from clipsearch.cli.plain import failure_code

        code = failure_code(exc, command)
        if code is None:
            raise
        sys.exit(code)
    return True
