"""The PyTorch engine: the fp32 reference every export is compared with."""
from __future__ import annotations

from pathlib import Path

from .base import _HFTokenizerMixin, _StepEngine


class TorchEngine(_HFTokenizerMixin, _StepEngine):
    backend = "torch"

    def __init__(self, spec, device: str = "cpu", n_ctx: int = 2048, threads: int | None = None):
        """spec: what load_model accepts, or a LoadedModel already in memory; threads: torch's
        intra-op threads for this process (None: torch's default)."""
        from babel_edge.models import as_loaded

        if threads:
            import torch
            torch.set_num_threads(threads)
        self.lm = as_loaded(spec)
        self.model = self.lm.model.to(device)
        self.path = self.lm.path
        self.name, self.device, self.n_ctx = Path(self.lm.path).name, device, n_ctx
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

    def describe(self) -> dict:
        from babel_edge.prune.model_dir import ffn_params, file_size

        return {"file_bytes": file_size(self.path), "fingerprint": self.lm.fingerprint,
                "params": {"total": self.lm.n_params, "ffn": ffn_params(self.model)}}
