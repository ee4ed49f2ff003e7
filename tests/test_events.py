"""The broker's event hub (`/v1/events`): what a new subscriber sees first."""

from __future__ import annotations

import asyncio

from broker.events import EventHub


async def test_a_change_before_the_stream_starts_is_in_its_snapshot() -> None:
    """A response starts streaming a few loop turns after its request came in; a worker
    that joins in between must show in the subscriber's first view (a snapshot taken with
    the request showed 0 workers and the join's event went to nobody: the GUI said "0
    workers" until the next change)."""
    hub = EventHub()
    farm = {"workers": 0}
    stream = hub.stream(lambda: [hub.format("farm", farm)])
    farm["workers"] = 1  # the worker joins before the response's first read
    hub.publish("farm", farm)
    first = await asyncio.wait_for(anext(stream), 1)
    assert first == hub.format("farm", {"workers": 1})
    farm["workers"] = 2  # and a change after the start arrives as an event
    hub.publish("farm", farm)
    assert await asyncio.wait_for(anext(stream), 1) == hub.format("farm", {"workers": 2})
    await stream.aclose()
    assert not hub.watched
