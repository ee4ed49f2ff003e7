"""`GET /v1/models` and `/v1/models/{id}`: what the connected workers serve.

OpenAI's model names that stand for the farm's default model are listed too, so that a
client which checks its model before using it finds it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.farm import OPENAI_MODEL_ALIASES, Farm
from broker.openai_api.errors import OpenAIError, from_exception
from whisperfarm.errors import WhisperfarmError


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "whisperfarm"}


def _names(farm: Farm) -> list[str]:
    aliases = sorted(OPENAI_MODEL_ALIASES) if farm.default_model() else []
    return [*farm.models(), *aliases]


def _refused(request: Request) -> Response | None:
    """The answer to a caller without a valid token (tokens on), else None."""
    farm: Farm = request.app.state.farm
    try:
        farm.identity(request.headers, request.query_params)
    except WhisperfarmError as exc:
        return from_exception(exc).response()
    return None


async def list_models(request: Request) -> Response:
    if (refused := _refused(request)) is not None:
        return refused
    farm: Farm = request.app.state.farm
    return JSONResponse({"object": "list", "data": [_model(n) for n in _names(farm)]})


async def get_model(request: Request) -> Response:
    if (refused := _refused(request)) is not None:
        return refused
    farm: Farm = request.app.state.farm
    name = request.path_params["model"]
    if name not in _names(farm):
        return OpenAIError(404, f"the model {name!r} does not exist", param="model",
                           code="model_not_found").response()  # fmt: skip
    return JSONResponse(_model(name))
