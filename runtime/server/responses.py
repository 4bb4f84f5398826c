"""Response bodies built from the `openai` package's own types, so their shape follows the
client's; server-sent events in OpenAI's framing (`data: {json}` ... `data: [DONE]`)."""
from __future__ import annotations

import json
import time
import uuid

from openai.types import Completion, CompletionChoice, CompletionUsage, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat import chat_completion, chat_completion_chunk

from .errors import error_body

DONE = "data: [DONE]\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> CompletionUsage:
    return CompletionUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                           total_tokens=prompt_tokens + completion_tokens)


def model_card(model_id: str, created: int, **extra) -> dict:
    """An openai `Model`; OpenAI's type allows extra fields, which say what this one can do."""
    return _dump(Model(id=model_id, created=created, object="model", owned_by="babel-edge", **extra))


def sse(payload: dict | str) -> str:
    return f"data: {payload}\n\n"


def sse_error(message: str, type_: str = "server_error", code: str | None = None) -> str:
    # the openai client raises APIError on an event with an "error" field
    return sse(json.dumps(error_body(message, type_, code=code), ensure_ascii=False))


def _dump(obj) -> dict:
    return obj.model_dump(mode="json", exclude_unset=True)


class Reply:
    """The answers to one request: the whole reply, or its chunks."""

    def __init__(self, model_id: str, chat: bool):
        self.model_id, self.chat = model_id, chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self._role_sent = False

    def whole(self, text: str, finish: str, use: CompletionUsage) -> dict:
        if self.chat:
            return _dump(ChatCompletion(
                id=self.id, object="chat.completion", created=self.created, model=self.model_id,
                choices=[chat_completion.Choice(
                    index=0, finish_reason=finish, logprobs=None,
                    message=ChatCompletionMessage(role="assistant", content=text))],
                usage=use))
        return _dump(Completion(
            id=self.id, object="text_completion", created=self.created, model=self.model_id,
            choices=[CompletionChoice(index=0, text=text, finish_reason=finish, logprobs=None)],
            usage=use))

    def chunk(self, text: str, finish: str | None = None) -> str:
        """One event: new text, or (with finish) the last piece and why it ended."""
        if self.chat:
            fields = {"content": text} if text else {}
            if not self._role_sent:            # the first chunk says who speaks
                fields, self._role_sent = {"role": "assistant", "content": text}, True
            delta = chat_completion_chunk.ChoiceDelta(**fields)
            body = ChatCompletionChunk(
                id=self.id, object="chat.completion.chunk", created=self.created,
                model=self.model_id, choices=[chat_completion_chunk.Choice(
                    index=0, delta=delta, finish_reason=finish, logprobs=None)])
        else:
            # OpenAI streams finish_reason null until the last chunk; the SDK's type declares
            # only the final values, so the choice is built without validation
            choice = CompletionChoice.model_construct(index=0, text=text, finish_reason=finish,
                                                      logprobs=None)
            body = Completion(id=self.id, object="text_completion", created=self.created,
                              model=self.model_id, choices=[choice])
        return sse(body.model_dump_json(exclude_unset=True))

    def usage_chunk(self, use: CompletionUsage) -> str:
        """The extra last chunk `stream_options.include_usage` asks for: no choices, usage."""
        cls, obj = ((ChatCompletionChunk, "chat.completion.chunk") if self.chat
                    else (Completion, "text_completion"))
        body = cls(id=self.id, object=obj, created=self.created, model=self.model_id,
                   choices=[], usage=use)
        return sse(body.model_dump_json(exclude_unset=True))
