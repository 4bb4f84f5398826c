"""The model side of trimming: gather the embedding (and an untied output head) to the kept
rows and renumber the special-token ids of the config."""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import UserError
from .choose import CONFIG_ID_KEYS


def trim_model(model, kept: Sequence[int]) -> None:
    """Gather the input embedding (and an untied output head) to rows `kept`, in place;
    renumber the special-token ids of the config and the generation config."""
    from torch import nn

    idx = torch.as_tensor(list(kept), dtype=torch.long)
    new_id = {o: n for n, o in enumerate(kept)}
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    if idx.numel() and int(idx.max()) >= emb.weight.shape[0]:
        raise UserError(f"kept token id {int(idx.max())} is past the embedding's "
                        f"{emb.weight.shape[0]} rows; the tokenizer does not fit this model")
    tied = head is not None and head.weight.data_ptr() == emb.weight.data_ptr()
    with torch.no_grad():
        emb.weight = nn.Parameter(emb.weight[idx.to(emb.weight.device)].clone(), requires_grad=False)
    emb.num_embeddings = len(kept)
    if getattr(emb, "padding_idx", None) is not None:
        emb.padding_idx = new_id.get(emb.padding_idx)
    if head is not None:
        if tied:
            head.weight = emb.weight
        else:
            with torch.no_grad():
                head.weight = nn.Parameter(head.weight[idx.to(head.weight.device)].clone(),
                                           requires_grad=False)
                if getattr(head, "bias", None) is not None:
                    head.bias = nn.Parameter(head.bias[idx.to(head.bias.device)].clone(),
                                             requires_grad=False)
        head.out_features = len(kept)
    model.config.vocab_size = len(kept)
    for obj in (model, getattr(model, "model", None)):
        if obj is not None and hasattr(obj, "vocab_size"):
            obj.vocab_size = len(kept)
    remap = lambda v: ([new_id[x] for x in v if x in new_id] if isinstance(v, list)  # noqa: E731
                       else new_id.get(v) if isinstance(v, int) else v)
    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is None:
            continue
        for key in CONFIG_ID_KEYS:
            if getattr(cfg, key, None) is not None:
                setattr(cfg, key, remap(getattr(cfg, key)))
