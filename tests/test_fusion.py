"""Which matrices engine/model.py stacks at load for one-dispatch products (q/k/v into three outputs,
gate/up into act(gate)·up): only where every layer's members share a format and [Wg; Wu] fits one
buffer per layer. The fused products themselves: tests/test_matmul.py (output modes) and
tests/test_model_fidelity.py (fused and unfused models against transformers)."""
from types import SimpleNamespace

import numpy as np
import pytest

from engine import quant
from engine.model import Model
from models import ModelConfig, get_architecture

from checkpoints import hf_config

pytest.importorskip("transformers")


class FakeReader:
    """Formats by tensor name; loads quantize random matrices of the declared shapes."""

    def __init__(self, cfg, arch, formats):
        self.shapes = {f"model.layers.{i}.{r}": s for i in range(cfg.num_hidden_layers)
                       for r, s in arch.layer_tensor_shapes(cfg).items()}
        self.formats = formats

    def format(self, name):
        return self.formats.get(name, "q8_0")

    def load(self, name):
        shape = self.shapes[name]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        return x if len(shape) == 1 else quant.quantize(x, self.format(name))


def fusable(formats=None, max_buffer_bytes=1 << 27, arch_name="qwen2"):
    cfg = ModelConfig.from_hf(hf_config(arch_name, 300).to_dict())
    arch = get_architecture(cfg.model_type)
    me = SimpleNamespace(cfg=cfg, arch=arch, device=SimpleNamespace(max_buffer_bytes=max_buffer_bytes))
    roles = list(arch.layer_tensor_shapes(cfg))
    return Model._fusable(me, FakeReader(cfg, arch, formats or {}), roles, cfg.num_hidden_layers)


def test_matching_formats_fuse_with_their_biases():
    groups = fusable()
    assert groups["self_attn.qkv_proj.weight"] == ("self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                                   "self_attn.v_proj.weight")
    assert groups["self_attn.qkv_proj.bias"] == ("self_attn.q_proj.bias", "self_attn.k_proj.bias",
                                                 "self_attn.v_proj.bias")
    assert groups["mlp.gate_up_proj.weight"] == ("mlp.gate_proj.weight", "mlp.up_proj.weight")


def test_a_layer_with_mixed_formats_keeps_its_group_apart():
    groups = fusable({"model.layers.1.self_attn.v_proj.weight": "q4_1"})   # as a Q4_K_M file mixes them
    assert "self_attn.qkv_proj.weight" not in groups and "self_attn.qkv_proj.bias" not in groups
    assert "mlp.gate_up_proj.weight" in groups


def test_gate_up_that_does_not_fit_one_buffer_stays_apart():
    cfg = ModelConfig.from_hf(hf_config("qwen2", 300).to_dict())
    one_layer = quant.quantize(np.ones((cfg.intermediate_size, cfg.hidden_size), np.float32), "q8_0")
    groups = fusable(max_buffer_bytes=int(1.5 * one_layer.qs.nbytes))   # gate or up fits, [gate; up] not
    assert "mlp.gate_up_proj.weight" not in groups and "self_attn.qkv_proj.weight" in groups


def test_fusion_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("VKHARP_FUSE", "0")
    assert fusable() == {}
