"""Terminal output for the CLI: consoles that never hard-wrap, and text made safe to show.

A file name is data, not markup or terminal control: `visible()` shows control characters, bidi overrides
and the raw bytes of non-UTF-8 names as escapes (``\\x1b``), and `safe()` also escapes rich markup.
When output is not a terminal (a pipe, a log, CI), lines are never wrapped at 80 columns: error lines stay
one line and tables keep every path whole.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.markup import escape
from rich.style import Style
from rich.table import Table
from rich.text import Text

PIPE_WIDTH = 8192  # wide enough for any path (PATH_MAX is 4096) plus the other columns of a table

# C0/C1 controls, line/paragraph separators, bidi embeddings/overrides/isolates, lone surrogates
# (the undecodable bytes of a non-UTF-8 name, as os.fsdecode represents them).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a raw byte of a non-UTF-8 name
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object) -> str:
    """The text with every character that could move the cursor, recolour or reorder the terminal escaped."""
    return _UNSAFE.sub(_escape_char, str(text))


def safe(text: object) -> str:
    """`visible()` and markup-escaped: for interpolating into rich markup."""
    return escape(visible(text))


def file_url(path: str) -> str:
    return "file://" + quote(os.fsencode(path))


def path_text(path: str, link: bool = False) -> Text:
    """A path as a rich Text (never parsed as markup), optionally a clickable file:// link."""
    return Text(visible(path), style=Style(link=file_url(path)) if link else "")


def make_console(stderr: bool = False) -> Console:
    """A console that does not wrap lines; when it is not a terminal, tables render at their natural width."""
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    return console


def table(*columns: str, right: tuple[str, ...] = (), **kwargs: Any) -> Table:
    """A table whose cells fold rather than cut (no "…" in the middle of a path)."""
    t = Table(**kwargs)
    for col in columns:
        t.add_column(col, justify="right" if col in right else "left", overflow="fold")
    return t


# --- pictures in the terminal -------------------------------------------------------------------------------
IMAGE_TERMINALS = "kitty (TERM=xterm-kitty), iTerm2 or WezTerm"


def image_protocol(env: os._Environ[str] | dict[str, str] | None = None) -> str | None:
    """The inline-image protocol the terminal speaks, from its environment: 'kitty', 'iterm2' or None."""
    env = os.environ if env is None else env
    if env.get("TERM") == "xterm-kitty" or env.get("KITTY_WINDOW_ID"):
        return "kitty"
    if env.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm"):
        return "iterm2"
    return None


def inline_image(png: bytes, protocol: str, cells: int = 20) -> str:
    """Escape sequences that draw a PNG `cells` columns wide (height from its aspect ratio).

    kitty: the graphics protocol, base64 in 4096-byte chunks, quiet (q=2: no replies typed into the shell);
    iTerm2 / WezTerm: OSC 1337 File=inline.
    """
    import base64

    data = base64.standard_b64encode(png).decode("ascii")
    if protocol == "kitty":
        chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)] or [""]
        out = []
        for i, chunk in enumerate(chunks):
            more = int(i < len(chunks) - 1)
            control = f"a=T,f=100,c={cells},q=2,m={more}" if i == 0 else f"m={more}"
            out.append(f"\x1b_G{control};{chunk}\x1b\\")
        return "".join(out)
    if protocol == "iterm2":
        return f"\x1b]1337;File=inline=1;size={len(png)};width={cells};preserveAspectRatio=1:{data}\x07"
    raise ValueError(f"unknown image protocol {protocol!r}")
