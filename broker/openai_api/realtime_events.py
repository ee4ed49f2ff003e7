"""The server events of OpenAI's GA Realtime API that a transcription session sends.

Each builder returns the event as the JSON text sent; the shapes are those the `openai`
SDK parses (`openai.types.realtime`): every event has its own `event_id`, a user turn is a
`message` item with one `input_audio` content part (`content_index` 0).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from broker.openai_api.errors import error_details

CONTENT_INDEX = 0
"""A user turn's audio is its item's one content part."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def event(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, "event_id": new_id("event"), **fields})


def error(
    message: str,
    *,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    event_id: str | None = None,
) -> str:
    """An `error` event (`event_id`: the client event at fault, if it had one)."""
    return event("error", error={**error_details(message, kind, code, param), "event_id": event_id})


def user_item(item_id: str, transcript: str | None) -> dict[str, Any]:
    """A user turn as `conversation.item.added` (no transcript yet) and `.done` show it."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_audio", "transcript": transcript}],
    }


def turn_stopped(item_id: str, previous: str | None, stopped_ms: int | None) -> list[str]:
    """A turn's audio is over (the worker began its close): `speech_stopped` (server VAD
    only), `committed`, the item added (its transcript still to come)."""
    events = []
    if stopped_ms is not None:
        events.append(event("input_audio_buffer.speech_stopped", audio_end_ms=stopped_ms,
                            item_id=item_id))  # fmt: skip
    return [
        *events,
        event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous),
        event("conversation.item.added", item=user_item(item_id, None), previous_item_id=previous),
    ]


def turn_transcribed(
    item_id: str, previous: str | None, transcript: str, seconds: float
) -> list[str]:
    """A stopped turn's words are all in: the transcription `completed`, the item done."""
    return [
        event(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=CONTENT_INDEX,
            transcript=transcript,
            usage={"type": "duration", "seconds": round(max(seconds, 0.0), 3)},
        ),
        event(
            "conversation.item.done", item=user_item(item_id, transcript), previous_item_id=previous
        ),
    ]
