"""The engine interface every back end implements, and what they share: sampling,
chat templates, the step-driven generation loop, the Hugging Face tokenizer side."""
from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from babel_edge.errors import UserError

# Tokens that end a chat turn in the families we run (Gemma, Qwen/ChatML, Llama 3): a
# generation stops at them as at EOS.
END_OF_TURN = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>")

# Chat formats a server can be told to use (`--chat-template NAME`) for a model that has no
# template of its own. Gemma's is the one babel-edge's GGUF conversion writes into the
# tokenizer of a template-less Gemma GGUF (models/gguf_tokenizer.py), kept there so the
# conversion can use it without importing the runtime.
CHATML_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim"
    " + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)


def named_chat_templates() -> dict[str, str]:
    """{name: Jinja template} of the chat formats `--chat-template NAME` accepts."""
    from babel_edge.models.gguf_tokenizer import GEMMA_CHAT_TEMPLATE

    return {"gemma": GEMMA_CHAT_TEMPLATE, "chatml": CHATML_CHAT_TEMPLATE,
            "llama3": LLAMA3_CHAT_TEMPLATE}


def load_chat_template(spec: str) -> str:
    """The template `--chat-template` names: one of `named_chat_templates()`, or a file
    holding a Hugging Face-style Jinja template."""
    named = named_chat_templates()
    if spec in named:
        return named[spec]
    p = Path(spec)
    if not p.is_file():
        raise UserError(f"chat template '{spec}' is neither a file nor one of "
                        f"{', '.join(named)}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the chat template {p}: {e}") from e
    if not text.strip():
        raise UserError(f"the chat template {p} is empty")
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"]).parse(text)
    except TemplateSyntaxError as e:
        raise UserError(f"the chat template {p} is not valid Jinja (line {e.lineno}: "
                        f"{e.message})") from e
    return text


def own_chat_template(template) -> str | None:
    """The chat template a model really ships with, or None for a base model.

    A template equal to babel-edge's Gemma fallback is not the model's own: the GGUF
    conversion writes it into the tokenizer of a Gemma GGUF that carries none (the embedded
    Gemma 3 270M is such a base model), and exports copy it along. Both engines read a
    model's template through here, so they agree on which models can chat."""
    from babel_edge.models.gguf_tokenizer import GEMMA_CHAT_TEMPLATE

    if not isinstance(template, str) or not template.strip():
        return None
    return None if template.strip() == GEMMA_CHAT_TEMPLATE.strip() else template


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
        keep = np.cumsum(p[order]) - p[order] < top_p
        keep[0] = True                                      # top_p == 0 keeps the top token
        mask = np.zeros_like(p, dtype=bool)
        mask[order[keep]] = True
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    return int(rng.choice(len(p), p=p))


def _nll_rows(logits: np.ndarray, ids: Sequence[int]) -> float:
    # float32 exp over [n, vocab] (a 262k vocabulary makes a float64 copy the slow part),
    # sums and the result in float64
    lg = np.asarray(logits[: len(ids) - 1], dtype=np.float32)
    m = lg.max(axis=1, keepdims=True)
    logz = m[:, 0].astype(np.float64) + np.log(np.exp(lg - m).sum(axis=1, dtype=np.float64))
    return float((logz - lg[np.arange(len(ids) - 1), list(ids[1:])].astype(np.float64)).sum())


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
    chat_template: str | None = None    # the model's own (own_chat_template); None: a base model
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

    def describe(self) -> dict:
        """What reports say about the artefact: its file bytes (and parameters where known)."""
        p = Path(self.path)
        size = p.stat().st_size if p.is_file() else sum(
            f.stat().st_size for f in p.glob("*") if f.is_file() and f.suffix in (
                ".safetensors", ".onnx", ".onnx_data"))
        return {"file_bytes": size}

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

    def render_chat(self, messages: list[dict], template: str | None = None) -> list[int]:
        """Prompt ids for chat messages through `template`, by default the model's own."""
        template = template or self.chat_template
        if not template:
            raise UserError(f"model '{self.name}' is a base model without a chat template of "
                            f"its own; use completions, or give a chat template")
        text = render_template(template, messages, self.bos_token, self.eos_token)
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
    """Tokenizing through a Hugging Face fast tokenizer. Calls hold a lock: the Rust
    tokenizer is not thread-safe ("Already borrowed" when a server thread encodes while the
    generation thread decodes)."""
    tokenizer = None

    def _init_tokenizer(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._tokenizer_lock = threading.Lock()
        self.chat_template = own_chat_template(getattr(tokenizer, "chat_template", None))
        self.bos_token = tokenizer.bos_token or ""
        self.eos_token = tokenizer.eos_token or ""
        eos = {tokenizer.eos_token_id}
        # chat models end a turn with their own token (Gemma: <end_of_turn>)
        for t in END_OF_TURN:
            tid = tokenizer.convert_tokens_to_ids(t)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id and t in tokenizer.get_vocab():
                eos.add(tid)
        self.eos_ids = {e for e in eos if e is not None}

    def tokenize(self, text, special=True, add_bos=True):
        with self._tokenizer_lock:
            ids = self.tokenizer(text, add_special_tokens=add_bos,
                                 split_special_tokens=not special)["input_ids"]
        return list(ids)

    def detokenize(self, ids):
        with self._tokenizer_lock:
            return self.tokenizer.decode(list(ids), skip_special_tokens=True)
