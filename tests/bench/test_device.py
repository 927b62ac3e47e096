"""The GPU bundle's scorer delta: a merged LoRA update is rebuilt exactly from its SVD factors."""
import copy

import torch

from optirag_bench.device import apply_delta, delta_names, lowrank_delta


def test_lowrank_delta_round_trip(tiny_model):
    tuned = copy.deepcopy(tiny_model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():   # what merge_and_unload leaves: W + B @ A (rank 4) on q_proj/v_proj
        for layer in tuned.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.v_proj):
                out_f, in_f = proj.weight.shape
                proj.weight += torch.randn(out_f, 4, generator=gen) @ torch.randn(4, in_f, generator=gen) * 0.01
    tensors, error = lowrank_delta(tuned, tiny_model)
    assert error < 1e-5
    assert delta_names(tensors) == {
        f"model.layers.{i}.self_attn.{p}.weight" for i in range(len(tuned.model.layers)) for p in ("q_proj", "v_proj")}
    assert all(t.shape[0] == 4 for k, t in tensors.items() if k.endswith(".v"))   # rank found
    rebuilt = copy.deepcopy(tiny_model)
    assert apply_delta(rebuilt, tensors) == len(delta_names(tensors))
    for (name, a), b in zip(tuned.state_dict().items(), rebuilt.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name
