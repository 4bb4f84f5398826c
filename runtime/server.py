"""An OpenAI-compatible HTTP server over any engine (standard library only).

    GET  /health                 liveness + what is loaded
    GET  /v1/models              the one served model
    POST /v1/completions         prompt → text   (stream: server-sent events)
    POST /v1/chat/completions    messages → text through the model's chat template

One engine serves one request at a time: requests queue on a lock (at most
`max_queue` waiting, beyond that 503), so concurrent clients are all answered
in turn and never crash the engine. Bad requests get a 4xx JSON error in
OpenAI's shape ({"error": {"message", "type", "param", "code"}}). A client that
disconnects mid-stream makes the write fail; the generator is then closed,
which stops generation at the next token and frees the engine for the next
request. Binds 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from babel_edge.errors import UserError

from .engines import Engine

MAX_BODY = 4 << 20


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


# ------------------------------------------------------------------ request validation

def _number(body: dict, name: str, default, lo, hi, kind=float):
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
        raise ApiError(400, f"'{name}' must be {'an integer' if kind is int else 'a number'}", param=name)
    if not lo <= v <= hi:
        raise ApiError(400, f"'{name}' must be between {lo} and {hi}, got {v}", param=name)
    return kind(v)


def parse_sampling(body: dict, n_ctx: int) -> dict:
    if body.get("n", 1) != 1:
        raise ApiError(400, "only n=1 is supported", param="n")
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise ApiError(400, "'stop' must be a non-empty string or a list of up to 4", param="stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(400, "'seed' must be an integer", param="seed")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false", param="stream")
    mt_name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    return {
        "max_tokens": _number(body, mt_name, 128, 1, n_ctx, int),
        "temperature": _number(body, "temperature", 1.0, 0.0, 2.0),
        "top_p": _number(body, "top_p", 1.0, 1e-6, 1.0),
        "stop": stop, "seed": seed, "stream": stream,
    }


def _message_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):        # [{"type": "text", "text": ...}, ...]
        parts = []
        for p in content:
            if not (isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)):
                raise ApiError(400, "only text content parts are supported", param="messages")
            parts.append(p["text"])
        return "".join(parts)
    raise ApiError(400, "message content must be a string or a list of text parts", param="messages")


def parse_messages(body: dict) -> list[dict]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages")
    out = []
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer"):
            raise ApiError(400, "each message needs a role of system, user or assistant", param="messages")
        role = "system" if m["role"] == "developer" else m["role"]
        out.append({"role": role, "content": _message_text(m.get("content", ""))})
    return out


def parse_prompt(body: dict) -> str:
    p = body.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], str):
        p = p[0]
    if not isinstance(p, str):
        raise ApiError(400, "'prompt' must be a string (one prompt per request)", param="prompt")
    return p


# ------------------------------------------------------------------ generation with stop strings

def _first_stop(text: str, stops: list[str], since: int) -> int:
    """Index of the earliest stop string that ends after `since`, or -1."""
    hits = [i for s in stops if (i := text.find(s, max(0, since - len(s) + 1))) >= 0]
    return min(hits, default=-1)


def stream_text(engine: Engine, prompt_ids: list[int], params: dict) -> Iterator[tuple[str, str | None, int]]:
    """Yields (new text, None, completion tokens so far) pieces, then ("", finish_reason, n).

    Text is decoded from all generated ids each step (token pieces can split a
    UTF-8 character); a tail that could still become a stop string, or an
    incomplete character, is held back until it resolves."""
    gen = engine.generate(prompt_ids, params["max_tokens"], params["temperature"], params["top_p"],
                          params["seed"])
    ids: list[int] = []
    sent = 0
    hold = max((len(s) for s in params["stop"]), default=1) - 1
    finish, text = "length", ""
    try:
        for tok in gen:
            if tok in engine.eos_ids:
                finish = "stop"
                break
            ids.append(tok)
            text = engine.detokenize(ids)
            cut = _first_stop(text, params["stop"], sent)
            if cut >= 0:
                text, finish = text[:cut], "stop"
                break
            safe = len(text) - hold - (1 if text.endswith("\ufffd") else 0)
            if safe > sent:
                yield text[sent:safe], None, len(ids)
                sent = safe
    finally:
        gen.close()                  # stops the engine when the client went away
    if len(text) > sent:
        yield text[sent:], None, len(ids)
    yield "", finish, len(ids)


# ------------------------------------------------------------------ HTTP

class _Handler(BaseHTTPRequestHandler):
    server: "ApiServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):     # quiet by default; --verbose turns it on
        if self.server.verbose:
            super().log_message(fmt, *args)

    def _send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, e: ApiError) -> None:
        self._send_json(e.status, e.body())

    def do_GET(self):  # noqa: N802
        srv = self.server
        if self.path == "/health":
            return self._send_json(200, {"status": "ok", "model": srv.model_id,
                                         "backend": srv.engine.backend, "device": srv.engine.device})
        if self.path.rstrip("/") == "/v1/models":
            return self._send_json(200, {"object": "list", "data": [srv.model_card()]})
        if self.path.startswith("/v1/models/"):
            if self.path.split("/v1/models/", 1)[1] == srv.model_id:
                return self._send_json(200, srv.model_card())
            return self._error(ApiError(404, "model not found", code="model_not_found"))
        self._error(ApiError(404, f"no route GET {self.path}", code="not_found"))

    def _body(self) -> dict:
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise ApiError(400, "bad Content-Length")
        if n > MAX_BODY:
            raise ApiError(413, f"request body over {MAX_BODY} bytes")
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"malformed JSON: {e}")
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    def do_POST(self):  # noqa: N802
        srv = self.server
        try:
            if self.path not in ("/v1/completions", "/v1/chat/completions"):
                # read and drop the body so the connection stays in a sane state
                self.rfile.read(min(int(self.headers.get("Content-Length", "0") or 0), MAX_BODY))
                raise ApiError(404, f"no route POST {self.path}", code="not_found")
            body = self._body()
            model = body.get("model")
            if model is not None and model != srv.model_id:
                raise ApiError(404, f"model '{model}' is not served here; this server serves "
                                    f"'{srv.model_id}'", param="model", code="model_not_found")
            params = parse_sampling(body, srv.engine.n_ctx)
            chat = self.path == "/v1/chat/completions"
            try:
                ids = (srv.engine.render_chat(parse_messages(body)) if chat
                       else srv.engine.tokenize(parse_prompt(body)))
            except UserError as e:
                raise ApiError(400, str(e))
            if len(ids) + params["max_tokens"] > srv.engine.n_ctx:
                raise ApiError(400, f"prompt ({len(ids)} tokens) + max_tokens ({params['max_tokens']}) "
                                    f"exceeds the context of {srv.engine.n_ctx} tokens",
                               param="messages" if chat else "prompt", code="context_length_exceeded")
            if not srv.enter_queue():
                raise ApiError(503, "the server is busy (queue full); retry later",
                               type_="server_error", code="overloaded")
        except ApiError as e:
            return self._error(e)
        try:
            with srv.engine_lock:
                if params["stream"]:
                    self._stream(chat, ids, params)
                else:
                    self._complete(chat, ids, params)
        finally:
            srv.leave_queue()

    def _complete(self, chat: bool, ids: list[int], params: dict) -> None:
        srv = self.server
        text, finish, n = "", "length", 0
        for piece, fin, n in stream_text(srv.engine, ids, params):
            text += piece
            finish = fin or finish
        usage = {"prompt_tokens": len(ids), "completion_tokens": n, "total_tokens": len(ids) + n}
        rid, now = uuid.uuid4().hex[:24], int(time.time())
        if chat:
            body = {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": now,
                    "model": srv.model_id,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": finish, "logprobs": None}], "usage": usage}
        else:
            body = {"id": f"cmpl-{rid}", "object": "text_completion", "created": now,
                    "model": srv.model_id,
                    "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
                    "usage": usage}
        self._send_json(200, body)

    def _stream(self, chat: bool, ids: list[int], params: dict) -> None:
        srv = self.server
        rid, now = uuid.uuid4().hex[:24], int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def chunk(text: str, finish: str | None, first: bool = False) -> bytes:
            if chat:
                delta = {"role": "assistant", "content": text} if first else (
                    {"content": text} if text else {})
                choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                c = {"id": f"chatcmpl-{rid}", "object": obj, "created": now, "model": srv.model_id,
                     "choices": [choice]}
            else:
                c = {"id": f"cmpl-{rid}", "object": obj, "created": now, "model": srv.model_id,
                     "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}
            return f"data: {json.dumps(c, ensure_ascii=False)}\n\n".encode()

        gen = stream_text(srv.engine, ids, params)
        try:
            if chat:
                self.wfile.write(chunk("", None, first=True))
            for piece, fin, _ in gen:
                if piece or fin:
                    self.wfile.write(chunk(piece, fin))
                    self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            srv.disconnects += 1     # the client went away: stop generating
        finally:
            gen.close()


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 8000,
                 model_id: str | None = None, max_queue: int = 64, verbose: bool = False):
        super().__init__((host, port), _Handler)
        self.engine = engine
        self.model_id = model_id or engine.name
        self.engine_lock = threading.Lock()
        self.max_queue = max_queue
        self.verbose = verbose
        self.disconnects = 0
        self._waiting = 0
        self._count_lock = threading.Lock()
        self.created = int(time.time())

    def model_card(self) -> dict:
        return {"id": self.model_id, "object": "model", "created": self.created,
                "owned_by": "babel-edge", "backend": self.engine.backend}

    def enter_queue(self) -> bool:
        with self._count_lock:
            if self._waiting >= self.max_queue:
                return False
            self._waiting += 1
            return True

    def leave_queue(self) -> None:
        with self._count_lock:
            self._waiting -= 1

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"
