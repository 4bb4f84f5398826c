"""An OpenAI-compatible HTTP server over any engine (FastAPI + uvicorn).

    GET  /v1/models              the served model, and whether it can chat
    POST /v1/completions         prompt → text (stream: server-sent events)
    POST /v1/chat/completions    messages → text through the chat template
    GET  /health                 liveness, what is loaded, the queue
    GET  /metrics                Prometheus metrics
    GET  /docs, /openapi.json    the API as FastAPI describes it

Modules: schemas (request bodies), responses (bodies from the openai package's types),
worker (FIFO queue → one engine thread, cancellation), service (what is served and the
checks before a request queues), security (API key), metrics, errors, app (routes), run
(uvicorn, graceful stop).
"""
from .app import create_app
from .run import BackgroundServer, bind, serve, url_of
from .security import is_loopback
from .service import MAX_BODY_BYTES, ServerOptions

__all__ = ["BackgroundServer", "MAX_BODY_BYTES", "ServerOptions", "bind",
           "create_app", "is_loopback", "serve", "url_of"]
