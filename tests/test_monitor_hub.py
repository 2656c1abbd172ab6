from __future__ import annotations

import asyncio
import json

from monitor.hub import Hub


def test_a_client_too_slow_to_keep_up_is_dropped_and_told_so() -> None:
    async def scenario() -> None:
        hub = Hub(queue_size=2)
        slow, fast = hub.subscribe(), hub.subscribe()
        hub.publish({"n": 1})
        hub.publish({"n": 2})
        assert json.loads(fast.get_nowait()) == {"n": 1}
        hub.publish({"n": 3})
        assert len(hub) == 1
        drained = [slow.get_nowait() for _ in range(slow.qsize())]
        assert drained[-1] is None

    asyncio.run(scenario())


def test_messages_are_strict_json_even_for_odd_values() -> None:
    async def scenario() -> None:
        hub = Hub()
        queue = hub.subscribe()
        hub.publish({"run": "<b>x</b>", "loss": None})
        assert json.loads(queue.get_nowait()) == {"run": "<b>x</b>", "loss": None}

    asyncio.run(scenario())
