"""schemathesis against the OpenAPI documents of ingest and query, in-process on the real PostgreSQL.

Every operation of both services gets generated requests, valid ones (positive mode) and ones that break
the schema (negative mode), sent with an API key of every role and scope VN, so they reach validation,
the hierarchy and the database rather than stopping at 401. Each answer must not be a 5xx and must
conform to the document: a declared status, its content type, its schema and its headers.

Hypothesis drives the generation in a worker thread (it is synchronous); each request is sent on the
test's event loop, where the apps, their lifespans and their database pools live.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.ingest.app import create_app as create_ingest
from shared.auth import Role
from tests.fixtures.apps import no_relay, running, serve
from tests.fixtures.infra import Stack
from tests.fixtures.rollups import LEGACY, insert

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
EXAMPLES = 50  # per operation and mode; operations with few possible inputs run out sooner
MIN_REQUESTS = 1000


@dataclass
class Tally:
    sent: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    by_operation: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def fuzz(schema_doc: dict[str, Any], send: Callable[[dict[str, Any]], httpx.Response], tally: Tally) -> None:
    """Run every operation of one document in both modes (synchronous: called in a worker thread)."""
    service = schema_doc["info"]["title"]
    schema = schemathesis.openapi.from_dict(schema_doc)
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz_operation(operation, mode, f"{service}: {operation.label}", send, tally)
            except Unsatisfiable:
                # Negative mode cannot break a schema that has nothing to break (no parameter, no body).
                assert mode is GenerationMode.NEGATIVE, operation.label


def fuzz_operation(
    operation: Any, mode: GenerationMode, label: str, send: Callable[[dict[str, Any]], httpx.Response], tally: Tally
) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        response = send(case.as_transport_kwargs(base_url="http://test"))
        with tally.lock:
            tally.sent += 1
            tally.by_status[response.status_code] = tally.by_status.get(response.status_code, 0) + 1
            tally.by_operation[label] = tally.by_operation.get(label, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:
            with tally.lock:
                tally.failures.append(f"{label} [{mode.value}] {case.as_curl_command()}\n{exc}")

    one()


async def test_generated_requests_get_no_5xx_and_conform_to_the_schemas(stack: Stack) -> None:
    await insert(stack, LEGACY)
    # Every third request goes with a province key, so the scope checks' answers are generated too.
    every_role = tuple(Role)
    keys = [await stack.create_key(roles=every_role), await stack.create_key(roles=every_role),
            await stack.create_key(scope="80", edition="legacy", roles=every_role)]
    loop = asyncio.get_running_loop()
    tally = Tally()
    documented = 0
    async with running(create_ingest(no_relay(stack))) as ingest, serve(stack) as query:
        for client in (ingest, query):
            doc = (await client.get("/openapi.json")).json()
            documented += sum(len(methods) for methods in doc["paths"].values())

            def send(kwargs: dict[str, Any], client: httpx.AsyncClient = client) -> httpx.Response:
                key = keys[tally.sent % len(keys)]
                return asyncio.run_coroutine_threadsafe(_request(client, kwargs, key), loop).result(timeout=30)

            await asyncio.to_thread(fuzz, doc, send, tally)
    print(f"\nfuzz: {tally.sent} generated requests, by status {dict(sorted(tally.by_status.items()))}")
    for label, count in sorted(tally.by_operation.items()):
        print(f"  {count:5}  {label}")
    assert not tally.failures, f"{len(tally.failures)} failure(s):\n" + "\n\n".join(tally.failures[:10])
    assert tally.sent >= MIN_REQUESTS
    assert len(tally.by_operation) == documented  # every operation of both documents was exercised


async def _request(client: httpx.AsyncClient, kwargs: dict[str, Any], key: str) -> httpx.Response:
    """A schemathesis case (serialized for `requests`) sent with httpx, with the client's key."""
    kwargs = dict(kwargs)
    content = kwargs.pop("data", None)
    body = kwargs.pop("json", None)
    # The generated Authorization would stop nearly every request at 401: the real key replaces it, so
    # the requests reach validation, the hierarchy and the database (bad keys have their own tests).
    headers = {k: v for k, v in (kwargs.pop("headers", None) or {}).items()
               if v is not None and k.lower() != "authorization"}
    headers["Authorization"] = f"Bearer {key}"
    request = client.build_request(
        kwargs.pop("method"), kwargs.pop("url"), params=kwargs.pop("params", None), headers=headers,
        content=content, json=body if content is None and body is not None else None,
        cookies=kwargs.pop("cookies", None),
    )
    return await client.send(request)
