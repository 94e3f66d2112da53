"""A long-running server follows re-embeds without a restart and lets go of every store they replaced: no open
file descriptor or memory map of a deleted catalog, WAL or FAISS file stays behind (there were 15 after 4)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

import clipsearch
from clipsearch.server import create_app

MODEL = "clipsearch-tiny"


def deleted_handles(under: Path) -> list[str]:
    """This process's file descriptors and memory maps that name a deleted file below `under`."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(under)) and target.endswith(" (deleted)"):
            found.append(f"fd {target}")
    with open("/proc/self/maps") as maps:
        found += [f"map {line.split(maxsplit=5)[-1].strip()}" for line in maps
                  if str(under) in line and line.rstrip().endswith("(deleted)")]
    return found


def test_a_server_closes_the_stores_its_reembeds_replaced(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        Image.new("RGB", (32 + i, 32), (40 * i, 255 - 40 * i, 90)).save(photos / f"{i}.png")
    store = tmp_path / "index"
    with clipsearch.open(store, model=MODEL) as s:
        s.add([photos])
    app = create_app(store)
    app.holder.grace = 0.0  # close a replaced store at once (a real server waits for requests in flight)
    with TestClient(app) as client:
        first = client.get("/api/search", params={"q": "a photo", "k": 10}).json()["results"]
        assert len(first) == 6
        for _ in range(4):
            with clipsearch.open(store) as s:
                s.reembed(MODEL)
            now = client.get("/api/search", params={"q": "a photo", "k": 10}).json()["results"]
            assert sorted(h["id"] for h in now) == sorted(h["id"] for h in first)
            client.get(f"/api/images/{now[0]['id']}/thumbnail")
        assert deleted_handles(tmp_path) == []
