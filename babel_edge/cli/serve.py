"""`babel-edge serve`: an OpenAI-compatible server over llama.cpp, onnxruntime or PyTorch."""
from __future__ import annotations

import sys


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
        description="Serve one model over an OpenAI-compatible API: /v1/models, /v1/completions, "
                    "/v1/chat/completions (streaming with server-sent events), /health. Requests "
                    "are queued and answered one at a time.")
    add_engine_args(s, "what to serve")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    s.add_argument("--model-id", help="the model name clients send (default: the file or directory name)")
    s.add_argument("--max-queue", type=int, default=64, help="requests allowed to wait (default 64; more get 503)")
    s.add_argument("--verbose", action="store_true", help="log every request")
    s.set_defaults(func=run)


def run(args) -> int:
    from ..errors import UserError
    from ..progress import status
    from ..runtime.engines import open_engine
    from ..runtime.server import ApiServer

    with status(f"loading {args.model or 'the embedded model'}"):
        engine = open_engine(args.model, args.engine, args.device, args.n_ctx, args.threads)
    try:
        server = ApiServer(engine, args.host, args.port, model_id=args.model_id,
                           max_queue=args.max_queue, verbose=args.verbose)
    except OSError as e:
        engine.close()
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror}; choose another --port")
    print(f"serving '{server.model_id}' ({engine.backend}, {engine.device}) at {server.url}/v1 "
          f"— Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()
    return 0
