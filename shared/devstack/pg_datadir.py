"""A PostgreSQL data directory on disk: the lock that serialises its users, initdb, and its ownership."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from shared.devstack.errors import DevstackError
from shared.devstack.pg_tools import RunAs, run_pg_tool

_log = logging.getLogger(__name__)


@contextlib.contextmanager
def locked(data_dir: Path, deadline: float) -> Iterator[None]:
    """An flock beside the data dir: two processes (xdist workers) must not initdb or start it twice."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir.parent / f".{data_dir.name}.devstack.lock"
    with lock_path.open("a") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DevstackError(f"timed out waiting for {lock_path}") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def initdb(bin_dir: Path, data_dir: Path, run_as: RunAs | None) -> None:
    """initdb into a sibling temp dir, then rename it into place: no half-cluster if initdb is killed."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise DevstackError(
            f"{data_dir} exists, is not empty and has no PG_VERSION: not a PostgreSQL data "
            "directory (an interrupted run?). Delete it to start afresh."
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.initdb-", dir=data_dir.parent))
    try:
        if run_as is not None:
            os.chown(tmp, run_as.uid, run_as.gid)
        tmp.chmod(0o700)
        # --no-locale: C collation (fast, deterministic, no glibc collation-version drift) with UTF8.
        cmd = [
            str(bin_dir / "initdb"),
            "-D",
            str(tmp),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        code, out = run_pg_tool(cmd, run_as, cwd=tmp, timeout=300)
        if code != 0:
            raise DevstackError(f"initdb failed ({code}) for {data_dir}:\n{out}")
        if data_dir.exists():
            data_dir.rmdir()
        tmp.rename(data_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    dir_fd = os.open(data_dir.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must be durable, like everything initdb synced
    finally:
        os.close(dir_fd)
    _log.info("initialised a PostgreSQL cluster in %s", data_dir)


def fix_ownership(data_dir: Path, socket_dir: Path, run_as: RunAs | None) -> None:
    """A data dir created by another user (or restored as root) must belong to the server's user."""
    if socket_dir != data_dir:
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        if run_as is not None:
            os.chown(socket_dir, run_as.uid, run_as.gid)
    if run_as is None:
        return
    if data_dir.stat().st_uid != run_as.uid:
        _log.warning("chowning %s to %s", data_dir, run_as.name)
        for root, dirs, files in os.walk(data_dir):
            os.chown(root, run_as.uid, run_as.gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), run_as.uid, run_as.gid)
    data_dir.chmod(0o700)
