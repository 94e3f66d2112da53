"""The CLI's fast path (`cli/fast.py`): a plain query or re-index skips typer, prints exactly what typer's command
prints, and a cold query loads none of the heavy libraries it does not need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clipsearch.cli import fast
from tests.conftest import cli

MODEL = "clipsearch-tiny"  # random init: these tests compare outputs and modules, never relevance
# what a cold text query over a small SQLite store must not import
HEAVY = ("typer", "pydantic", "rich", "faiss", "PIL", "sqlalchemy", "torch", "onnxruntime", "numpy.ma")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, shapes_source: Path) -> tuple[Path, Path]:
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("fast")
    photos = root / "photos"
    photos.mkdir()
    for src in sorted(shapes_source.glob("*.png"))[:12]:
        (photos / src.name).write_bytes(src.read_bytes())
    cli(CliRunner(), "index", photos, "--index", root / "index", "--model", MODEL)
    return photos, root / "index"


def fast_run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed command's way in (`clipsearch.cli.main`), in a fresh process."""
    return subprocess.run([sys.executable, "-m", "clipsearch", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def typer_run(*args: str | Path, env: dict[str, str] | None = None):
    from typer.testing import CliRunner

    from clipsearch.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env=env)


@pytest.mark.parametrize("argv", [
    ["query", "a red circle"], ["query", "a", "b", "--index", "S", "-k", "3", "--paths"],
    ["query", "x", "--index=S", "--top=5", "--json"], ["query", "x", "-0"], ["query", "x", "--paths0"],
    ["index", "P"], ["index", "P", "Q", "--index", "S", "--json"],
])
def test_plain_invocations_take_the_fast_path(argv: list[str]) -> None:
    assert fast.parse(argv) is not None


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["query"], ["query", "--help"], ["query", "x", "--help"], ["query", "x", "--image", "i.png"],
    ["query", "x", "-k", "0"], ["query", "x", "-k", "three"], ["query", "x", "-k"], ["query", "x", "-k=3"],
    ["query", "x", "-k3"], ["query", "x", "--paths", "--paths"], ["query", "x", "--index", "a", "--index", "b"],
    ["query", "-x"], ["query", "x", "--paths=1"], ["index"], ["index", "P", "--model", "m"], ["index", "P", "--paths"],
    ["info"], ["serve"], ["query", "x", "--version"],
])
def test_everything_else_goes_to_typer(argv: list[str]) -> None:
    assert fast.parse(argv) is None


def test_the_index_option_and_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPSEARCH_INDEX", "/from/env")
    assert fast.parse(["query", "x"])[2]["index_path"] == Path("/from/env")  # type: ignore[index]
    assert fast.parse(["query", "x", "--index", "given"])[2]["index_path"] == Path("given")  # type: ignore[index]
    monkeypatch.setenv("CLIPSEARCH_INDEX", "")
    assert fast.parse(["query", "x"])[2]["index_path"] is None  # type: ignore[index]


@pytest.mark.parametrize("extra", [["--paths"], ["--json"], [], ["-k", "3", "-0"], ["--top=2", "--json"]])
def test_query_output_is_typers(store: tuple[Path, Path], extra: list[str]) -> None:
    _photos, index = store
    fast_out = fast_run("query", "a red circle", "--index", index, *extra)
    typer_out = typer_run("query", "a red circle", "--index", index, *extra)
    assert fast_out.returncode == typer_out.exit_code == 0, fast_out.stderr
    assert fast_out.stdout == typer_out.stdout and fast_out.stdout
    assert fast_out.stderr == typer_out.stderr


def test_query_errors_are_typers(store: tuple[Path, Path], tmp_path: Path) -> None:
    _photos, index = store
    for args in (["query", "  ", "--index", str(index)], ["query", "x", "--index", str(tmp_path / "none")]):
        fast_out, typer_out = fast_run(*args), typer_run(*args)
        assert fast_out.returncode == typer_out.exit_code == 1
        assert fast_out.stderr == typer_out.stderr and fast_out.stderr.startswith("error: ")
        assert "Traceback" not in fast_out.stderr
    via_env = fast_run("query", "a red circle", "--paths", env={"CLIPSEARCH_INDEX": str(index)})
    assert via_env.returncode == 0 and via_env.stdout == typer_run("query", "a red circle", "--paths",
                                                                   "--index", index).stdout


def test_a_cold_query_loads_no_heavy_library(store: tuple[Path, Path]) -> None:
    _photos, index = store
    code = ("import sys\n"
            "sys.argv = ['clipsearch', 'query', 'a red circle', '--index', sys.argv[1], '--paths']\n"
            "from clipsearch.cli import main\n"
            "main()\n"
            f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code, str(index)], capture_output=True, text=True, check=True,
                         stdin=subprocess.DEVNULL).stdout.splitlines()
    assert len(out) == 11 and out[-1] == "LOADED []"


def test_unchanged_reindex_output_is_typers(store: tuple[Path, Path]) -> None:
    photos, index = store
    fast_out = fast_run("index", photos, "--index", index, "--json")
    typer_out = typer_run("index", photos, "--index", index, "--json")
    assert fast_out.returncode == typer_out.exit_code == 0, fast_out.stderr
    fast_json, typer_json = json.loads(fast_out.stdout), json.loads(typer_out.stdout)
    for summary in (fast_json, typer_json):
        summary.pop("seconds")
        summary.pop("model_seconds", None)
        summary.pop("images_per_second", None)
    assert fast_json == typer_json and fast_json["unchanged"] == 12 and fast_json["added"] == 0
    table = fast_run("index", photos, "--index", index)
    assert table.returncode == 0 and "unchanged" in table.stdout and "12" in table.stdout
