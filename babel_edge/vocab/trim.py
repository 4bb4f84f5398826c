"""Trimming end to end: choose the kept set, build the tokenizer, trim the model, check that
nothing changed on the choosing text, report how held-out text tokenizes."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import UserError
from ..progress import status
from .choose import _encode_many, choose_kept, config_token_ids
from .model import trim_model
from .source import source_vocab
from .tokenizer import trim_tokenizer


PARITY_PARAGRAPHS = 2              # per target language, cut to PARITY_TOKENS
PARITY_TOKENS = 64
PARITY_MAX_ABS = 1e-3              # same hidden states, fewer rows of the head: ~exact


RULES = {
    "text": "tokens the original tokenizer produces on the text + the parts and results of "
            "the merges that build them (BPE replayed on each token's text) + single-character "
            "tokens inside kept tokens (SentencePiece) + all byte tokens + all added/special "
            "tokens + config ids + chat-template tokens; merges kept when both parts and the "
            "result are kept; new ids in the old order",
    "language": "all byte tokens + all added/special tokens + config ids + chat-template tokens + "
                "every letter-free token of no particular script + every single-character token of "
                "the target scripts; then tokens ranked by their estimated share of the target "
                "languages' text (wordfreq word frequencies and the fitting text, languages "
                "weighted equally), each "
                "with the merges that build it, up to the size; merges kept when both parts and "
                "the result are kept; new ids in the old order",
}


def _tokenizer_key(src) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in src.tokens:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:16]


def tokenization_report(old_tok, new_tok, kept: Sequence[int], texts: Sequence[str]) -> dict:
    """How a text set tokenizes before and after trimming (no special tokens added):
    share of paragraphs whose tokens are unchanged (mapped to the new ids), share of the
    original tokens that are kept, token counts and bytes, and round trips
    (decode(encode(text)) == text) with the trimmed tokenizer."""
    new_id = {o: n for n, o in enumerate(kept)}
    olds, news = _encode_many(old_tok, texts), _encode_many(new_tok, texts)
    same = covered = n_old = n_new = 0
    rt_fail, rt_fail_before = [], 0
    for text, o, n in zip(texts, olds, news):
        mapped = [new_id.get(i, -1) for i in o]
        same += mapped == n
        covered += sum(1 for i in mapped if i >= 0)
        n_old, n_new = n_old + len(o), n_new + len(n)
        if new_tok.decode(n) != text:
            rt_fail.append(text[:40])
            rt_fail_before += old_tok.decode(o) != text
    n_bytes = sum(len(t.encode()) for t in texts)
    k = max(len(texts), 1)
    return {"paragraphs": len(texts), "bytes": n_bytes, "unchanged_share": same / k,
            "token_coverage": covered / max(n_old, 1), "tokens_before": n_old,
            "tokens_after": n_new, "tokens_ratio": n_new / max(n_old, 1),
            "bytes_per_token_before": n_bytes / max(n_old, 1),
            "bytes_per_token_after": n_bytes / max(n_new, 1),
            "roundtrip_failures": len(rt_fail), "roundtrip_failures_untrimmed": rt_fail_before,
            "roundtrip_examples": rt_fail[:3]}


def _logits(model, ids: Sequence[int]):
    with torch.inference_mode():
        dev = next(model.parameters()).device
        return model(input_ids=torch.tensor([list(ids)], device=dev)).logits[0].float().cpu()


@dataclass
class TrimmedVocab:
    kind: str
    kept: list[int]                       # old ids, sorted; new id = position
    tokenizer: object                     # the trimmed HF fast tokenizer
    files: dict[str, bytes] = field(repr=False)
    section: dict = field(default_factory=dict)   # the plan's "vocab" section

    def write(self, out_dir: str | Path) -> None:
        """The tokenizer files (tokenizer.json, tokenizer_config.json, tokenizer.model, ...)."""
        from ..io import write_bytes

        for name, data in self.files.items():
            write_bytes(Path(out_dir) / name, data)


def read_user_text(paths: Sequence[str | Path] | str | Path | None) -> list[str]:
    """Paragraphs (blank-line separated) of the user's --vocab-text files."""
    if not paths:
        return []
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for p in map(Path, paths):
        try:
            text = p.expanduser().read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"--vocab-text '{p}' does not exist; give a UTF-8 text file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--vocab-text '{p}' cannot be read as UTF-8 text: {e}") from None
        paras = [x.strip("\n") for x in text.replace("\r\n", "\n").split("\n\n") if x.strip()]
        if not paras:
            raise UserError(f"--vocab-text '{p}' is empty; give text in the target languages")
        out += paras
    return out


def trim_loaded(model, tokenizer, langs: Sequence[str], texts_for: Callable[[str], Sequence[str]],
                *, user_texts: Sequence[str] = (), model_dir: Path | None = None,
                eval_for: Callable[[str], Sequence[str]] | None = None,
                other_langs: Sequence[str] = (), check: bool = True,
                size: int | None = None, evidence: str = "language",
                scripts: Sequence[str] = (), words_top: int | None = None) -> TrimmedVocab:
    """Trim `model` (in place) and build its tokenizer for `langs`.

    texts_for(lang): fitting text of the language (never evaluation text); eval_for(lang):
    held-out text for the coverage report (targets and `other_langs`).
    evidence: "language" — tokens ranked by how much the languages need them (wordfreq word
    frequencies + the fitting text; evidence.py), plus every letter-free token of no particular
    script (choose.common_symbols) and every single-character token of the target `scripts`,
    up to `size` tokens; "text" — exactly the tokens of the fitting text (the first release's
    rule; `size` must be None).
    Raises when the trimmed tokenizer does not reproduce the original tokens on the fitting
    text whose tokens are all kept, or the trimmed model's logits over the kept tokens drift
    from the untrimmed model's."""
    langs = list(dict.fromkeys(langs))
    if not langs and not user_texts:
        raise UserError("vocabulary trimming needs target languages or --vocab-text")
    with status("choosing the kept vocabulary"):
        src = source_vocab(tokenizer, model_dir)
        rows = model.get_input_embeddings().weight.shape[0]
        if src.size > rows:
            raise UserError(f"the tokenizer has {src.size} tokens but the embedding {rows} rows; "
                            f"the model directory is inconsistent")
        per_lang = {l: list(texts_for(l)) for l in langs}
        texts = [t for l in langs for t in per_lang[l]] + list(user_texts)
        if evidence == "language":
            from .evidence import gather

            ev = gather(tokenizer, langs, lambda l: per_lang[l], user_texts,
                        cache_key=_tokenizer_key(src), **({"words_top": words_top} if words_top else {}))
            kept, counts, details = choose_kept(tokenizer, src, texts, config_token_ids(model),
                                                evidence=ev, size=size, scripts=scripts,
                                                symbols=True)
        elif evidence == "text":
            if size is not None:
                raise UserError("--vocab-size ranks tokens by language evidence; it needs "
                                "--vocab-evidence language")
            kept, counts, details = choose_kept(tokenizer, src, texts, config_token_ids(model))
        else:
            raise UserError(f"unknown vocabulary evidence '{evidence}'; use language or text")
    with status(f"building the trimmed tokenizer ({len(kept):,} of {rows:,} tokens)"):
        new_tok, files = trim_tokenizer(tokenizer, src, kept)
    new_id = {o: n for n, o in enumerate(kept)}
    # 1. exactness on the fitting text whose tokens are all kept: the same tokens, renumbered
    with status("checking the trimmed tokenizer on the target text"):
        olds, news = _encode_many(tokenizer, texts), _encode_many(new_tok, texts)
        whole = [(t, o, n) for t, o, n in zip(texts, olds, news) if all(i in new_id for i in o)]
        bad = [t for t, o, n in whole if [new_id[i] for i in o] != n]
        details["exact_on_fitting_paragraphs"] = {"checked": len(whole), "of": len(texts)}
    if bad:
        raise RuntimeError(f"vocabulary trimming changed the tokenization of {len(bad)} target "
                           f"paragraphs (e.g. {bad[0][:60]!r}); this is a bug in babel-edge")
    # 2. parity: untrimmed vs trimmed model on target text, logits over the kept tokens
    # (the first PARITY_PARAGRAPHS paragraphs per language whose tokens are all kept; the
    # logits of a kept token do not depend on what else was kept)
    probe = []
    for l in langs:
        got = [o for o in _encode_many(tokenizer, per_lang[l][:50])
               if len(o) > 1 and all(i in new_id for i in o[:PARITY_TOKENS])]
        probe += [o[:PARITY_TOKENS] for o in got[:PARITY_PARAGRAPHS]]
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None:
        probe = [[bos] + p[:PARITY_TOKENS - 1] for p in probe]
    idx = torch.as_tensor(kept)
    before = [_logits(model, p)[:, idx] for p in probe] if check else []
    total_before = sum(p.numel() for p in model.parameters())
    trim_model(model, kept)
    parity = None
    if check:
        diffs = [float((_logits(model, [new_id[i] for i in p]) - b).abs().max())
                 for p, b in zip(probe, before)]
        parity = {"sequences": len(probe), "max_abs_diff": max(diffs, default=0.0),
                  "threshold": PARITY_MAX_ABS}
        if parity["max_abs_diff"] > PARITY_MAX_ABS:
            raise RuntimeError(f"the trimmed model's logits over the kept tokens differ from the "
                               f"untrimmed model's by {parity['max_abs_diff']:.3g} "
                               f"(> {PARITY_MAX_ABS}); this is a bug in babel-edge")
    report = {}
    if eval_for is not None:
        with status("measuring tokenization on the eval split"):
            for l in list(dict.fromkeys(langs + list(other_langs))):
                try:
                    ev = list(eval_for(l))
                except Exception:  # noqa: BLE001 - a language the corpus lacks is skipped
                    continue
                if ev:
                    report[l] = dict(tokenization_report(tokenizer, new_tok, kept, ev),
                                     target=l in langs)
    section = {
        "trimmed": True, "tokenizer_kind": src.kind, "vocab_before": rows, "kept": len(kept),
        "kept_share": len(kept) / rows, "kept_by_reason": counts,
        "merges_before": len(src.merges), "merges_after": len(json.loads(files["tokenizer.json"])
                                                              ["model"].get("merges", [])),
        "scores_from": src.scores_from,
        "chosen_from": {"langs": langs, "split": "profile", "evidence": evidence, "size": size,
                        "scripts": list(scripts),
                        "paragraphs": sum(len(v) for v in per_lang.values()),
                        "chars": sum(len(t) for v in per_lang.values() for t in v),
                        "user_paragraphs": len(user_texts),
                        "user_chars": sum(len(t) for t in user_texts)},
        **details,
        "rule": RULES[evidence],
        "parity": parity,
        "params": {"embedding_before": rows * model.get_input_embeddings().weight.shape[1],
                   "embedding_after": model.get_input_embeddings().weight.numel(),
                   "total_before": total_before,
                   "total_after": sum(p.numel() for p in model.parameters())},
        "eval": report,
        "kept_ids": list(kept),
    }
    return TrimmedVocab(src.kind, list(kept), new_tok, files, section)


def format_section(s: dict) -> list[str]:
    """A few human lines about a plan's "vocab" section."""
    lines = [f"vocabulary {s['vocab_before']:,} -> {s['kept']:,} tokens ({s['kept_share']:.1%}, "
             f"{s['tokenizer_kind']}); kept: " + ", ".join(f"{k} {v:,}" for k, v in
                                                           s["kept_by_reason"].items() if v)]
    for lang, r in s.get("eval", {}).items():
        lines.append(f"  {lang:>3} {'target' if r['target'] else 'other ':6} eval split: "
                     f"{r['unchanged_share']:.1%} of paragraphs tokenize as before, "
                     f"{r['token_coverage']:.1%} of tokens kept, x{r['tokens_ratio']:.2f} tokens, "
                     f"round-trip failures {r['roundtrip_failures']}")
    return lines
