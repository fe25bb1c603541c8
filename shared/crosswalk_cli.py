"""`d06 crosswalk`: replace weights from a file, read a unit's lineage (registered by shared/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any

from shared.crosswalk_db import fetch_lineage, known_for_weights, replace_weights
from shared.crosswalk_weights import check_weights, parse_weights, settled
from shared.hierarchy import Edition, fetch_hierarchy

WithDb = Callable[[Callable[[Any], Awaitable[int]]], Coroutine[Any, Any, int]]


def add_commands(sub: Any, with_db: WithDb) -> None:
    """The `crosswalk` group on the `d06` parser's subcommands; `with_db` runs a body in one transaction."""
    group = sub.add_parser("crosswalk", help="the 2025 crosswalk").add_subparsers(dest="sub", required=True)
    weights = group.add_parser(
        "weights", help="replace the weights of the legacy communes a CSV file names (all or nothing)"
    )
    weights.add_argument("file", type=Path, help="CSV with columns legacy_code,code_2025,weight,basis")
    weights.set_defaults(fn=lambda args: _weights(args, with_db))
    show = group.add_parser("show", help="a unit's lineage across the 2025 reform")
    show.add_argument("code")
    show.add_argument("--edition", choices=[e.value for e in Edition], default=Edition.E2025.value)
    show.set_defaults(fn=lambda args: _show(args, with_db))


def _weights(args: argparse.Namespace, with_db: WithDb) -> int:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    lines, bad = parse_weights(data)

    async def body(conn: Any) -> int:
        problems = sorted([*bad, *check_weights(lines, await known_for_weights(conn))], key=lambda b: b.line)
        if problems:
            for problem in problems:
                print(f"{args.file}:{problem}", file=sys.stderr)
            n_lines = len({p.line for p in problems})
            print(f"{n_lines} bad line(s): nothing changed", file=sys.stderr)
            return 1
        changed = await replace_weights(conn, settled(lines))
        communes = len({w.legacy_code for w in lines})
        print(f"weights of {communes:,} legacy unit(s) replaced: {changed:,} row(s) changed")
        return 0

    return asyncio.run(with_db(body))


def _show(args: argparse.Namespace, with_db: WithDb) -> int:
    async def body(conn: Any) -> int:
        unit = (await fetch_hierarchy(conn)).get(args.edition, args.code)
        if unit is None:
            print(f"no unit {args.code} in edition {args.edition}", file=sys.stderr)
            return 1
        rows = await fetch_lineage(conn, args.edition, args.code)
        title = f"{unit.name} ({args.edition} {unit.level} {unit.code})"
        if not rows:
            print(f"{title} is not in the crosswalk" + (
                ": legacy districts are not, their communes are" if unit.level == "district" else ""
            ))
            return 0
        verb = "was formed from" if args.edition == Edition.E2025.value else "went into"
        other = Edition.LEGACY.value if args.edition == Edition.E2025.value else Edition.E2025.value
        print(f"{title} {verb}:")
        width = max(len(r.name) for r in rows)
        print(f"  {'code':6} {'name':{width}}  {'level':8}  {'weight':>12}  basis")
        for r in rows:
            print(f"  {r.code:6} {r.name:{width}}  {r.level:8}  {_weight(r.weight):>12}  {r.basis}")
        print(f"  ({len(rows)} {other} unit(s))")
        return 0

    return asyncio.run(with_db(body))


def _weight(weight: Decimal) -> str:
    """1, 0.5, 0.3333333334: no trailing zeros, never an exponent."""
    return format(weight.normalize(), "f")
