"""Request bodies of /v1/completions and /v1/chat/completions as pydantic models.

OpenAI's field names, ranges and defaults. Unknown fields are ignored, as OpenAI does.
Types are strict ("0.5" is not a number, true is not 1). Features this server does not
implement (penalties, logprobs, tools, several choices, ...) are refused by name with a
400 instead of being silently ignored: a client asking for them would get wrong results.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

COMPLETIONS_DEFAULT_MAX_TOKENS = 16      # OpenAI's default for /v1/completions


def _refuse(what: str) -> PydanticCustomError:
    return PydanticCustomError("unsupported", f"{what} is not supported by this server")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool | None = Field(None, description="a last chunk with the token usage")


class _Sampling(BaseModel):
    """The fields both endpoints share."""
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = Field(None, description="the served model's id; may be left out")
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy; default 1")
    top_p: float | None = Field(None, ge=0, le=1, description="nucleus sampling; default 1")
    n: int | None = Field(None, description="choices per request: only 1")
    stop: str | list[str] | None = Field(None, description="up to 4 strings that end the text")
    seed: int | None = Field(None, description="same seed, same parameters: same text")
    stream: bool | None = Field(False, description="server-sent events, one per piece of text")
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="only 0")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="only 0")
    logit_bias: dict[str, float] | None = Field(None, description="only empty")
    user: str | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, v):
        if v not in (None, 1):
            raise PydanticCustomError("unsupported", "only n=1 is supported")
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4 or not all(stops):
            raise PydanticCustomError("stop", "give up to 4 non-empty stop strings")
        return stops

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, v, info):
        if v:
            raise _refuse(f"a non-zero {info.field_name}")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _no_bias(cls, v):
        if v:
            raise _refuse("logit_bias")
        return v

    @property
    def stops(self) -> list[str]:
        return list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_Sampling):
    """POST /v1/completions."""
    prompt: str = Field(description="the text to continue (one prompt per request)")
    max_tokens: int | None = Field(None, ge=1, description=f"default {COMPLETIONS_DEFAULT_MAX_TOKENS}")
    echo: bool | None = Field(None, description="only false")
    suffix: str | None = Field(None, description="not supported")
    best_of: int | None = Field(None, description="only 1")
    logprobs: int | None = Field(None, description="not supported")

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, v):
        if isinstance(v, list) and len(v) == 1 and isinstance(v[0], str):
            return v[0]
        if not isinstance(v, str):
            raise PydanticCustomError(
                "prompt", "must be a string (one prompt per request; token-id prompts are "
                          "not supported)")
        return v

    @field_validator("echo", "suffix", "logprobs")
    @classmethod
    def _not_supported(cls, v, info):
        if v:
            raise _refuse(info.field_name)
        return v

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, v):
        if v not in (None, 1):
            raise PydanticCustomError("unsupported", "only best_of=1 is supported")
        return v


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: str
    text: str | None = None

    @field_validator("type")
    @classmethod
    def _text_only(cls, v):
        if v != "text":
            raise PydanticCustomError("content", "only text content parts are supported (got '{t}')",
                                      {"t": v})
        return v


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list | None = Field(None, description="not supported")

    @field_validator("tool_calls")
    @classmethod
    def _no_tools(cls, v):
        if v:
            raise _refuse("tool_calls")
        return v

    def as_template_input(self) -> dict:
        """{"role", "content"} as chat templates expect them (developer is OpenAI's new name
        for system)."""
        c = self.content
        text = c if isinstance(c, str) else "".join(p.text or "" for p in c or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatCompletionRequest(_Sampling):
    """POST /v1/chat/completions."""
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, description="default: the rest of the context")
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for max_tokens")
    logprobs: bool | None = Field(None, description="only false")
    top_logprobs: int | None = Field(None, description="not supported")
    tools: list | None = Field(None, description="not supported")
    tool_choice: str | dict | None = Field(None, description="only 'none'")
    functions: list | None = Field(None, description="not supported")
    function_call: str | dict | None = Field(None, description="only 'none'")
    response_format: dict | None = Field(None, description="only {'type': 'text'}")

    @field_validator("logprobs", "top_logprobs", "tools", "functions")
    @classmethod
    def _not_supported(cls, v, info):
        if v:
            raise _refuse(info.field_name)
        return v

    @field_validator("tool_choice", "function_call")
    @classmethod
    def _no_tool_choice(cls, v, info):
        if v not in (None, "none"):
            raise _refuse(info.field_name)
        return v

    @field_validator("response_format")
    @classmethod
    def _text_format(cls, v):
        if v and v.get("type", "text") != "text":
            raise _refuse(f"response_format {v.get('type')!r}")
        return v

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def template_messages(self) -> list[dict]:
        return [m.as_template_input() for m in self.messages]
