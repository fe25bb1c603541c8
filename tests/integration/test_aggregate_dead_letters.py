"""Every dead letter is a row before it is anything else: garbage with no seq survives a dead-letter topic
the broker refuses, and reaches the topic exactly once when it is writable again."""

from __future__ import annotations

import uuid

import httpx
import orjson

from services.aggregate.app import create_app
from shared.kafka import bounded, make_producer
from shared.settings import AggregateSettings
from tests.fixtures.aggregator import all_copied, caught_up, dead_letter_records, event, merge, metric, produce, row
from tests.fixtures.infra import Stack
from tests.fixtures.waiting import eventually

# NULs, bytes that are not UTF-8 (a lone continuation byte, a truncated sequence), and no JSON at all.
GARBAGE = b"\x00\xff\xfe{\"seq\": \x00\x80\xc3(\x00"
# Kafka forbids "." and ".." as topic names; Tansu, which accepts any other name and creates topics on
# first use, answers UNKNOWN_TOPIC_OR_PARTITION to every produce to them.
REFUSED_TOPIC = ".."


async def test_a_letter_without_a_seq_outlives_a_refused_topic_and_is_copied_once(stack: Stack) -> None:
    """The aggregator starts with a dead-letter topic the real broker refuses to write ("..": every produce
    is answered UNKNOWN_TOPIC_OR_PARTITION; stopping the shared broker instead would also stop the events
    topic, and Tansu would forget it). Garbage with no key, NULs and invalid UTF-8 goes onto the events topic
    between two good events of one partition. The good events apply; the garbage is a row with its exact
    bytes while the copy keeps failing. Then the name is corrected in the running aggregator's settings (the
    relay reads it at every attempt, as after an operator's fix): the letter reaches the topic, once."""
    group = f"g-{uuid.uuid4().hex[:8]}"
    settings = stack.settings(AggregateSettings, consumer_group=group, dead_letter_topic=REFUSED_TOPIC)
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        ends = await produce(stack, [event(1, "27991", 1000)])
        [partition] = ends
        producer = make_producer(stack.kafka_bootstrap)
        await bounded(producer.start())
        try:
            placed = await bounded(producer.send_and_wait(stack.events_topic, GARBAGE, key=None, partition=partition))
        finally:
            await bounded(producer.stop())
        ends = merge(ends, await produce(stack, [event(2, "27991", 1200)]))
        assert ends[partition] == placed.offset + 2  # the second event came after the garbage, same partition
        await caught_up(stack, group, ends)
        assert (await row(stack, "27991"))["rep_num"] == 1200  # the aggregator went on past the garbage

        [letter] = await stack.fetch("SELECT * FROM dead_letters")
        assert (letter["seq"], letter["event_id"], letter["code"]) == (None, None, "malformed")
        assert (letter["raw_key"], bytes(letter["raw_value"])) == (None, GARBAGE)
        assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == (
            stack.events_topic, partition, placed.offset,
        )

        async def refused() -> bool:
            text = (await client.get("/metrics")).text
            return metric(text, "d06_aggregate_dead_letter_publish_failures_total") >= 1

        await eventually(refused, what="the broker to refuse a copy", within=90)
        assert metric((await client.get("/metrics")).text, "d06_aggregate_dead_letters_unpublished") == 1
        assert (await stack.fetch("SELECT published_at FROM dead_letters"))[0]["published_at"] is None

        settings.dead_letter_topic = stack.dead_letter_topic

        await eventually(lambda: all_copied(stack), what="the letter copied to the topic", within=90)
        assert metric((await client.get("/metrics")).text, "d06_aggregate_dead_letters_unpublished") == 0

    records = await dead_letter_records(stack)
    assert len(records) == 1
    key, value = records[0]
    copy = orjson.loads(value)
    assert key is None
    assert (copy["reason"], copy["seq"], copy["event_id"]) == ("malformed", None, "")
    assert copy["source"] == {"topic": stack.events_topic, "partition": partition, "offset": placed.offset}
