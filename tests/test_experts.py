import pytest
import torch

from babel_edge.errors import UserError
from babel_edge.experts import (ExpertMap, balanced_kmeans, build_expert_map, coactivation_split,
                                kmeans_split, random_split)
from babel_edge.models.tiny import build_tiny_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_llama():
    return build_tiny_model("llama", seed=0)[0]


def _same(a: ExpertMap, b: ExpertMap) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.experts, b.experts))


@pytest.mark.parametrize("method", ["kmeans", "random"])
def test_split_is_balanced_partition_and_deterministic(tiny_llama, method):
    em = build_expert_map(tiny_llama, expert_size=32, method=method, seed=3)
    em.validate()                                    # every neuron in exactly one expert
    assert em.n_layers == 4 and all(em.n_experts(i) == 256 // 32 for i in range(4))
    assert all(e.shape == (8, 32) for e in em.experts)
    assert _same(em, build_expert_map(tiny_llama, expert_size=32, method=method, seed=3))
    assert not _same(em, build_expert_map(tiny_llama, expert_size=32, method=method, seed=4))
    # assignment and one_hot agree with the table
    a = em.assignment(1)
    for e, ids in enumerate(em.experts[1]):
        assert (a[ids] == e).all()
    assert torch.equal(em.one_hot(1).argmax(1), a)


def test_kmeans_recovers_planted_clusters():
    # 8 well-separated directions, 32 noisy copies each, shuffled
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 24, generator=g)
    labels = torch.arange(8).repeat_interleave(32)
    perm = torch.randperm(256, generator=g)
    x = (centres[labels] + 0.05 * torch.randn(256, 24, generator=g))[perm]
    found = balanced_kmeans(torch.nn.functional.normalize(x, dim=1), 8, seed=1)
    assert torch.bincount(found).tolist() == [32] * 8
    truth = labels[perm]
    for c in range(8):                              # each found cluster is one planted cluster
        assert truth[found == c].unique().numel() == 1


def test_kmeans_groups_gate_rows_better_than_random(tiny_llama):
    """Within-expert cosine similarity of gate rows: k-means > random split."""
    w = [torch.nn.functional.normalize(tiny_llama.model.layers[i].mlp.gate_proj.weight.detach(), dim=1)
         for i in range(4)]

    def cohesion(em):
        return sum(float((w[i][ids] @ w[i][ids].transpose(1, 2)).mean())
                   for i, ids in enumerate(em.experts))

    km = kmeans_split([v * 3 for v in w], 32, seed=0)   # scale must not matter (rows are normalised)
    assert _same(km, build_expert_map(tiny_llama, 32, "kmeans", seed=0))
    assert cohesion(km) > cohesion(random_split([256] * 4, 32, seed=0)) + 0.05
    # the layers clustered in two processes: the same experts
    assert _same(km, kmeans_split([v * 3 for v in w], 32, seed=0, workers=2))


def test_coactivation_split_groups_cofiring_neurons():
    # neurons 0..15 always fire together, 16..31 together, etc.: co-activation = block matrix
    blocks = torch.arange(64) // 16
    coact = (blocks[:, None] == blocks[None, :]).double() * 100 + torch.rand(64, 64, dtype=torch.float64)
    coact = (coact + coact.T) / 2
    em = coactivation_split([coact], expert_size=16, seed=0)
    for ids in em.experts[0]:
        assert blocks[ids].unique().numel() == 1
    assert em.method == "coactivation"


def test_serialisation_round_trip_and_digest():
    em = random_split([64, 128], expert_size=16, seed=0)
    em2 = ExpertMap.from_tensors(em.meta(), em.tensors())
    assert _same(em, em2) and em2.digest() == em.digest() and em2.n_experts(1) == 8
    broken = em.tensors()
    broken["experts.0"] = broken["experts.0"].clone()
    broken["experts.0"][0, 0] = broken["experts.0"][0, 1]           # a neuron twice
    with pytest.raises(ValueError):
        ExpertMap.from_tensors(em.meta(), broken)


def test_bad_expert_size_is_a_user_error(tiny_llama):
    with pytest.raises(UserError, match="multiple of --experts-size 48"):
        build_expert_map(tiny_llama, expert_size=48)
    with pytest.raises(UserError, match="unknown expert split"):
        build_expert_map(tiny_llama, method="spectral")
