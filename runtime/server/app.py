"""The FastAPI application: routes, the middleware around them, start and stop."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from openai.types import Completion
from openai.types.chat import ChatCompletion
from starlette.concurrency import run_in_threadpool

from babel_edge import __version__
from babel_edge.errors import UserError

from ..engines import Engine
from .errors import ApiError, CatchAll, ErrorResponse, install_handlers
from .metrics import StatusCounter
from .responses import DONE, Reply, sse_error, usage
from .schemas import ChatCompletionRequest, CompletionRequest
from .security import BodyLimit, require_api_key
from .service import ServerOptions, Service
from .worker import Failed, Job, Piece, ShuttingDown

DESCRIPTION = """An OpenAI-compatible API over one model (babel-edge).

Requests are answered one at a time, in arrival order; beyond `--max-queue` waiting requests
the answer is 503 with `Retry-After`. A request whose client disconnects stops generating at
the next token. When the server has an API key, the `/v1` routes need
`Authorization: Bearer KEY`; `/health`, `/metrics` and these docs do not."""

_ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 404, 413, 500, 503)}


def _service(request: Request) -> Service:
    return request.app.state.service


# ------------------------------------------------------------------ /v1 (API key when set)

v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=_ERRORS)


@v1.get("/models", summary="The served model")
async def list_models(request: Request) -> dict:
    """The one model; `chat` says whether /v1/chat/completions works for it, and
    `chat_template` where its template comes from ("model", a --chat-template, or null)."""
    return {"object": "list", "data": [_service(request).card()]}


@v1.get("/models/{model_id}", summary="One model")
async def get_model(model_id: str, request: Request) -> dict:
    svc = _service(request)
    svc.check_model(model_id)
    return svc.card()


@v1.post("/completions", summary="Continue a prompt",
         responses={200: {"model": Completion, "description": "JSON, or server-sent events "
                          "(Completion chunks, then `data: [DONE]`) when stream is true"}})
async def completions(req: CompletionRequest, request: Request):
    svc = _service(request)
    svc.check_model(req.model)
    ids = await run_in_threadpool(svc.engine.tokenize, req.prompt)
    return await _answer(request, svc, req, ids, Reply(svc.model_id, chat=False))


@v1.post("/chat/completions", summary="Answer chat messages",
         responses={200: {"model": ChatCompletion, "description": "JSON, or server-sent events "
                          "(ChatCompletionChunk, then `data: [DONE]`) when stream is true"}})
async def chat_completions(req: ChatCompletionRequest, request: Request):
    svc = _service(request)
    svc.check_model(req.model)
    svc.check_chat()
    try:
        ids = await run_in_threadpool(svc.engine.render_chat, req.template_messages(),
                                      svc.chat_template)
    except UserError as e:             # the template refused these messages
        raise ApiError(400, str(e), param="messages") from None
    return await _answer(request, svc, req, ids, Reply(svc.model_id, chat=True))


async def _answer(request: Request, svc: Service, req, ids: list[int], reply: Reply):
    job = svc.submit(ids, svc.sampling(req, len(ids)))
    if req.stream:
        return JobStream(job, _events(job, reply, len(ids), req.include_usage))
    outcome = await _until_done_or_gone(job, request.receive)
    if outcome is None:
        return Response(status_code=499)     # nobody is listening; counted in the metrics
    text, end = outcome
    if isinstance(end, Failed):
        raise _failure(end.error)
    if end.finish == "cancelled":             # only the server's stop cancels a live request
        raise _failure(ShuttingDown())
    return JSONResponse(reply.whole(text, end.finish, usage(len(ids), end.completion_tokens)))


def _failure(e: BaseException) -> ApiError:
    if isinstance(e, ShuttingDown):
        return ApiError(503, "the server is shutting down", "server_error", code="shutting_down")
    return ApiError(500, f"generation failed ({type(e).__name__}); the server log has the "
                         f"details", "server_error", code="internal_error")


async def _collect(job: Job):
    parts = []
    async for event in job.stream():
        if isinstance(event, Piece):
            parts.append(event.text)
        else:
            return "".join(parts), event


async def _client_gone(receive) -> None:
    # the body is read already: the next ASGI message is the disconnect
    while (await receive())["type"] != "http.disconnect":
        pass


async def _until_done_or_gone(job: Job, receive):
    """(text, Done | Failed), or None when the client disconnected first (the job is then
    cancelled at its next token)."""
    collect = asyncio.ensure_future(_collect(job))
    gone = asyncio.ensure_future(_client_gone(receive))
    try:
        await asyncio.wait({collect, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:     # the server is stopping
        job.cancel("shutdown")
        raise
    finally:
        collect.cancel()                   # no-ops on a finished task
        gone.cancel()
    if collect.done() and not collect.cancelled():
        return collect.result()
    job.cancel("client_disconnected")
    return None


async def _events(job: Job, reply: Reply, n_prompt: int, include_usage: bool):
    async for event in job.stream():
        if isinstance(event, Piece):
            yield reply.chunk(event.text)
        elif isinstance(event, Failed) or event.finish == "cancelled":
            e = _failure(event.error if isinstance(event, Failed) else ShuttingDown())
            yield sse_error(e.message, e.type, e.code)
        else:
            yield reply.chunk("", event.finish)
            if include_usage:
                yield reply.usage_chunk(usage(n_prompt, event.completion_tokens))
            yield DONE


class JobStream(StreamingResponse):
    """Server-sent events of one job; the job is cancelled when the stream ends early."""
    media_type = "text/event-stream"

    def __init__(self, job: Job, events):
        super().__init__(events, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.job = job

    async def __call__(self, scope, receive, send):
        # Starlette stops the stream when the client disconnects (and returns normally);
        # the server cancels the task when it stops. Either way the job must stop too.
        reason = "client_disconnected"
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            reason = "shutdown"
            raise
        finally:
            self.job.cancel(reason)        # a no-op when the job finished


# ------------------------------------------------------------------ operations (no key)

ops = APIRouter()


@ops.get("/health", summary="Liveness and what is loaded")
async def health(request: Request):
    svc = _service(request)
    ok = svc.worker.accepting
    return JSONResponse({"status": "ok" if ok else "shutting_down", "model": svc.model_id,
                         "backend": svc.engine.backend, "device": svc.engine.device,
                         "queued": svc.worker.waiting, "running": svc.worker.running is not None},
                        status_code=200 if ok else 503)


@ops.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request):
    body, content_type = _service(request).metrics.exposition()
    return Response(body, media_type=content_type)


# ------------------------------------------------------------------ the application

def create_app(engine: Engine, options: ServerOptions | None = None) -> FastAPI:
    """The server for `engine`; run it with uvicorn (run.py). Stopping it cancels what is
    left, waits for the engine thread, then closes the engine (options.close_engine)."""
    service = Service(engine, options or ServerOptions())

    @asynccontextmanager
    async def lifespan(_app):
        service.worker.start()
        try:
            yield
        finally:
            await service.aclose()

    app = FastAPI(title="babel-edge", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.service = service
    install_handlers(app)
    app.add_middleware(CatchAll)                                      # inner: 500s
    app.add_middleware(BodyLimit, max_bytes=service.options.max_body_bytes)
    app.add_middleware(StatusCounter, metrics=service.metrics)        # outer: sees every status
    app.include_router(v1)
    app.include_router(ops)
    return app
