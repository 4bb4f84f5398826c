"""Shared fixtures: tiny random models of every family (built once per session) and the
embedded real model (integration tests only)."""
from __future__ import annotations

import os

import pytest

# Tests never touch the network: the embedded model comes from installed PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("BABEL_EDGE_QUIET", "1")

from babel_edge.models.tiny import TINY_FAMILIES, build_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module of tiny-model tests: on 2 shared cores, intra-op
    threads hand off on every small op and make such tests many times slower.
    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """{model_type: saved tiny model directory} for every supported family."""
    root = tmp_path_factory.mktemp("tiny")
    dirs = {}
    for fam in TINY_FAMILIES:
        d = root / fam
        build_tiny_model(fam, d, seed=0)
        dirs[fam] = d
    return dirs


@pytest.fixture(params=TINY_FAMILIES)
def tiny_dir(request, tiny_dirs):
    return tiny_dirs[request.param]


@pytest.fixture(scope="session")
def embedded():
    """The embedded Gemma 3 270M, loaded once (converted and cached on first use)."""
    from babel_edge.models import load_model

    return load_model(None)


@pytest.fixture
def plan_for():
    """plan_for(model, langs, width_before=256) -> a PruningPlan recording the model's current
    per-layer widths (kept ids 0..w-1), for tests that slice a model by hand."""
    from babel_edge.models import ffn_layers
    from babel_edge.prune import LayerPlan, PruningPlan

    def make(model, langs, width_before=256, strategy="mass", schedule="adaptive"):
        layers = [LayerPlan(v.index, width_before, v.width, list(range(v.width)))
                  for v in ffn_layers(model)]
        rate = 1 - sum(l.width for l in layers) / (width_before * len(layers))
        return PruningPlan(list(langs), round(rate, 3), strategy, schedule, "neuron", 1, 0.0, 1.0,
                           0, layers)

    return make
