"""The form fields of `/v1/audio/transcriptions` and `/translations`, checked once.

Unknown fields are ignored (OpenAI's clients send some this farm has no use for, such
as `include[]` or `chunking_strategy`); a known field with a bad value is a 400 naming
that field, as OpenAI answers it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import FormData, UploadFile

from broker.openai_api.errors import OpenAIError
from broker.openai_api.responses import ResponseFormat

Task = Literal["transcribe", "translate"]


class TranscriptionOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(min_length=1, max_length=200)
    language: str | None = Field(default=None, min_length=2, max_length=16)
    prompt: str | None = Field(default=None, max_length=4000)
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    response_format: ResponseFormat = "json"
    timestamp_granularities: list[Literal["word", "segment"]] = []
    stream: bool = False

    @field_validator("language", "prompt", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value


def parse_options(form: FormData) -> tuple[UploadFile, TranscriptionOptions]:
    """The uploaded file and the request's options; `OpenAIError` 400 if either is bad."""
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise OpenAIError.bad_request("a file is required (multipart field 'file')", "file")
    fields: dict[str, object] = {
        key: value for key, value in form.multi_items() if isinstance(value, str)
    }
    fields["timestamp_granularities"] = [
        str(v)
        for v in form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    ]
    fields.setdefault("model", "")
    try:
        options = TranscriptionOptions.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = str(first["loc"][0]) if first["loc"] else None
        raise OpenAIError.bad_request(f"{param}: {first['msg']}", param) from None
    if options.timestamp_granularities and options.response_format != "verbose_json":
        raise OpenAIError.bad_request(
            "timestamp_granularities requires response_format=verbose_json",
            "timestamp_granularities",
        )
    if options.response_format == "diarized_json" and options.stream:
        raise OpenAIError.bad_request(
            "diarized_json is answered whole: stream must be false", "stream"
        )
    if options.stream and options.response_format not in ("json", "text"):
        raise OpenAIError.bad_request(
            "stream=true answers with events: response_format must be json or text",
            "response_format",
        )
    return file, options
