"""Inference engines behind one interface, over four back ends (one module each).

    engine = open_engine("model.gguf")            # llama.cpp
    engine = open_engine("export-onnx/")          # onnxruntime (a babel-edge ONNX export)
    engine = open_engine("export-onnx/", "onnxruntime-genai")   # the same export in genai
    engine = open_engine("pruned-dir/")           # PyTorch, the reference
    ids = engine.tokenize("Hallo Welt")
    for tok in engine.generate(ids, max_new_tokens=32): ...
    engine.score([ids])                           # summed NLL per sequence (nats)

Every engine offers: `tokenize`, `detokenize`, `generate` (a stream of token
ids; closing the iterator stops the work), `score`, `render_chat` (the model's
own chat template), `eos_ids`, `n_ctx`, `weight_bytes` (bytes of weights a
decoded token reads, for the benchmark's ideal speedup). Device choice is
`cpu` or `cuda`; asking for a GPU that the back end cannot use fails with
`DeviceError` (a UserError: one line, exit 2) instead of silently running on
the CPU.
"""
from __future__ import annotations

from pathlib import Path

from babel_edge.errors import UserError

from .base import END_OF_TURN, Engine, render_template, sample

__all__ = ["BACKENDS", "END_OF_TURN", "DeviceError", "Engine", "TorchEngine", "OnnxEngine",
           "GenaiEngine", "LlamaCppEngine", "artefact_targets", "backends_for", "check_device",
           "detect_backend", "open_engine", "render_template", "sample"]

BACKENDS = ("torch", "llama.cpp", "onnxruntime", "onnxruntime-genai")


class DeviceError(UserError):
    pass


# ------------------------------------------------------------------ device selection

def _torch_cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def _ort_providers() -> list[str]:
    import onnxruntime as ort
    return ort.get_available_providers()


def _llama_gpu() -> bool:
    import llama_cpp
    return bool(llama_cpp.llama_supports_gpu_offload())


def _genai_cuda() -> bool:
    import onnxruntime_genai as og
    return bool(og.is_cuda_available())


def check_device(backend: str, device: str) -> None:
    """Refuse a device the back end cannot use here (never fall back silently)."""
    if device not in ("cpu", "cuda"):
        raise DeviceError(f"unknown device '{device}'; use cpu or cuda")
    if device == "cpu":
        return
    if backend == "torch" and not _torch_cuda():
        raise DeviceError("--device cuda: PyTorch sees no CUDA GPU here (CPU build or no GPU); "
                          "use --device cpu")
    if backend in ("onnxruntime", "onnxruntime-genai") and "CUDAExecutionProvider" not in _ort_providers():
        raise DeviceError(f"--device cuda: onnxruntime has no CUDAExecutionProvider; install "
                          f"babel-edge[gpu] (onnxruntime-gpu"
                          f"{', onnxruntime-genai-cuda' if backend == 'onnxruntime-genai' else ''}) "
                          f"on a machine with a GPU, or use --device cpu")
    if backend == "llama.cpp" and not _llama_gpu():
        raise DeviceError("--device cuda: this llama-cpp-python build has no GPU offload; rebuild it "
                          "with CMAKE_ARGS=-DGGML_CUDA=on, or use --device cpu")


def backends_for(path: str | Path | None) -> list[str]:
    """Every back end that runs this artefact, the default (detect_backend) first: a
    babel-edge ONNX export runs in onnxruntime and, with its genai_config.json, in
    onnxruntime-genai."""
    from babel_edge.exporters.onnx.genai import GENAI_CONFIG

    first = detect_backend(path)
    if first == "onnxruntime" and (Path(path) / GENAI_CONFIG).exists():
        return [first, "onnxruntime-genai"]
    return [first]


def detect_backend(path: str | Path | None) -> str:
    """Which back end runs this artefact: .gguf → llama.cpp, dir with model.onnx → onnxruntime,
    anything else `load_model` accepts → torch."""
    if path is None:
        return "torch"
    p = Path(path)
    if p.is_file() and p.suffix == ".gguf":
        return "llama.cpp"
    if p.is_dir() and (p / "model.onnx").exists():
        return "onnxruntime"
    if p.is_file():
        raise UserError(f"'{p}' is a file but not a .gguf; give a .gguf file, an ONNX export "
                        f"directory (with model.onnx) or a model directory")
    return "torch"


def open_engine(path: str | Path | None, backend: str | None = None, device: str = "cpu",
                n_ctx: int = 2048, threads: int | None = None) -> "Engine":
    backend = backend or detect_backend(path)
    if backend not in BACKENDS:
        raise UserError(f"unknown engine '{backend}'; use one of {', '.join(BACKENDS)}")
    check_device(backend, device)
    if backend == "llama.cpp":
        from babel_edge.models import gguf_for

        from .llamacpp import LlamaCppEngine
        return LlamaCppEngine(gguf_for(str(path) if path else None), n_ctx=n_ctx, n_threads=threads,
                              device=device)
    if backend == "onnxruntime":
        if path is None or not (Path(path) / "model.onnx").exists():
            raise UserError(f"onnxruntime runs a babel-edge ONNX export (a directory with "
                            f"model.onnx); '{path}' is not one — run babel-edge export --format onnx")
        from .ort import OnnxEngine
        return OnnxEngine(path, device=device, n_ctx=n_ctx, threads=threads)
    if backend == "onnxruntime-genai":
        from babel_edge.exporters.onnx.genai import GENAI_CONFIG

        if path is None or not (Path(path) / GENAI_CONFIG).exists():
            raise UserError(f"onnxruntime-genai runs a babel-edge ONNX export with {GENAI_CONFIG}; "
                            f"'{path}' has none — export it (again) with babel-edge export --format onnx")
        if device == "cuda" and not _genai_cuda():
            raise DeviceError("--device cuda: this onnxruntime-genai build has no CUDA support; "
                              "install onnxruntime-genai-cuda, or use --device cpu")
        from .genai import GenaiEngine
        return GenaiEngine(path, device=device, n_ctx=n_ctx, threads=threads)
    from .pytorch import TorchEngine
    return TorchEngine(path, device=device, n_ctx=n_ctx, threads=threads)


def artefact_targets(engine: Engine) -> list[str]:
    """The target languages an artefact was pruned for ([] for a dense one): from the pruning
    plan of a model directory or an ONNX export (which carries it), from the babel-edge
    metadata of a GGUF file."""
    from babel_edge.prune.plan import PruningPlan

    p = Path(engine.path)
    if p.is_file() and p.suffix == ".gguf":
        from gguf import GGUFReader

        f = GGUFReader(str(p)).fields.get("babel_edge.pruning.target_langs")
        return [str(bytes(f.parts[i]), "utf-8") for i in f.data] if f is not None else []
    plan = PruningPlan.read(p)
    return list(plan.target_langs) if plan else []


def __getattr__(name):
    # the engine classes import their back end's library only when asked for
    import importlib

    where = {"TorchEngine": "pytorch", "OnnxEngine": "ort", "GenaiEngine": "genai",
             "LlamaCppEngine": "llamacpp"}
    if name in where:
        return getattr(importlib.import_module(f"{__name__}.{where[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
