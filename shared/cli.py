"""The `d06` command line: the operator's and developer's tool for everything that is not an HTTP call."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import keys
from shared.catalog import load_catalog, store_catalog
from shared.crosswalk import CrosswalkError, read_crosswalk
from shared.crosswalk_cli import add_commands as add_crosswalk_commands
from shared.crosswalk_db import store_crosswalk
from shared.db import make_engine, transaction
from shared.hierarchy import Edition, fetch_hierarchy, read_dataset, store_units
from shared.import_cli import add_command as add_import_command
from shared.keys import ROLES, KeyRefused, KeyRequest
from shared.settings import CommonSettings

DEMO_EVENTS = Path(__file__).with_name("demo") / "seed_events.json"
PROGRESS_SECONDS = 5.0  # how often a long `quality rebuild` says how far it has gone


def _settings() -> CommonSettings:
    return CommonSettings()


def _run(coro_fn: Callable[[], Coroutine[Any, Any, int]]) -> int:
    return asyncio.run(coro_fn())


@asynccontextmanager
async def _engine() -> AsyncIterator[AsyncEngine]:
    engine = make_engine(_settings().database_url, pool_size=2, app="d06-cli")
    try:
        yield engine
    finally:
        await engine.dispose()


async def _with_db(body: Callable[[Any], Awaitable[int]]) -> int:
    async with _engine() as engine, transaction(engine) as conn:
        return await body(conn)


def cmd_migrate(args: argparse.Namespace) -> int:
    from shared.migrate import upgrade

    upgrade(_settings().database_url)
    print("database schema is up to date")
    return 0


def cmd_hierarchy_load(args: argparse.Namespace) -> int:
    units = read_dataset()
    try:
        crosswalk = read_crosswalk()
    except CrosswalkError as exc:
        print(exc, file=sys.stderr)
        return 1

    async def body(conn: Any) -> int:
        await store_units(conn, units)
        counts = await conn.execute(
            text("SELECT edition, level, count(*) FROM units GROUP BY 1, 2 ORDER BY 1, 2")
        )
        for edition, level, n in counts:
            print(f"  {edition:7} {level:9} {n:>6,}")
        stored = await store_crosswalk(conn, crosswalk)
        print("the 2025 crosswalk:", *(f"  {line}" for line in crosswalk.counts.lines()), sep="\n")
        print(f"  {stored.rows:,} rows stored; {stored.replaced:,} legacy unit(s) written afresh, "
              f"{stored.own_weights:,} keep weights loaded by `d06 crosswalk weights`")
        return 0

    print(f"loading {len(units):,} units of both editions from the vietnamadminunits dataset…")
    return _run(lambda: _with_db(body))


def cmd_catalog_load(args: argparse.Namespace) -> int:
    catalog = load_catalog()

    async def body(conn: Any) -> int:
        await store_catalog(conn, catalog)
        print(f"catalogue: {len(catalog)} indicators loaded")
        return 0

    return _run(lambda: _with_db(body))


def cmd_keys_create(args: argparse.Namespace) -> int:
    request = KeyRequest(
        name=args.name, scope=args.scope, edition=args.edition,
        roles=[r.strip() for r in args.roles.split(",") if r.strip()],
        expires_at=datetime.now(UTC) + timedelta(days=args.expires_in_days) if args.expires_in_days else None,
    )
    async def body(conn: Any) -> int:
        try:
            row, key = await keys.create(conn, request, await fetch_hierarchy(conn), None, datetime.now(UTC))
        except KeyRefused as refused:
            print(refused.message, file=sys.stderr)
            return 2
        print(key)
        print(f"key id {row['id']}: shown once, store it now", file=sys.stderr)
        return 0

    return _run(lambda: _with_db(body))


def cmd_keys_list(args: argparse.Namespace) -> int:
    async def body(conn: Any) -> int:
        rows = await keys.list_visible(conn, None)
        now = datetime.now(UTC)
        print(f"{'id':12}  {'name':20}  {'scope':14}  {'roles':20}  {'state':8}  last used")
        for r in rows:
            scope = f"{r['scope_edition'] or '*'}/{r['scope_code']}"
            print(f"{r['id']:12}  {r['name'][:20]:20}  {scope:14}  {','.join(r['roles']):20}  "
                  f"{keys.state_of(r, now):8}  {r['last_used_at'] or '-'}")
        return 0

    return _run(lambda: _with_db(body))


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    async def body(conn: Any) -> int:
        if await keys.revoke(conn, args.key_id):
            print(f"key {args.key_id} revoked")
            return 0
        print(f"no active key {args.key_id}", file=sys.stderr)
        return 1

    return _run(lambda: _with_db(body))


def cmd_demo_load(args: argparse.Namespace) -> int:
    import httpx

    key = args.key or Path(args.key_file).read_text().strip()
    body = DEMO_EVENTS.read_bytes()
    response = httpx.post(
        f"{args.url.rstrip('/')}/v1/events",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=30,
    )
    if response.status_code != 202:
        print(f"demo load failed: {response.status_code} {response.text}", file=sys.stderr)
        return 1
    result = response.json()
    print(f"demo: {result['accepted']} seed-report events accepted through the ingest API")
    return 0


def cmd_rollups_verify(args: argparse.Namespace) -> int:
    from shared.verify import verify

    async def body(conn: Any) -> int:
        hierarchy = await fetch_hierarchy(conn)
        differences = await verify(
            conn, hierarchy, load_catalog(), edition=args.edition, unit=args.unit, indicator=args.indicator
        )
        return _report(differences, args.max_print, "difference(s)", "rollups verified: no difference")

    return _run(lambda: _with_db(body))


def _report(differences: Sequence[object], max_print: int, noun: str, clean: str) -> int:
    """What an oracle found, as operators read it: each difference (the first `max_print`), then the count on
    stderr and exit status 1; or one line saying all is well, and 0."""
    for difference in differences[:max_print]:
        print(difference)
    if differences:
        print(f"{len(differences):,} {noun} found", file=sys.stderr)
        return 1
    print(clean)
    return 0


def cmd_quality_verify(args: argparse.Namespace) -> int:
    from shared.quality_verify import verify_quality

    async def body(conn: Any) -> int:
        # The flags and the values they are checked against from one snapshot, while the aggregator works.
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        found = await verify_quality(conn, await fetch_hierarchy(conn), load_catalog())
        return _report(found, args.max_print, "flag difference(s)", "quality flags verified: no difference")

    return _run(lambda: _with_db(body))


def cmd_quality_rebuild(args: argparse.Namespace) -> int:
    from shared.quality_rebuild import Rebuilt, rebuild_quality

    shown = 0
    last_said = time.monotonic()

    def progress(rebuilt: Rebuilt, total: int) -> None:
        # Each change as it is found (the first `max_print`), and every few seconds how far it has gone.
        nonlocal shown, last_said
        for difference in rebuilt.changes[shown:args.max_print]:
            print(f"{difference.change} {difference}", flush=True)
        shown = max(shown, min(len(rebuilt.changes), args.max_print))
        if time.monotonic() - last_said >= PROGRESS_SECONDS or rebuilt.provinces == total:
            last_said = time.monotonic()
            print(f"{rebuilt.provinces}/{total} provinces, {len(rebuilt.changes):,} flag(s) to change so far",
                  file=sys.stderr, flush=True)

    async def body() -> int:
        async with _engine() as engine:
            async with engine.connect() as conn:
                hierarchy = await fetch_hierarchy(conn)
            rebuilt = await rebuild_quality(engine, hierarchy, load_catalog(), write=not args.dry_run,
                                            progress=progress)
        counts = [rebuilt.count(change) for change in ("open", "update", "resolve")]
        if args.dry_run:
            print("dry run, nothing written: {:,} flag(s) to open, {:,} to update, {:,} to resolve, "
                  "{:,} to give their rule's new importance".format(*counts, rebuilt.reranked))
        else:
            print("quality flags rebuilt: {:,} opened, {:,} updated, {:,} resolved, {:,} given their rule's "
                  "new importance".format(*counts, rebuilt.reranked))
        return 0

    return _run(body)


def cmd_replay(args: argparse.Namespace) -> int:
    async def body(conn: Any) -> int:
        # The relay publishes what is above its watermark: move it back (after any round in progress).
        watermarks = (await conn.execute(text("SELECT up_to FROM relay_watermarks FOR UPDATE"))).scalars().all()
        published_up_to = max(watermarks, default=0)
        await conn.execute(text("UPDATE relay_watermarks SET up_to = :seq - 1 WHERE up_to >= :seq"),
                           {"seq": args.from_seq})
        queued = (await conn.execute(text("SELECT count(*) FROM outbox WHERE seq >= :seq AND seq <= :up_to"),
                                     {"seq": args.from_seq, "up_to": published_up_to})).scalar_one()
        print(f"{queued:,} event(s) from seq {args.from_seq} queued for republication by the relay")
        return 0

    return _run(lambda: _with_db(body))


def cmd_run(args: argparse.Namespace) -> int:
    from shared.devrun import run

    return run(reset=args.reset)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="d06", description="d06: Project 06 indicator reporting")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(fn=cmd_migrate)
    sub.add_parser("run", help="start the whole suite locally (make run)").set_defaults(fn=cmd_run)
    sub.choices["run"].add_argument("--reset", action="store_true", help="start from an empty database")

    hierarchy = sub.add_parser("hierarchy", help="administrative units").add_subparsers(dest="sub", required=True)
    hierarchy.add_parser("load", help="load both editions and their crosswalk from vietnamadminunits").set_defaults(
        fn=cmd_hierarchy_load
    )

    catalog = sub.add_parser("catalog", help="the indicator catalogue").add_subparsers(dest="sub", required=True)
    catalog.add_parser("load", help="load indicators.yaml into the database").set_defaults(fn=cmd_catalog_load)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="sub", required=True)
    create = keys.add_parser("create", help="create a key and print it once")
    create.add_argument("--scope", required=True, help="unit code of the subtree, or VN")
    create.add_argument("--edition", choices=[e.value for e in Edition], help="edition of the scope unit")
    create.add_argument("--roles", required=True, help=f"comma-separated: {','.join(ROLES)}")
    create.add_argument("--name", default="unnamed")
    create.add_argument("--expires-in-days", type=int, default=None)
    create.set_defaults(fn=cmd_keys_create)
    keys.add_parser("list", help="list keys (never their secrets)").set_defaults(fn=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    revoke.set_defaults(fn=cmd_keys_revoke)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(dest="sub", required=True)
    load = demo.add_parser("load", help="post the seed reports' figures through the ingest API")
    load.add_argument("--url", default="http://127.0.0.1:8001")
    load.add_argument("--key")
    load.add_argument("--key-file", default=".run/dev-api-key")
    load.set_defaults(fn=cmd_demo_load)

    rollups = sub.add_parser("rollups", help="the read model").add_subparsers(dest="sub", required=True)
    verify = rollups.add_parser("verify", help="recompute every rollup from the facts and compare")
    verify.add_argument("--edition")
    verify.add_argument("--unit")
    verify.add_argument("--indicator")
    verify.add_argument("--max-print", type=int, default=200)
    verify.set_defaults(fn=cmd_rollups_verify)

    quality = sub.add_parser("quality", help="data-quality flags").add_subparsers(dest="sub", required=True)
    check = quality.add_parser("verify", help="recompute every rule and outlier flag from the facts and compare")
    check.add_argument("--max-print", type=int, default=200)
    check.set_defaults(fn=cmd_quality_verify)
    rebuild = quality.add_parser(
        "rebuild", help="recompute every flag from the facts and write the differences (after the catalogue's "
        "rules change, or quality is turned on over data applied without it)")
    rebuild.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    rebuild.add_argument("--max-print", type=int, default=200)
    rebuild.set_defaults(fn=cmd_quality_rebuild)

    add_crosswalk_commands(sub, _with_db)
    add_import_command(sub)

    replay = sub.add_parser("replay", help="republish accepted events from the outbox")
    replay.add_argument("--from-seq", type=int, required=True)
    replay.set_defaults(fn=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.fn(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
