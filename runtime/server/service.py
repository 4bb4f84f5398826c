"""What one server serves: the engine, its worker and metrics, the chat template, the
options; and the checks every generation request goes through before it queues."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..engines import Engine
from .errors import ApiError
from .metrics import Metrics
from .responses import model_card
from .schemas import COMPLETIONS_DEFAULT_MAX_TOKENS, ChatCompletionRequest, CompletionRequest
from .worker import EngineWorker, QueueFull, Sampling, ShuttingDown

MAX_BODY_BYTES = 4 << 20


@dataclass
class ServerOptions:
    model_id: str | None = None          # the name clients send (default: the engine's)
    api_key: str | None = None           # None: no key needed
    max_queue: int = 64                  # requests allowed to wait; more get 503
    chat_template: str | None = None     # overrides the model's own template (Jinja text)
    chat_template_name: str | None = None  # what --chat-template said (a name or a file)
    max_body_bytes: int = MAX_BODY_BYTES
    close_engine: bool = True            # close the engine when the server stops


class Service:
    def __init__(self, engine: Engine, options: ServerOptions):
        self.engine, self.options = engine, options
        self.model_id = options.model_id or engine.name
        self.created = int(time.time())
        self.metrics = Metrics(self.model_id, engine.backend, engine.device)
        self.worker = EngineWorker(engine, options.max_queue, self.metrics)
        self.chat_template = options.chat_template or engine.chat_template
        self._closed = False

    # ------------------------------------------------------------------ what is served

    @property
    def chat_source(self) -> str | None:
        """Where the chat template comes from: "model", the --chat-template value, or None."""
        if self.options.chat_template:
            return self.options.chat_template_name or "custom"
        return "model" if self.engine.chat_template else None

    def card(self) -> dict:
        return model_card(self.model_id, self.created, backend=self.engine.backend,
                          device=self.engine.device, context_length=self.engine.n_ctx,
                          chat=self.chat_template is not None, chat_template=self.chat_source)

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.model_id:
            raise ApiError(404, f"model '{model}' is not served here; this server serves "
                                f"'{self.model_id}'", param="model", code="model_not_found")

    def check_chat(self) -> None:
        if self.chat_template is None:
            raise ApiError(400, f"model '{self.model_id}' is a base model without a chat template "
                                f"of its own, so it cannot chat: use /v1/completions, or start the "
                                f"server with --chat-template gemma|chatml|llama3|FILE",
                           param="messages", code="chat_not_supported")

    # ------------------------------------------------------------------ generation requests

    def sampling(self, req: CompletionRequest | ChatCompletionRequest, n_prompt: int) -> Sampling:
        """The engine's parameters, after the prompt-length checks (400 when it cannot fit)."""
        n_ctx = self.engine.n_ctx
        chat = isinstance(req, ChatCompletionRequest)
        where = "messages" if chat else "prompt"
        if n_prompt == 0:
            raise ApiError(400, f"the {where} is empty", param=where)
        if n_prompt >= n_ctx:
            raise ApiError(400, f"the {where} ({n_prompt} tokens) does not fit the context of "
                                f"{n_ctx} tokens", param=where, code="context_length_exceeded")
        asked = req.max_new_tokens if chat else req.max_tokens
        # OpenAI's defaults: 16 tokens for completions, the rest of the context for chat
        max_tokens = asked or (n_ctx - n_prompt if chat else COMPLETIONS_DEFAULT_MAX_TOKENS)
        if n_prompt + max_tokens > n_ctx:
            raise ApiError(400, f"the {where} ({n_prompt} tokens) + max_tokens ({max_tokens}) "
                                f"exceeds the context of {n_ctx} tokens", param=where,
                           code="context_length_exceeded")
        return Sampling(max_tokens=max_tokens,
                        temperature=1.0 if req.temperature is None else req.temperature,
                        top_p=1.0 if req.top_p is None else req.top_p,
                        # numpy and llama.cpp take 32-bit unsigned seeds; OpenAI any integer
                        seed=None if req.seed is None else req.seed % 2**32,
                        stop=tuple(req.stops))

    def submit(self, ids: list[int], sampling: Sampling):
        try:
            return self.worker.submit(ids, sampling)
        except QueueFull:
            raise ApiError(503, f"the server is busy ({self.worker.waiting} requests queued); "
                                f"retry later", type_="server_error", code="queue_full",
                           headers={"Retry-After": str(self.retry_after())}) from None
        except ShuttingDown:
            raise ApiError(503, "the server is shutting down", type_="server_error",
                           code="shutting_down") from None

    def retry_after(self) -> int:
        """Seconds until a queue slot is likely free: one mean generation time, 1..60."""
        return int(min(60, max(1, round(self.worker.mean_generation_seconds))))

    # ------------------------------------------------------------------ stopping

    def begin_shutdown(self, grace: float) -> None:
        """In the event loop: refuse new requests; cancel those still running after `grace` s."""
        self.worker.accepting = False
        asyncio.get_running_loop().call_later(grace, self.worker.cancel_all, "shutdown")

    async def aclose(self) -> None:
        """Cancel what is left, wait for the engine thread, then close the engine."""
        if self._closed:
            return
        await self.worker.aclose()
        self._close_engine()

    def close(self) -> None:
        """The same outside the event loop; idempotent."""
        if self._closed:
            return
        self.worker.close()
        self._close_engine()

    def _close_engine(self) -> None:
        self._closed = True
        if self.options.close_engine:
            self.engine.close()
