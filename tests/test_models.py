import json

import pytest
import torch

from babel_edge.errors import ModelNotFoundError, UserError
from babel_edge.evaluate import hf_tokenize, torch_scorer
from babel_edge.models import (ADAPTERS, UnsupportedArchitectureError, describe_model, ffn_layers,
                               fingerprint, load_model)
from babel_edge.models.tiny import TINY_FAMILIES


def test_every_adapter_has_a_tiny_model():
    # optimum-style guard: a supported family without a tiny-model test fails here
    assert set(ADAPTERS) == set(TINY_FAMILIES)


def test_load_tiny_and_ffn_views(tiny_dir):
    lm = load_model(str(tiny_dir))
    views = ffn_layers(lm.model)
    assert len(views) == lm.model.config.num_hidden_layers
    for v in views:
        assert v.width == lm.model.config.intermediate_size
        assert v.gate.weight.shape == (v.width, lm.model.config.hidden_size)
        assert v.down.weight.shape == (lm.model.config.hidden_size, v.width)
    # the FFN seen through the adapter is the FFN the model runs
    x = torch.randn(3, lm.model.config.hidden_size)
    v = views[0]
    with torch.no_grad():
        assert torch.allclose(v.mlp(x), v.down(v.act(v.gate(x)) * v.up(x)), atol=1e-6)


def test_scorer_matches_full_forward_and_ignores_padding(tiny_dir):
    lm = load_model(str(tiny_dir))
    tok = hf_tokenize(lm.tokenizer)
    a, b = tok("Hello world, здравствуй мир, 你好世界"), tok("short text")
    score = torch_scorer(lm.model, pad_id=lm.tokenizer.pad_token_id)
    batched = score([a, b])                   # b is padded in this batch
    single = score([b])
    with torch.no_grad():
        ref = lm.model(torch.tensor([a]), labels=torch.tensor([a])).loss.item() * (len(a) - 1)
    assert batched[0] == pytest.approx(ref, rel=1e-4)
    assert batched[1] == pytest.approx(single[0], rel=1e-4)
    # the head runs a few positions at a time: any chunk gives the same sums
    for chunk in (1, 7, 4096):
        assert torch_scorer(lm.model, pad_id=lm.tokenizer.pad_token_id, chunk=chunk)([a, b]) == \
            pytest.approx(batched, rel=1e-5)


def test_fingerprint_tells_models_apart(tiny_dirs, tmp_path):
    from babel_edge.models.tiny import build_tiny_model

    d = tmp_path / "other"
    build_tiny_model("llama", d, seed=1)
    assert fingerprint(tiny_dirs["llama"]) == fingerprint(tiny_dirs["llama"])
    assert fingerprint(tiny_dirs["llama"]) != fingerprint(d)


def test_describe_reads_without_loading(tiny_dirs):
    info = describe_model(str(tiny_dirs["qwen2"]))
    assert info["layers"] == 4 and "Qwen2" in info["architecture"]
    assert int(info["parameters"].replace(",", "")) == sum(
        p.numel() for p in load_model(str(tiny_dirs["qwen2"])).model.parameters())


def test_bad_models_are_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="without config.json"):
        load_model(str(tmp_path))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(UserError, match="not a .gguf"):
        load_model(str(f))
    d = tmp_path / "gpt2"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UnsupportedArchitectureError, match="supported: .*Gemma 3.*Llama"):
        load_model(str(d))
