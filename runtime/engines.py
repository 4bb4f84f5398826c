"""Inference engines behind one interface, over three back ends.

    engine = open_engine("model.gguf")            # llama.cpp
    engine = open_engine("export-onnx/")          # onnxruntime (a babel-edge ONNX export)
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

import os
import subprocess
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from babel_edge.errors import UserError

BACKENDS = ("torch", "llama.cpp", "onnxruntime")


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


def check_device(backend: str, device: str) -> None:
    """Refuse a device the back end cannot use here (never fall back silently)."""
    if device not in ("cpu", "cuda"):
        raise DeviceError(f"unknown device '{device}'; use cpu or cuda")
    if device == "cpu":
        return
    if backend == "torch" and not _torch_cuda():
        raise DeviceError("--device cuda: PyTorch sees no CUDA GPU here (CPU build or no GPU); "
                          "use --device cpu")
    if backend == "onnxruntime" and "CUDAExecutionProvider" not in _ort_providers():
        raise DeviceError("--device cuda: onnxruntime has no CUDAExecutionProvider; install "
                          "babel-edge[gpu] (onnxruntime-gpu) on a machine with a GPU, or use --device cpu")
    if backend == "llama.cpp" and not _llama_gpu():
        raise DeviceError("--device cuda: this llama-cpp-python build has no GPU offload; rebuild it "
                          "with CMAKE_ARGS=-DGGML_CUDA=on, or use --device cpu")


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
    return "torch"


def open_engine(path: str | Path | None, backend: str | None = None, device: str = "cpu",
                n_ctx: int = 2048, threads: int | None = None) -> "Engine":
    backend = backend or detect_backend(path)
    if backend not in BACKENDS:
        raise UserError(f"unknown engine '{backend}'; use one of {', '.join(BACKENDS)}")
    check_device(backend, device)
    if backend == "llama.cpp":
        from babel_edge.models import gguf_for
        return LlamaCppEngine(gguf_for(str(path) if path else None), n_ctx=n_ctx, n_threads=threads,
                              device=device)
    if backend == "onnxruntime":
        if path is None or not (Path(path) / "model.onnx").exists():
            raise UserError(f"onnxruntime runs a babel-edge ONNX export (a directory with "
                            f"model.onnx); '{path}' is not one — run babel-edge export --format onnx")
        return OnnxEngine(path, device=device, n_ctx=n_ctx, threads=threads)
    return TorchEngine(path, device=device, n_ctx=n_ctx)


# ------------------------------------------------------------------ shared pieces

def sample(logits: np.ndarray, temperature: float, top_p: float,
           rng: np.random.Generator) -> int:
    """Greedy when temperature == 0; else temperature + nucleus (top-p) sampling."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p)
        keep = np.cumsum(p[order]) - p[order] < top_p      # always keeps the top token
        mask = np.zeros_like(p, dtype=bool)
        mask[order[keep]] = True
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    return int(rng.choice(len(p), p=p))


def _nll_rows(logits: np.ndarray, ids: Sequence[int]) -> float:
    lg = np.asarray(logits[: len(ids) - 1], dtype=np.float64)
    m = lg.max(axis=1, keepdims=True)
    logz = m[:, 0] + np.log(np.exp(lg - m).sum(axis=1))
    return float((logz - lg[np.arange(len(ids) - 1), list(ids[1:])]).sum())


def render_template(template: str, messages: list[dict], bos_token: str = "",
                    eos_token: str = "", add_generation_prompt: bool = True) -> str:
    """Render a Hugging Face-style Jinja chat template in a sandbox."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(messages=messages, bos_token=bos_token,
                                                eos_token=eos_token,
                                                add_generation_prompt=add_generation_prompt)
    except TemplateError as e:
        raise UserError(f"the chat template refused these messages: {e}") from e


class Engine:
    """The interface every back end implements (see the module docstring)."""
    backend: str = "?"
    name: str = "?"
    device: str = "cpu"
    n_ctx: int = 2048
    eos_ids: set[int] = set()
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""

    def tokenize(self, text: str, special: bool = True, add_bos: bool = True) -> list[int]:
        raise NotImplementedError

    def detokenize(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def score(self, batch: Sequence[Sequence[int]]) -> list[float]:
        raise NotImplementedError

    def generate(self, ids: Sequence[int], max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None,
                 stop_at_eos: bool = True) -> Iterator[int]:
        """Stream of new token ids (EOS included when reached). stop_at_eos=False decodes
        exactly max_new_tokens, as benchmarks need."""
        raise NotImplementedError

    def prefill(self, ids: Sequence[int]) -> None:
        """Process a prompt (the timed part of a prefill benchmark)."""
        raise NotImplementedError

    def weight_bytes(self) -> int:
        """Bytes of weights one decoded token reads."""
        raise NotImplementedError

    def gpu_memory(self) -> dict:
        """GPU memory this process holds, from nvidia-smi (empty when there is none)."""
        try:
            r = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                                "--format=csv,noheader,nounits"], capture_output=True, text=True,
                               timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        for line in r.stdout.splitlines():
            pid, _, mb = line.partition(",")
            if pid.strip() == str(os.getpid()):
                return {"gpu_memory_mb": float(mb)}
        return {}

    def render_chat(self, messages: list[dict]) -> list[int]:
        """Prompt ids for chat messages through the model's own template."""
        if not self.chat_template:
            raise UserError(f"model '{self.name}' has no chat template; use /v1/completions")
        text = render_template(self.chat_template, messages, self.bos_token, self.eos_token)
        # templates write BOS themselves; don't add a second one
        add_bos = not (self.bos_token and text.startswith(self.bos_token))
        return self.tokenize(text, special=True, add_bos=add_bos)

    def close(self) -> None:
        pass


class _StepEngine(Engine):
    """Engines driven by a `step(new_ids, state) -> (logits [T, V], state)` with a KV cache."""

    def _step(self, ids: Sequence[int], state):
        raise NotImplementedError

    def generate(self, ids, max_new_tokens, temperature=0.0, top_p=1.0, seed=None,
                 stop_at_eos=True):
        rng = np.random.default_rng(seed)
        logits, state = self._step(list(ids), None)
        for i in range(max_new_tokens):
            tok = sample(logits[-1], temperature, top_p, rng)
            yield tok
            if (stop_at_eos and tok in self.eos_ids) or i == max_new_tokens - 1:
                return
            logits, state = self._step([tok], state)

    def prefill(self, ids):
        self._step(list(ids), None)

    def score(self, batch):
        return [_nll_rows(self._step(list(ids), None)[0], ids) for ids in batch]


class _HFTokenizerMixin:
    tokenizer = None

    def _init_tokenizer(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.chat_template = getattr(tokenizer, "chat_template", None)
        self.bos_token = tokenizer.bos_token or ""
        self.eos_token = tokenizer.eos_token or ""
        eos = {tokenizer.eos_token_id}
        # chat models end a turn with their own token (Gemma: <end_of_turn>)
        for t in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>"):
            tid = tokenizer.convert_tokens_to_ids(t)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id and t in tokenizer.get_vocab():
                eos.add(tid)
        self.eos_ids = {e for e in eos if e is not None}

    def tokenize(self, text, special=True, add_bos=True):
        ids = self.tokenizer(text, add_special_tokens=add_bos,
                             split_special_tokens=not special)["input_ids"]
        return list(ids)

    def detokenize(self, ids):
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


# ------------------------------------------------------------------ PyTorch

class TorchEngine(_HFTokenizerMixin, _StepEngine):
    backend = "torch"

    def __init__(self, spec: str | Path | None, device: str = "cpu", n_ctx: int = 2048):
        from babel_edge.models import load_model

        self.lm = load_model(str(spec) if spec else None, device=device)
        self.model = self.lm.model
        self.name, self.device, self.n_ctx = self.lm.path.name, device, n_ctx
        self._init_tokenizer(self.lm.tokenizer)

    def _step(self, ids, state):
        import torch
        from transformers import DynamicCache

        with torch.inference_mode():
            cache = state if state is not None else DynamicCache()
            out = self.model(input_ids=torch.tensor([ids], device=self.device),
                             past_key_values=cache, use_cache=True)
            return out.logits[0].float().cpu().numpy(), out.past_key_values

    def score(self, batch):
        from babel_edge.evaluate import torch_scorer
        return torch_scorer(self.model, pad_id=self.tokenizer.pad_token_id or 0)(batch)

    def weight_bytes(self) -> int:
        # every parameter is read once per decoded token (the tied head counted once)
        return sum(p.numel() * p.element_size() for p in self.model.parameters())


# ------------------------------------------------------------------ onnxruntime

class OnnxEngine(_HFTokenizerMixin, _StepEngine):
    backend = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "cpu", n_ctx: int = 2048,
                 threads: int | None = None):
        from transformers import AutoTokenizer

        from babel_edge.exporters.onnx import OnnxCausalLM

        self.path = Path(path)
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda"
                     else ["CPUExecutionProvider"])
        self.runner = OnnxCausalLM(self.path, providers=providers, threads=threads)
        self.name, self.device, self.n_ctx = self.path.name, device, n_ctx
        self._init_tokenizer(AutoTokenizer.from_pretrained(str(self.path), fix_mistral_regex=False))

    def _step(self, ids, state):
        logits, cache = self.runner.forward(np.array([ids], dtype=np.int64), state)
        return logits[0], cache

    def weight_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.glob("model.onnx*"))


# ------------------------------------------------------------------ llama.cpp

class LlamaCppEngine(Engine):
    """A GGUF file in stock llama.cpp (llama-cpp-python)."""
    backend = "llama.cpp"

    def __init__(self, path: str | Path, n_ctx: int = 2048, n_threads: int | None = None,
                 device: str = "cpu"):
        from llama_cpp import Llama

        self.path = Path(path)
        self.name, self.device, self.n_ctx = self.path.name, device, n_ctx
        # logits_all stays off: with it on, every prefill computes the 262k-wide head for every
        # position, which would make generation and prefill timings unfair. `score` turns the
        # per-position logits on for its own evaluations only.
        self.n_batch = min(n_ctx, 512)
        self.llm = Llama(model_path=str(self.path), n_ctx=n_ctx, logits_all=False,
                         n_threads=n_threads or os.cpu_count(), n_batch=self.n_batch,
                         n_gpu_layers=-1 if device == "cuda" else 0, verbose=False)
        md = self.llm.metadata
        self._add_bos = md.get("tokenizer.ggml.add_bos_token", "true") == "true"
        self.chat_template = md.get("tokenizer.chat_template")
        if not self.chat_template:
            from babel_edge.models.gguf_tokenizer import default_chat_template
            turn = self.llm.tokenize(b"<start_of_turn>", add_bos=False, special=True)
            self.chat_template = default_chat_template(
                md.get("general.architecture", ""), ["<start_of_turn>"] if len(turn) == 1 else [])
        self.bos_token = self._piece(self.llm.token_bos())
        self.eos_token = self._piece(self.llm.token_eos())
        self.eos_ids = {self.llm.token_eos()}
        eot = md.get("tokenizer.ggml.eot_token_id")
        if eot is not None:
            self.eos_ids.add(int(eot))
        for t in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>"):
            ids = self.llm.tokenize(t.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                self.eos_ids.add(ids[0])

    def _piece(self, tid: int) -> str:
        return self.llm.detokenize([tid], special=True).decode("utf-8", "replace") if tid >= 0 else ""

    def tokenize(self, text, special=True, add_bos=True):
        """Token ids, BOS when the GGUF asks for it. special=True parses control-token text
        such as "<start_of_turn>" into the control token, as HF tokenizers do by default."""
        return self.llm.tokenize(text.encode(), add_bos=add_bos and self._add_bos, special=special)

    def detokenize(self, ids):
        return self.llm.detokenize(list(ids)).decode("utf-8", "replace")

    def score(self, batch):
        """Summed NLL per sequence; sequences are cut at n_batch (512) tokens, the rows
        llama-cpp-python keeps logits for when logits_all is off at load time."""
        out = []
        self.llm._logits_all = True      # per-position logits for these evaluations only
        try:
            for ids in batch:
                ids = list(ids)[: self.n_batch]
                self.llm.reset()
                self.llm.eval(ids)
                out.append(_nll_rows(np.asarray(self.llm.scores[: len(ids) - 1]), ids))
        finally:
            self.llm._logits_all = False
            self.llm.reset()
        return out

    def generate(self, ids, max_new_tokens, temperature=0.0, top_p=1.0, seed=None,
                 stop_at_eos=True):
        if seed is not None:
            self.llm.set_seed(seed)
        n = 0
        # top_k=0 and min_p=0 leave the distribution to temperature and top-p alone
        for tok in self.llm.generate(list(ids), temp=temperature, top_p=top_p, top_k=0,
                                     min_p=0.0, repeat_penalty=1.0, reset=True):
            yield tok
            n += 1
            if (stop_at_eos and tok in self.eos_ids) or n >= max_new_tokens:
                return

    def prefill(self, ids):
        self.llm.reset()
        self.llm.eval(list(ids))

    def weight_bytes(self) -> int:
        from gguf import GGUFReader

        return int(sum(t.n_bytes for t in GGUFReader(str(self.path)).tensors))

    def close(self) -> None:
        self.llm.close()
