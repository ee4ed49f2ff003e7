"""The OpenAI-compatible edge: `/v1/audio/transcriptions`, `/translations`, `/v1/models`.

Every request is a job of the same pipeline as `/v1/stream` (`broker.farm.Farm`), so
admission, spool, dispatch, the job table, `/v1/events` and metrics all see it.
"""

from __future__ import annotations

from starlette.routing import Route

from broker.openai_api.models import get_model, list_models
from broker.openai_api.transcribe import transcriptions, translations

routes = [
    Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
    Route("/v1/audio/translations", translations, methods=["POST"]),
    Route("/v1/models", list_models),
    Route("/v1/models/{model:path}", get_model),
]
