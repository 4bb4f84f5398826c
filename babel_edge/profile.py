"""Per-language expert activation profile: which experts fire for which language.

What "activated" means (this text also goes into every profile's header and report):

  a       the FFN intermediate activation of a token, the input of the down
          projection: a = act(gate(x)) * up(x), one value per neuron  [F]
  mass    an expert's activation mass on a token: sum of |a| over its neurons
  active  an expert is activated on a token when its mass is among the top-k
          experts of its layer (k = top_k_share * E, default 25%, at least 1)
  freq    freq[lang, layer, expert] = share of the language's tokens on which
          the expert was activated
  fires   a neuron fires on a token when its |a| exceeds the mean |a| over its
          layer's neurons on that token (a per-token, scale-free threshold; a
          per-neuron top-k costs more than the forward pass itself on CPU)

Kept per language (as counts and sums, so languages and runs merge exactly and
every mean is derived in one place): expert activation counts, per-neuron fire
counts, per-neuron summed |a| (-> mean mass per neuron, per expert, per layer,
which the pruner's `mass` strategy reads), and expert counts under a seeded
random split recorded in the same pass (the report's baseline).

Counted tokens: every text token of every sequence. The BOS (and any other
special token) is run through the model but not counted: it is the same for
every language and carries the model's massive-activation outliers. Padding is
never counted.

Recording reads `a` with a forward pre-hook on every layer's down projection;
the hook returns nothing (so the output is unchanged), reduces the batch to
counts at once, and every hook is removed in `finally`. Only the decoder runs:
the 262k-vocabulary LM head of Gemma 3 is its most expensive part and profiling
needs no logits.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch

from . import __version__
from .errors import UserError
from .experts import METHODS, ExpertMap, build_expert_map, coactivation_split, random_split
from .models.adapters import ffn_layers
from .progress import count_progress, status

FORMAT = "babel-edge-profile"
FORMAT_VERSION = 1
HEADER_KEY = "babel_edge"

ACTIVATION = {
    "point": "input of each FFN's down projection: a = act(gate(x)) * up(x)",
    "expert_mass": "sum of |a| over the expert's neurons, per token",
    "expert_active": "expert mass among the top-k experts of its layer on that token",
    "frequency": "share of a language's counted tokens on which the expert was active",
    "neuron_fires": "|a| above the mean |a| of its layer's neurons on that token",
    "counted_tokens": "text tokens only; BOS/special tokens and padding are not counted",
}

DEFAULT_TOKENS_PER_LANG = 8192
DEFAULT_MIN_TOKENS = 1024


def top_k_for(n_experts: int, share: float) -> int:
    return max(1, min(n_experts, round(share * n_experts)))


# ------------------------------------------------------------------ data

@dataclass
class LangStats:
    """One language's activations reduced to counts (fixed size whatever the token count)."""
    tokens: int
    expert_count: list[torch.Tensor]     # per layer [E] int64: tokens with the expert active
    neuron_count: list[torch.Tensor]     # per layer [F] int64: tokens with the neuron firing
    neuron_mass: list[torch.Tensor]      # per layer [F] float64: summed |a|
    baseline_count: list[torch.Tensor]   # per layer [E] int64: expert_count under the random split

    @classmethod
    def zeros(cls, emap: ExpertMap, baseline: ExpertMap, device="cpu") -> "LangStats":
        z = lambda n, dt: torch.zeros(n, dtype=dt, device=device)  # noqa: E731
        L = emap.n_layers
        return cls(0, [z(emap.n_experts(i), torch.long) for i in range(L)],
                   [z(w, torch.long) for w in emap.widths()],
                   [z(w, torch.float64) for w in emap.widths()],
                   [z(baseline.n_experts(i), torch.long) for i in range(L)])

    def to(self, device) -> "LangStats":
        mv = lambda ts: [t.to(device) for t in ts]  # noqa: E731
        return LangStats(self.tokens, mv(self.expert_count), mv(self.neuron_count),
                         mv(self.neuron_mass), mv(self.baseline_count))


_FIELDS = ("expert_count", "neuron_count", "neuron_mass", "baseline_count")


@dataclass
class Profile:
    """Stats of several languages (rows in `langs` order) plus what they were measured on."""
    header: dict                          # model, experts, activation, languages, run
    langs: list[str]
    tokens: torch.Tensor                  # [Lang] int64 counted tokens
    expert_map: ExpertMap
    baseline_map: ExpertMap               # the random split recorded alongside
    expert_count: list[torch.Tensor]      # per layer [Lang, E] int64
    neuron_count: list[torch.Tensor]      # per layer [Lang, F] int64
    neuron_mass: list[torch.Tensor]       # per layer [Lang, F] float64 summed |a|
    baseline_count: list[torch.Tensor]    # per layer [Lang, E] int64
    path: Path | None = field(default=None, compare=False)

    @property
    def n_layers(self) -> int:
        return self.expert_map.n_layers

    @property
    def fingerprint(self) -> str:
        return self.header["model"]["fingerprint"]

    def lang_index(self, code: str) -> int:
        try:
            return self.langs.index(code)
        except ValueError:
            raise UserError(f"language '{code}' is not in this profile "
                            f"({', '.join(self.langs)}); profile it first") from None

    def language_info(self) -> list[dict]:
        return self.header["languages"]

    def families(self) -> list[str]:
        return [d.get("family") or "?" for d in self.header["languages"]]

    def _per_token(self, t: torch.Tensor) -> torch.Tensor:
        return t.double() / self.tokens.double().clamp_min(1)[:, None]

    # ---- derived views; every mean lives here
    def expert_freq(self, layer: int) -> torch.Tensor:
        """[Lang, E] share of tokens on which each expert was active."""
        return self._per_token(self.expert_count[layer])

    def baseline_freq(self, layer: int) -> torch.Tensor:
        """[Lang, E] the same under the random split."""
        return self._per_token(self.baseline_count[layer])

    def neuron_freq(self, layer: int) -> torch.Tensor:
        """[Lang, F] share of tokens on which each neuron fired."""
        return self._per_token(self.neuron_count[layer])

    def neuron_mean_mass(self, layer: int) -> torch.Tensor:
        """[Lang, F] mean |a| per token of each neuron (the pruner's `mass` importance)."""
        return self._per_token(self.neuron_mass[layer])

    def expert_mean_mass(self, layer: int) -> torch.Tensor:
        """[Lang, E] mean activation mass per token of each expert."""
        return self.neuron_mean_mass(layer) @ self.expert_map.one_hot(layer, torch.float64)

    def layer_mean_mass(self) -> torch.Tensor:
        """[Lang, Layer] mean total |a| per token of each layer (its activation level)."""
        return torch.stack([self.neuron_mean_mass(i).sum(1) for i in range(self.n_layers)], 1)

    def freq_grid(self, baseline: bool = False) -> torch.Tensor:
        """[Lang, Layer, E] expert frequencies (layers with fewer experts padded with NaN)."""
        f = [self.baseline_freq(i) if baseline else self.expert_freq(i) for i in range(self.n_layers)]
        e = max(t.shape[1] for t in f)
        out = torch.full((len(self.langs), self.n_layers, e), float("nan"), dtype=torch.float64)
        for i, t in enumerate(f):
            out[:, i, :t.shape[1]] = t
        return out

    def select(self, langs: Sequence[str]) -> "Profile":
        """The same profile restricted to `langs` (in that order)."""
        idx = torch.tensor([self.lang_index(c) for c in langs], dtype=torch.long)
        header = dict(self.header, languages=[self.header["languages"][i] for i in idx.tolist()])
        pick = lambda ts: [t[idx] for t in ts]  # noqa: E731
        return Profile(header, list(langs), self.tokens[idx], self.expert_map, self.baseline_map,
                       pick(self.expert_count), pick(self.neuron_count), pick(self.neuron_mass),
                       pick(self.baseline_count), self.path)


# ------------------------------------------------------------------ recording

@contextlib.contextmanager
def read_neurons(model, reduce: Callable[[int, torch.Tensor], None]) -> Iterator[None]:
    """Call reduce(layer, a) with a: [B, T, F] at every FFN's down-projection input.

    The hook returns None, so the down projection sees its input unchanged
    (reduce must not write to `a`). Hooks are removed even when the forward fails.
    """
    handles = []
    try:
        for v in ffn_layers(model):
            handles.append(v.down.register_forward_pre_hook(
                lambda module, args, i=v.index: reduce(i, args[0])))
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class Batch:
    ids: torch.Tensor          # [B, T] int64, right-padded
    mask: torch.Tensor         # [B, T] int64 attention mask
    rows: torch.Tensor         # [N] flat indices (b * T + t) of the counted positions
    n_tokens: int              # N


def make_batches(seqs: Sequence[Sequence[int]], batch_size: int, pad_id: int,
                 special_ids: set[int]) -> list[Batch]:
    """Sequences sorted by length (little padding) and cut into batches of `batch_size`."""
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))
    batches = []
    for s in range(0, len(order), batch_size):
        chunk = [seqs[i] for i in order[s:s + batch_size]]
        n = max(len(q) for q in chunk)
        ids = torch.full((len(chunk), n), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), n), dtype=torch.long)
        counted = torch.zeros((len(chunk), n), dtype=torch.bool)
        for b, q in enumerate(chunk):
            ids[b, :len(q)] = torch.tensor(q, dtype=torch.long)
            mask[b, :len(q)] = 1
            counted[b, :len(q)] = torch.tensor([t not in special_ids for t in q])
        rows = counted.reshape(-1).nonzero().squeeze(1)
        batches.append(Batch(ids, mask, rows, int(rows.numel())))
    return batches


def iter_sequences(texts: Sequence[str], tokenize: Callable[[str], list[int]], n_tokens: int,
                   max_len: int, special_ids: set[int]) -> Iterator[list[int]]:
    """Token sequences of the texts, in order, until exactly n_tokens counted tokens
    (fewer if the text runs out).

    A paragraph longer than max_len is cut into pieces of max_len, each starting
    again with the paragraph's leading special tokens (BOS), so no text is lost
    to the length limit. The last piece is cut so the total is exact. A generator,
    so memory does not grow with n_tokens.
    """
    total = 0
    for text in texts:
        ids = tokenize(text)
        lead = 0
        while lead < len(ids) and ids[lead] in special_ids:
            lead += 1
        prefix, body = ids[:lead], ids[lead:]
        step = max(1, max_len - len(prefix))
        for s in range(0, len(body), step):
            piece = body[s:s + step][:n_tokens - total]
            if piece:
                total += sum(t not in special_ids for t in piece)
                yield prefix + piece
            if total >= n_tokens:
                return


def select_sequences(texts: Sequence[str], tokenize: Callable[[str], list[int]], n_tokens: int,
                     max_len: int, special_ids: set[int]) -> tuple[list[list[int]], int]:
    """iter_sequences as a list, with the counted tokens."""
    seqs = list(iter_sequences(texts, tokenize, n_tokens, max_len, special_ids))
    return seqs, _count(seqs, special_ids)


def iter_batches(seqs: Iterable[Sequence[int]], batch_size: int, pad_id: int,
                 special_ids: set[int], window: int = 4096) -> Iterator[Batch]:
    """make_batches over consecutive windows of `window` sequences: length-sorted within a
    window (little padding), bounded memory whatever the number of sequences."""
    buf: list[Sequence[int]] = []
    for q in seqs:
        buf.append(q)
        if len(buf) == window:
            yield from make_batches(buf, batch_size, pad_id, special_ids)
            buf = []
    if buf:
        yield from make_batches(buf, batch_size, pad_id, special_ids)


def _count(seqs: Iterable[Sequence[int]], special_ids: set[int]) -> int:
    return sum(sum(t not in special_ids for t in q) for q in seqs)


def _stats_reducer(stats: LangStats, rows_of_batch: list, maps: tuple[list, list],
                   ks: tuple[list, list]) -> Callable[[int, torch.Tensor], None]:
    """The hook body: fold one layer's activations of one batch into `stats`."""
    onehots, base_onehots = maps
    k_exp, k_base = ks

    def reduce(i: int, a: torch.Tensor) -> None:
        f = a.shape[-1]
        # copy only the counted positions (index_select copies, so abs_ never touches `a`)
        x = a.reshape(-1, f).index_select(0, rows_of_batch[0]).float().abs_()   # [N, F]
        for onehot, k, counts in ((onehots[i], k_exp[i], stats.expert_count[i]),
                                  (base_onehots[i], k_base[i], stats.baseline_count[i])):
            mass = x @ onehot                                              # [N, E]
            top = mass.topk(k, dim=1, sorted=False).indices                 # [N, k]
            counts += torch.bincount(top.reshape(-1), minlength=onehot.shape[1])
        stats.neuron_count[i] += (x > x.mean(1, keepdim=True)).sum(0)      # [F]
        stats.neuron_mass[i] += x.sum(0, dtype=torch.float64)              # [F]

    return reduce


def _forward(decoder, batch: Batch, device) -> None:
    decoder(input_ids=batch.ids.to(device), attention_mask=batch.mask.to(device), use_cache=False)


@torch.inference_mode()
def record_language(model, batches: Iterable[Batch], emap: ExpertMap, baseline: ExpertMap,
                    top_k_share: float, advance: Callable[[int], None] | None = None) -> LangStats:
    """Run the decoder over `batches` and reduce every FFN's activations to LangStats."""
    device = next(model.parameters()).device
    stats = LangStats.zeros(emap, baseline, device)
    maps = ([emap.one_hot(i).to(device) for i in range(emap.n_layers)],
            [baseline.one_hot(i).to(device) for i in range(baseline.n_layers)])
    ks = ([top_k_for(emap.n_experts(i), top_k_share) for i in range(emap.n_layers)],
          [top_k_for(baseline.n_experts(i), top_k_share) for i in range(baseline.n_layers)])
    rows = [None]                       # the current batch's counted positions, read by the hook
    decoder = model.get_decoder()
    with read_neurons(model, _stats_reducer(stats, rows, maps, ks)):
        for b in batches:
            rows[0] = b.rows.to(device)
            _forward(decoder, b, device)
            stats.tokens += b.n_tokens
            if advance:
                advance(b.n_tokens)
    return stats.to("cpu")


@torch.inference_mode()
def record_coactivation(model, batches: Sequence[Batch], widths: Sequence[int]) -> list[torch.Tensor]:
    """Per layer [F, F] float64: tokens on which neurons i and j both fired (fires = above the
    token's mean |a|, as in the profile). Costs N * F^2 per layer: use a few thousand tokens."""
    device = next(model.parameters()).device
    coact = [torch.zeros(w, w, dtype=torch.float64, device=device) for w in widths]
    rows = [None]

    def reduce(i: int, a: torch.Tensor) -> None:
        x = a.reshape(-1, a.shape[-1]).index_select(0, rows[0]).float().abs_()
        fired = (x > x.mean(1, keepdim=True)).float()                     # [N, F]
        coact[i] += (fired.T @ fired).double()                              # [F, F]

    decoder = model.get_decoder()
    with read_neurons(model, reduce):
        for b in batches:
            rows[0] = b.rows.to(device)
            _forward(decoder, b, device)
    return [c.cpu() for c in coact]


# ------------------------------------------------------------------ the profile run

def _special_ids(tokenizer) -> set[int]:
    return set(int(i) for i in (tokenizer.all_special_ids or []))


def _tokenize(tokenizer) -> Callable[[str], list[int]]:
    return lambda text: tokenizer(text, add_special_tokens=True)["input_ids"]


def _scan(seqs: Iterable[Sequence[int]], special_ids: set[int]) -> tuple[str, int, int]:
    """(digest, counted tokens, sequences) of a language's sequences, without keeping them."""
    h = hashlib.sha256()
    n = m = 0
    for q in seqs:
        h.update(json.dumps(q).encode())
        n += sum(t not in special_ids for t in q)
        m += 1
    return h.hexdigest()[:16], n, m


def _language_meta(code: str) -> dict:
    try:
        from .corpus import get_language

        lang = get_language(code)
        return {"code": code, "name": lang.name, "family": lang.family,
                "branch": getattr(lang, "branch", None), "script": lang.script}
    except Exception:  # a user corpus may use codes the registry does not know
        return {"code": code, "name": code, "family": None, "branch": None, "script": None}


def profile_model(lm, langs: Sequence[str], texts_for: Callable[[str], Sequence[str]], *,
                  tokens_per_lang: int = DEFAULT_TOKENS_PER_LANG,
                  min_tokens: int = DEFAULT_MIN_TOKENS, expert_size: int = 32,
                  split: str = "kmeans", top_k_share: float = 0.25, batch_size: int = 32,
                  max_len: int = 256, seed: int = 0, corpus: str = "built-in",
                  partial_dir: str | Path | None = None, coact_tokens: int = 8192,
                  language_extra: dict[str, dict] | None = None,
                  warn: Callable[[str], None] | None = None) -> Profile:
    """Profile `langs` on a LoadedModel-like `lm` (model, tokenizer, spec, arch, family,
    fingerprint). Every language gets up to `tokens_per_lang` counted tokens from
    texts_for(lang); fewer than `min_tokens` is refused. With `partial_dir`, each
    finished language is saved there and reused by a rerun with the same settings.
    `language_extra` adds fields to a language's header entry (e.g. the corpus source)."""
    if not langs:
        raise UserError("no languages to profile; give --langs (e.g. --langs en,de,fr)")
    if tokens_per_lang < 1 or min_tokens < 1:
        raise UserError("--tokens-per-lang must be a positive number of tokens")
    if not 0 < top_k_share <= 1:
        raise UserError(f"--top-k-share must be in (0, 1], not {top_k_share}")
    if batch_size < 1 or max_len < 2:
        raise UserError("--batch-size must be at least 1 and --max-len at least 2")
    if split not in METHODS:
        raise UserError(f"unknown expert split '{split}'; choose one of {', '.join(METHODS)}")
    model, tokenizer = lm.model, lm.tokenizer
    special = _special_ids(tokenizer)
    tokenize = _tokenize(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def sequences(lang: str, n_tokens: int = tokens_per_lang) -> Iterator[list[int]]:
        return iter_sequences(texts_for(lang), tokenize, n_tokens, max_len, special)

    # 1. scan every language's text first, so a short language fails before any compute:
    # (digest, tokens, sequences) per language. The sequences are made again while
    # recording (tokenizing is cheap), so memory stays flat whatever --tokens-per-lang is.
    scanned, short, partial = {}, [], []
    for lang in langs:
        scanned[lang] = _scan(sequences(lang), special)
        n = scanned[lang][1]
        if n < min(min_tokens, tokens_per_lang):
            short.append(f"{lang} ({n:,})")
        elif n < tokens_per_lang:
            partial.append(f"{lang} {n:,}")
    if partial and warn:
        warn(f"{len(partial)} languages have fewer than {tokens_per_lang:,} tokens of text and are "
             f"profiled on all they have: {', '.join(partial)}")
    if short:
        raise UserError(f"too few tokens of text for {', '.join(short)}: at least "
                        f"{min(min_tokens, tokens_per_lang):,} are needed; add text with --corpus, "
                        f"leave these languages out, or lower --min-tokens")

    # 2. the expert split (and the random baseline, recorded in the same pass)
    widths = [v.width for v in ffn_layers(model)]
    if split == "coactivation":
        per_lang = max(64, coact_tokens // len(langs))
        sample = [q for lang in langs for q in sequences(lang, per_lang)]
        with status(f"recording co-activations on {_count(sample, special):,} tokens"):
            coact = record_coactivation(model, make_batches(sample, batch_size, pad_id, special), widths)
        emap = coactivation_split(coact, expert_size, seed)
    else:
        emap = build_expert_map(model, expert_size, split, seed)
    baseline = emap if split == "random" else random_split(widths, expert_size, seed + 1)

    # 3. record each language (reusing finished ones from an interrupted run)
    run_key = {"fingerprint": lm.fingerprint, "experts": emap.digest(), "baseline": baseline.digest(),
               "top_k_share": top_k_share, "version": FORMAT_VERSION}
    part = Path(partial_dir) if partial_dir else None
    stats: dict[str, LangStats] = {}
    todo = []
    for lang in langs:
        s = _load_partial(part, lang, run_key, scanned[lang][0]) if part else None
        if s is not None:
            stats[lang] = s
        else:
            todo.append(lang)
    total = sum(scanned[lang][1] for lang in todo)
    t0 = time.perf_counter()
    with count_progress(f"profiling {len(todo)} languages", total=total, unit="tokens") as advance:
        done = [0]
        for lang in todo:
            batches = iter_batches(sequences(lang), batch_size, pad_id, special)

            def adv(n: int, lang=lang) -> None:
                done[0] += n
                rate = done[0] / max(time.perf_counter() - t0, 1e-9)
                advance(n, extra=f"{lang}  {rate:,.0f} tok/s")

            stats[lang] = record_language(model, batches, emap, baseline, top_k_share, adv)
            if part:
                _save_partial(part, lang, run_key, scanned[lang][0], stats[lang])
    seconds = time.perf_counter() - t0

    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "babel_edge_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": str(lm.spec), "fingerprint": lm.fingerprint, "arch": lm.arch,
                  "family": lm.family, "n_layers": len(widths), "widths": widths},
        "experts": emap.meta(), "baseline_experts": baseline.meta(),
        "activation": dict(ACTIVATION, top_k_share=top_k_share,
                           top_k=[top_k_for(emap.n_experts(i), top_k_share)
                                  for i in range(emap.n_layers)]),
        "languages": [dict(_language_meta(lang), **(language_extra or {}).get(lang, {}),
                           tokens=stats[lang].tokens,
                           sequences=scanned[lang][2]) for lang in langs],
        "run": {"corpus": corpus, "split": "profile", "tokens_per_lang": tokens_per_lang,
                "min_tokens": min_tokens, "max_len": max_len, "batch_size": batch_size,
                "seed": seed, "seconds_recording": round(seconds, 2), "tokens_recorded": total,
                "languages_resumed": [lang for lang in langs if lang not in todo]},
    }
    return _assemble(header, list(langs), [stats[lang] for lang in langs], emap, baseline)


def _assemble(header, langs, stats: Sequence[LangStats], emap, baseline) -> Profile:
    stack = lambda name, i: torch.stack([getattr(s, name)[i] for s in stats])  # noqa: E731
    L = emap.n_layers
    return Profile(header, langs, torch.tensor([s.tokens for s in stats], dtype=torch.long),
                   emap, baseline, *[[stack(name, i) for i in range(L)] for name in _FIELDS])


# ------------------------------------------------------------------ files

def _atomic_save(tensors: dict, metadata: dict, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={HEADER_KEY: json.dumps(metadata, ensure_ascii=False)})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
