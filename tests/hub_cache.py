"""A Hugging Face hub cache written as the hub client writes it: blobs named by their SHA-256,
snapshots/<revision>/<path> linking to them, refs/main naming the revision. The test models are put where a real
download would leave them, so the real loading code (huggingface_hub with HF_HUB_OFFLINE=1) finds them."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def write_repo(cache: Path, repo: str, files: Path, revision: str) -> Path:
    """Lay out every file under `files` as `repo` at `revision` in the hub cache `cache`; the snapshot folder."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in files.rglob("*") if p.is_file()):
        blob = repo_dir / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blob)
        link = snapshot / f.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot
