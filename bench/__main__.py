"""`make bench` (`python -m bench`): d06 measured as a ministry would before a national rollout.

Sets up its own PostgreSQL, broker, schema, hierarchy (the whole legacy edition) and catalogue, starts the
three services as processes and runs the seven scenarios of docs/performance.md, in the order that lets
each one see only its own traffic: the aggregate scenario needs a topic nobody consumed yet, and the
ingest scenario runs last, with the aggregator stopped, so its million events are nobody's backlog.
Prints the table (scenario | figure | target | measured) and writes bench/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import uvloop

from bench import aggregate, freshness, imports, ingest, national, query
from bench.config import FULL, SMOKE, Sizes
from bench.report import Figure, Run, speed_probe, table
from bench.stack import SERVICES, BenchStack, note, step
from bench.workload import Legacy

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves the benchmark works, measures nothing")
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run" / "bench",
                        help="data directory and logs (default .run/bench)")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--database-url", help="use this (migrated or empty) database instead of our own server")
    parser.add_argument("--kafka-bootstrap", help="use this broker instead of our own")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    parser.add_argument("--profile", action="append", choices=SERVICES, default=[],
                        help="record this service with py-spy: a flame graph in the run directory")
    parser.add_argument("--only", choices=("aggregate", "imports", "freshness"),
                        help="run this scenario alone (on a fresh database: nothing else's backlog); the services "
                        "take their settings from the environment: AGGREGATE_QUALITY=false python -m bench "
                        "--only freshness")
    parser.add_argument("--freshness-rate", type=int,
                        help="scenario 3's events a second instead of the profile's (DESIGN's floor is at 2000)")
    parser.add_argument("--import-rows", type=int, action="append",
                        help="scenario 7's file sizes instead of the profile's (repeatable): --import-rows 100000")
    return parser.parse_args(argv)


async def scenarios(stack: BenchStack, sizes: Sizes, run: Run, install: bool, only: str | None = None) -> None:
    legacy = Legacy.load()

    async def measure(key: str, coroutine: object) -> None:
        figures, details = await coroutine  # type: ignore[misc]
        run.add(*figures)
        run.details[key] = details

    if only == "imports":  # it starts the services it needs
        await measure("imports", imports.scenario(stack, sizes, legacy))
        return
    services = ("ingest", "query", "aggregate") if only == "freshness" else ("ingest", "query")
    for name in services:
        step(f"{name}: starting on 127.0.0.1:{stack.ports[name]}")
        stack.start(name)
    for name in services:
        stack.wait_ready(name)
    if only == "freshness":
        await measure("freshness", freshness.scenario(stack, sizes, legacy))
        return
    if only == "aggregate":
        await measure("aggregate", aggregate.scenario(stack, sizes, legacy))
        return

    await measure("aggregate", aggregate.scenario(stack, sizes, legacy))
    await measure("freshness", freshness.scenario(stack, sizes, legacy))
    await measure("query", query.scenario(stack, sizes, legacy, install=install))
    await measure("national", national.scenario(stack, sizes))
    step("aggregate: stopping it for the ingest scenario")
    stack.stop("aggregate")
    await measure("ingest", ingest.scenario(stack, sizes, legacy))
    step("[scenario 6] peak memory (VmHWM) of each service")
    memory = {}
    for name in SERVICES:
        kib = stack.sample_memory(name)
        memory[name] = kib
        run.add(Figure("6 memory", f"{name}: peak resident memory", kib / 1024 if kib else None, "MiB"))
    note(", ".join(f"{name} {kib / 1024:,.0f} MiB" for name, kib in memory.items()))
    run.details["memory_kib"] = memory
    # Last: it restarts ingest and the aggregator, and its files would be every other scenario's backlog.
    await measure("imports", imports.scenario(stack, sizes, legacy))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.import_rows:
        sizes = replace(sizes, import_rows=tuple(args.import_rows))
    if args.freshness_rate:
        sizes = replace(sizes, freshness_rate=args.freshness_rate)
    run = Run(profile=sizes.name)
    stack = BenchStack(args.run_dir, run_id=secrets.token_hex(3), database_url=args.database_url,
                       kafka_bootstrap=args.kafka_bootstrap, profile=set(args.profile))
    started = time.monotonic()
    failed = False
    probes = [speed_probe()]
    try:
        stack.start_infrastructure()
        uvloop.run(scenarios(stack, sizes, run, install=not args.no_install, only=args.only))
    except Exception:  # noqa: BLE001 - report what was measured, then fail
        traceback.print_exc()
        failed = run.failed = True
    finally:
        step("stopping the services and the servers")
        stack.close()
    probes.append(speed_probe())
    run.details["speed_probe_seconds"] = probes
    # The ingest scenario ran last; show the table in scenario order.
    run.figures.sort(key=lambda f: f.scenario[0])
    print()
    print(table(run.figures))
    print(f"\nspeed probe (a 5M-iteration Python loop, s): {probes[0]:.2f} before, {probes[1]:.2f} after; "
          "compare runs only at similar probes")
    path = run.write(args.results_dir)
    print(f"\n{'FAILED after' if failed else 'done in'} {time.monotonic() - started:,.0f} s; results in "
          f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}; logs in {args.run_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
