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

Modules: data.py (Profile, LangStats: counts and every mean), record.py (hooks, sequences,
batches), run.py (profile_model in steps), store.py (files and resume).
"""
DEFAULT_TOKENS_PER_LANG = 8192
DEFAULT_MIN_TOKENS = 1024

# Everything else is loaded on first use, so the CLI's parser (which reads the defaults
# above) does not import torch.
_WHERE = {
    "data": ("ACTIVATION", "FORMAT", "FORMAT_VERSION", "HEADER_KEY", "LangStats", "Profile",
             "top_k_for"),
    "record": ("Batch", "iter_batches", "iter_sequences", "make_batches", "read_neurons",
               "record_coactivation", "record_language", "take_sequences"),
    "run": ("_special_ids", "_tokenize", "profile_model"),
    "store": ("load_profile", "partial_dir_for", "remove_partial", "save_profile"),
}
_MODULE_OF = {name: mod for mod, names in _WHERE.items() for name in names}
__all__ = ["DEFAULT_TOKENS_PER_LANG", "DEFAULT_MIN_TOKENS"] + sorted(_MODULE_OF)


def __getattr__(name):
    import importlib

    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
