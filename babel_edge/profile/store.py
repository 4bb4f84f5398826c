"""Profile files: one safetensors file with the JSON header as metadata (written atomically),
and per-language partial files that let an interrupted run resume."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..errors import UserError
from ..experts import ExpertMap
from ..io import atomic_file
from .data import _FIELDS, FORMAT, FORMAT_VERSION, HEADER_KEY, LangStats, Profile

def _atomic_save(tensors: dict, metadata: dict, path: Path) -> None:
    from safetensors.torch import save_file

    with atomic_file(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={HEADER_KEY: json.dumps(metadata, ensure_ascii=False)})


def _read(path: Path) -> tuple[dict, dict]:
    """(header, tensors) of a babel-edge safetensors file; UserError if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            header = json.loads(meta[HEADER_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise UserError(f"profile file '{path}' does not exist; create it with 'babel-edge profile'") from None
    except (KeyError, json.JSONDecodeError) as e:
        raise UserError(f"'{path}' is not a babel-edge profile (no readable header); "
                        f"recreate it with 'babel-edge profile'") from e
    except Exception as e:  # safetensors raises its own errors on truncated/garbled files
        raise UserError(f"'{path}' is corrupt or not a safetensors file ({type(e).__name__}); "
                        f"recreate it with 'babel-edge profile'") from e
    return header, tensors


def save_profile(profile: Profile, path: str | Path) -> Path:
    """Write the profile atomically: safetensors tensors + the JSON header as metadata."""
    path = Path(path)
    tensors = {"tokens": profile.tokens}
    tensors.update(profile.expert_map.tensors("experts."))
    tensors.update(profile.baseline_map.tensors("baseline_experts."))
    for name in _FIELDS:
        for i, t in enumerate(getattr(profile, name)):
            tensors[f"{name}.{i}"] = t
    _atomic_save(tensors, dict(profile.header, langs=profile.langs), path)
    profile.path = path
    return path


def load_profile(path: str | Path, model_fingerprint: str | None = None) -> Profile:
    """Read a profile; with `model_fingerprint`, refuse one measured on another model."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"'{path}' is a directory; give the profile file written by 'babel-edge profile'")
    header, t = _read(path)
    if header.get("format") != FORMAT:
        raise UserError(f"'{path}' is not a babel-edge profile; create one with 'babel-edge profile'")
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"'{path}' was written by a newer babel-edge "
                        f"({header.get('babel_edge_version')}); upgrade babel-edge to read it")
    try:
        langs = list(header["langs"])
        L = header["model"]["n_layers"]
        emap = ExpertMap.from_tensors(header["experts"], t, "experts.")
        base = ExpertMap.from_tensors(header["baseline_experts"], t, "baseline_experts.")
        fields = [[t[f"{name}.{i}"] for i in range(L)] for name in _FIELDS]
        prof = Profile(header, langs, t["tokens"], emap, base, *fields, path=path)
        _check_shapes(prof)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise UserError(f"'{path}' is corrupt or incomplete ({e}); recreate it with "
                        f"'babel-edge profile'") from e
    if model_fingerprint is not None and model_fingerprint != prof.fingerprint:
        m = header["model"]
        raise UserError(f"profile '{path.name}' was measured on another model ({m.get('name')}, "
                        f"fingerprint {m.get('fingerprint')}), not this one (fingerprint "
                        f"{model_fingerprint}); profile this model with 'babel-edge profile --model ...'")
    return prof


def _check_shapes(p: Profile) -> None:
    n = len(p.langs)
    if p.tokens.shape != (n,):
        raise ValueError("token counts do not match the language list")
    for i in range(p.n_layers):
        e, f = p.expert_map.n_experts(i), p.expert_map.widths()[i]
        for name, t, width in (("expert_count", p.expert_count[i], e),
                               ("neuron_count", p.neuron_count[i], f),
                               ("neuron_mass", p.neuron_mass[i], f),
                               ("baseline_count", p.baseline_count[i], p.baseline_map.n_experts(i))):
            if t.shape != (n, width):
                raise ValueError(f"{name}.{i} has shape {tuple(t.shape)}, expected {(n, width)}")


# ---- per-language partial files (resume)

def _partial_path(part: Path, lang: str) -> Path:
    return part / f"{lang}.safetensors"


def _save_partial(part: Path, lang: str, run_key: dict, seq_digest: str, s: LangStats) -> None:
    tensors = {f"{name}.{i}": t for name in _FIELDS for i, t in enumerate(getattr(s, name))}
    tensors["tokens"] = torch.tensor([s.tokens], dtype=torch.long)
    _atomic_save(tensors, {"run_key": run_key, "seq_digest": seq_digest, "lang": lang},
                 _partial_path(part, lang))


def _load_partial(part: Path, lang: str, run_key: dict, seq_digest: str) -> LangStats | None:
    path = _partial_path(part, lang)
    if not path.exists():
        return None
    try:
        header, t = _read(path)
    except UserError:
        return None                        # a damaged partial is simply recomputed
    if header.get("run_key") != run_key or header.get("seq_digest") != seq_digest:
        return None
    n = sum(1 for k in t if k.startswith("expert_count."))
    return LangStats(int(t["tokens"][0]), *[[t[f"{name}.{i}"] for i in range(n)] for name in _FIELDS])


def partial_dir_for(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


def remove_partial(part: Path) -> None:
    shutil.rmtree(part, ignore_errors=True)
