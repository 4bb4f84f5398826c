"""`babel-edge serve`: an OpenAI-compatible server over llama.cpp, onnxruntime or PyTorch."""
from __future__ import annotations

import os
import sys
from pathlib import Path

API_KEY_ENV = "BABEL_EDGE_API_KEY"      # --api-key's default


def add_engine_args(s, what: str) -> None:
    """The engine options `serve` (and other runtime verbs) share."""
    from ..runtime.engines import BACKENDS

    s.add_argument("model", nargs="?", default=None,
                   help=f"{what}: a .gguf file (llama.cpp), an ONNX export directory (onnxruntime), "
                        "or a model directory / embedded model name (PyTorch); default: the embedded model")
    s.add_argument("--engine", choices=BACKENDS, help="back end (default: chosen from what MODEL is)")
    s.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cpu (default) or cuda; cuda fails clearly when the back end has no GPU here")
    s.add_argument("--n-ctx", type=int, default=2048, help="context length in tokens (default 2048)")
    s.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")


def register(sub) -> None:
    s = sub.add_parser(
        "serve", help="OpenAI-compatible HTTP server over llama.cpp, onnxruntime or PyTorch",
        description="Serve one model over an OpenAI-compatible API (FastAPI + uvicorn): "
                    "/v1/models, /v1/completions, /v1/chat/completions (streaming with server-sent "
                    "events), /health, /metrics (Prometheus), /docs. Requests are answered one at a "
                    "time in arrival order; a request whose client disconnects stops at the next "
                    "token. Ctrl-C or SIGTERM stops gracefully.")
    add_engine_args(s, "what to serve")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes "
                        "the server to the network, so set an API key)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    s.add_argument("--model-id", help="the model name clients send (default: the file or directory name)")
    s.add_argument("--api-key", default=None, metavar="KEY",
                   help=f"require 'Authorization: Bearer KEY' on /v1 (401 otherwise); default: the "
                        f"{API_KEY_ENV} environment variable (which, unlike this option, other users "
                        f"of the machine cannot read in the process list); none: no key")
    s.add_argument("--chat-template", metavar="NAME|FILE",
                   help="chat format for /v1/chat/completions: gemma, chatml, llama3, or a Jinja "
                        "template file (Hugging Face style). Default: the model's own; a base model "
                        "without one answers chat requests with 400")
    s.add_argument("--max-queue", type=int, default=64,
                   help="requests allowed to wait for the engine (default 64); more get 503 with "
                        "Retry-After")
    s.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="on Ctrl-C/SIGTERM, how long requests in flight may still run before they "
                        "are cancelled (default 10)")
    s.add_argument("--verbose", action="store_true", help="log every request")
    s.set_defaults(func=run)


def _options(args):
    """ServerOptions from the arguments; UserError (one line, exit 2) on bad values."""
    from ..errors import UserError
    from ..runtime.engines.base import load_chat_template, named_chat_templates
    from ..runtime.server import ServerOptions

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: use 0..65535 (0 picks a free port)")
    if args.max_queue < 1:
        raise UserError(f"--max-queue {args.max_queue}: at least 1 request must be able to wait")
    if args.shutdown_timeout < 0:
        raise UserError(f"--shutdown-timeout {args.shutdown_timeout:g}: must be 0 or more seconds")
    if args.n_ctx < 1:
        raise UserError(f"--n-ctx {args.n_ctx}: must be at least 1")
    key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    if key is not None and not key.strip():
        raise UserError(f"the API key ({'--api-key' if args.api_key is not None else API_KEY_ENV}) "
                        f"is empty; give a key or leave it unset")
    template, name = None, None
    if args.chat_template:
        template = load_chat_template(args.chat_template)
        # /v1/models shows the name; of a file only its name, not where it lives
        name = (args.chat_template if args.chat_template in named_chat_templates()
                else Path(args.chat_template).name)
    return ServerOptions(model_id=args.model_id, api_key=key, max_queue=args.max_queue,
                         chat_template=template, chat_template_name=name)


def run(args) -> int:
    from ..progress import status
    from ..runtime.engines import open_engine
    from ..runtime.server import bind, create_app, is_loopback, serve, url_of

    options = _options(args)
    sock = bind(args.host, args.port)          # fails fast, before the model loads
    try:
        with status(f"loading {args.model or 'the embedded model'}"):
            engine = open_engine(args.model, args.engine, args.device, args.n_ctx, args.threads)
    except BaseException:
        sock.close()
        raise
    if engine.backend == "torch" and args.threads:
        # open_engine hands --threads to the other back ends only; without this a loaded
        # machine runs the tiny ops of small models on contended threads, many times slower
        import torch
        torch.set_num_threads(args.threads)
    try:
        app = create_app(engine, options)
    except BaseException:
        sock.close()
        engine.close()
        raise
    svc = app.state.service
    if not options.api_key and not is_loopback(args.host):
        print(f"warning: listening on {args.host} without an API key: anyone who can reach port "
              f"{sock.getsockname()[1]} can use this server; set --api-key or {API_KEY_ENV}",
              file=sys.stderr)
    chat = {"model": "the model's own template", None: "not available (a base model without a "
            "chat template; see --chat-template)"}.get(svc.chat_source, f"--chat-template {svc.chat_source}")
    url = url_of(sock)

    def ready() -> None:
        print(f"serving '{svc.model_id}' ({engine.backend}, {engine.device}) at {url}/v1 — chat: "
              f"{chat}; API key: {'required' if options.api_key else 'none'}; docs at {url}/docs; "
              f"Ctrl-C stops", file=sys.stderr, flush=True)

    serve(app, sock, shutdown_timeout=args.shutdown_timeout, verbose=args.verbose, on_ready=ready)
    return 0
