"""Low-rank adapters (LoRA) on the device: y = W·x + (alpha/r)·B·(A·x) on every linear layer of every
block, over frozen base weights in any format. The base weights are never written: an adapter is its
own small f32 buffers, trained by engine/tune/ and applied by engine/forward.py.

On the device each target's A (f32 [r, in]) and B (f32 [out, r], holding the alpha/r scale) are one
layer-stacked matrix, as the base weights are (engine/weights.py), so one pipeline serves every layer
and one optimizer dispatch updates every layer's A. On disk an adapter is a PEFT directory
(`adapter_config.json` + `adapter_model.safetensors`, B without the scale), which transformers' PEFT
loads as it is, plus `vkharp_adapter.json`: the base model's weight fingerprint (an adapter for
another model is refused) and the corrections it was trained on.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VkharpError
from ..weights import DeviceWeight, WeightPart

# every linear of a block, as the models' roles name them (Phi-3's fused HF tensors are split at conversion)
TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
PEFT_PREFIX = "base_model.model.model.layers"
META_FILE = "vkharp_adapter.json"
WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"


def target_dims(model) -> dict[str, tuple[int, int]]:
    """(in, out) of each adaptable linear of the model's blocks."""
    shapes = model.arch.layer_tensor_shapes(model.cfg)
    return {t: (shapes[f"{t}.weight"][1], shapes[f"{t}.weight"][0]) for t in TARGETS if f"{t}.weight" in shapes}


def _matrix(device, data: np.ndarray, rows: int, cols: int, layers: int, name: str) -> DeviceWeight:
    """A writable f32 layer-stacked DeviceWeight ([layers * rows, cols] float bits, as quant.py's f32)."""
    buf = device.buffer(np.ascontiguousarray(data, np.float32).reshape(layers * rows, cols), kind="act", name=name)
    return DeviceWeight("f32", rows, cols, [WeightPart(0, rows, buf, None, 0, layers, "f32")], name, layers)


@dataclass
class Adapter:
    """One model's LoRA weights on the device (see the module doc)."""
    model: object
    rank: int = 8
    alpha: float = 16.0
    targets: tuple = TARGETS
    seed: int = 0
    corrections: list = field(default_factory=list)   # what /fix and `vkharp tune` trained it on
    arrays: dict | None = None                        # initial A, B (unscaled B) by PEFT name; None: fresh

    def __post_init__(self):
        model = self.model
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise VkharpError(f"the adapter rank must be an integer ≥ 1, got {self.rank!r}")
        dims = target_dims(model)
        if self.targets is TARGETS:   # the default: every linear the model has (a Local1D MLP has none)
            self.targets = tuple(t for t in TARGETS if t in dims)
        unknown = [t for t in self.targets if t not in dims]
        if unknown:
            raise VkharpError(f"{model.cfg.model_type} has no linear layer {unknown[0]!r}; it has {sorted(dims)}")
        self.targets = tuple(t for t in TARGETS if t in self.targets)
        self.dims = {t: dims[t] for t in self.targets}
        self.fingerprint = _fingerprint(model)
        L, r, dev = model.cfg.num_hidden_layers, self.rank, model.device
        rng = np.random.default_rng(self.seed)
        self.a: dict[str, DeviceWeight] = {}
        self.b: dict[str, DeviceWeight] = {}
        for t, (n_in, n_out) in self.dims.items():
            if self.arrays is not None:
                a = np.stack([self.arrays[peft_name(i, t, "A")] for i in range(L)])
                b = np.stack([self.arrays[peft_name(i, t, "B")] for i in range(L)])
            else:   # PEFT's init: A ~ kaiming-uniform(a=√5) = U(±1/√in), B = 0 (the adapter starts as a no-op)
                bound = 1.0 / math.sqrt(n_in)
                a = rng.uniform(-bound, bound, (L, r, n_in)).astype(np.float32)
                b = np.zeros((L, n_out, r), np.float32)
            self.a[t] = _matrix(dev, a, r, n_in, L, f"lora_A[{t}]")
            self.b[t] = _matrix(dev, b * self.scale, n_out, r, L, f"lora_B[{t}]")
        self.arrays = None

    @property
    def scale(self) -> float:
        return float(self.alpha) / self.rank

    def params(self) -> list[tuple[str, DeviceWeight]]:
        """(name, matrix) of every trained matrix, in a fixed order (the optimizer's state follows it)."""
        return [(f"{t}.lora_{ab}", m[t]) for t in self.targets for ab, m in (("A", self.a), ("B", self.b))]

    @property
    def n_params(self) -> int:
        return sum(m.parts[0].qs.size for _, m in self.params())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every layer's A and B by PEFT name, B without the alpha/r scale (PEFT applies it)."""
        L, out = self.model.cfg.num_hidden_layers, {}
        for t in self.targets:
            a = self.a[t].parts[0].qs.read().reshape(L, self.rank, -1)
            b = self.b[t].parts[0].qs.read().reshape(L, -1, self.rank) / self.scale
            for i in range(L):
                out[peft_name(i, t, "A")] = np.ascontiguousarray(a[i])
                out[peft_name(i, t, "B")] = np.ascontiguousarray(b[i], dtype=np.float32)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the PEFT directory (atomically per file: a crash leaves the old adapter or none)."""
        from safetensors.numpy import save_file
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        modules = sorted({t.split(".")[-1] for t in self.targets})
        config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": self.rank, "lora_alpha": self.alpha,
                  "target_modules": modules, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
                  "inference_mode": True, "base_model_name_or_path": str(self.model.path)}
        meta = {"format": 1, "base_fingerprint": self.fingerprint, "base_model": self.model.path.name,
                "rank": self.rank, "alpha": self.alpha, "targets": list(self.targets),
                "corrections": self.corrections}
        tmp = path / (WEIGHTS_FILE + ".tmp")
        save_file(self.to_arrays(), str(tmp), metadata={"format": "pt"})
        tmp.replace(path / WEIGHTS_FILE)
        for name, obj in ((CONFIG_FILE, config), (META_FILE, meta)):
            t = path / (name + ".tmp")
            t.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            t.replace(path / name)
        return path

    @classmethod
    def load(cls, model, path: str | Path) -> "Adapter":
        """An adapter directory written by save() (or a PEFT LoRA of the same base model and targets)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        path = Path(path)
        if not (path / WEIGHTS_FILE).is_file() or not (path / CONFIG_FILE).is_file():
            raise VkharpError(f"{path} is not an adapter directory (it needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                              f"`vkharp tune` and the chat's /fix write them")
        try:
            config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8")) if (path / META_FILE).exists() else {}
            arrays = load_file(str(path / WEIGHTS_FILE))
        except (ValueError, SafetensorError, OSError) as e:
            raise VkharpError(f"adapter {path} is damaged ({e}); write it again with `vkharp tune` or /fix") from None
        if config.get("peft_type", "LORA") != "LORA" or not isinstance(config.get("r"), int):
            raise VkharpError(f"{path}: only LoRA adapters are supported, got {config.get('peft_type')!r}")
        fp = meta.get("base_fingerprint")
        if fp is not None and fp != _fingerprint(model):
            raise VkharpError(f"adapter {path} was trained for another model ({meta.get('base_model', '?')}, "
                              f"weights {fp}); this is {model.path.name} ({_fingerprint(model)}): "
                              f"load it with the model it was made for")
        _refuse_unsupported(path, config)
        rank = int(config["r"])
        dims = target_dims(model)
        L = model.cfg.num_hidden_layers
        targets = tuple(meta.get("targets") or _peft_targets(config, dims, L))
        if not targets:
            raise VkharpError(f"adapter {path} adapts none of this model's linear layers "
                              f"(target_modules {config.get('target_modules')!r}; it has {sorted(dims)})")
        out = {}
        for t in targets:
            if t not in dims:
                raise VkharpError(f"adapter {path} adapts {t!r}, which {model.cfg.model_type} does not have")
            n_in, n_out = dims[t]
            for i in range(L):
                for ab, shape in (("A", (rank, n_in)), ("B", (n_out, rank))):
                    name = peft_name(i, t, ab)
                    got = arrays.get(name)
                    if got is None and not _peft_adapts(config, t, i):   # a layer PEFT left alone: no delta
                        got = np.zeros(shape, np.float32)
                    if got is None or tuple(got.shape) != shape:
                        raise VkharpError(f"adapter {path} does not fit this model: {name} is "
                                          f"{None if got is None else tuple(got.shape)}, the model needs {shape}")
                    if not np.isfinite(got).all():
                        raise VkharpError(f"adapter {path}: {name} holds NaN or infinite values")
                    out[name] = got.astype(np.float32)
        alpha = float(config.get("lora_alpha", rank))
        if config.get("use_rslora"):   # rsLoRA scales by alpha/√r: the same delta as alpha·√r over r
            alpha *= math.sqrt(rank)
        return cls(model, rank=rank, alpha=alpha, targets=targets,
                   corrections=list(meta.get("corrections", [])), arrays=out)


def _refuse_unsupported(path: Path, config: dict) -> None:
    """PEFT LoRA options whose weights this engine would silently drop or misapply."""
    why = None
    if config.get("use_dora"):
        why = "it is a DoRA adapter (use_dora), whose magnitude vectors this engine does not apply"
    elif config.get("modules_to_save"):
        why = f"it also trains whole modules ({config['modules_to_save']}), which an adapter here cannot hold"
    elif config.get("bias", "none") != "none":
        why = f"it trains biases (bias={config['bias']!r})"
    elif config.get("rank_pattern") or config.get("alpha_pattern"):
        why = "it gives layers their own rank or alpha (rank_pattern/alpha_pattern)"
    elif config.get("fan_in_fan_out"):
        why = "its matrices are stored transposed (fan_in_fan_out, GPT-2 style)"
    if why:
        raise VkharpError(f"adapter {path} cannot be loaded: {why}; merge it into the model with PEFT "
                          f"(merge_and_unload, save_pretrained) and convert that with `vkharp convert`")


def _peft_targets(config: dict, dims: dict, layers: int) -> list[str]:
    """The targets a PEFT config adapts in at least one layer."""
    return [t for t in TARGETS if t in dims and any(_peft_adapts(config, t, i) for i in range(layers))]


def _peft_adapts(config: dict, target: str, layer: int) -> bool:
    """Whether PEFT puts a LoRA on this layer's target, matching as PEFT matches: 'all-linear', a
    regular expression over the whole module path, or names that equal the path or end it
    ('q_proj', 'model.layers.0.self_attn.q_proj'); then layers_to_transform."""
    import re
    path = f"model.layers.{layer}.{target}"
    modules = config.get("target_modules") or []
    if modules == "all-linear":
        hit = True
    elif isinstance(modules, str):
        hit = re.fullmatch(modules, path) is not None
    else:
        hit = any(path == m or path.endswith("." + m) for m in modules)
    only = config.get("layers_to_transform")
    return hit and (only is None or layer in ([only] if isinstance(only, int) else only))


def peft_name(layer: int, target: str, ab: str) -> str:
    return f"{PEFT_PREFIX}.{layer}.{target}.lora_{ab}.weight"


def _fingerprint(model) -> str:
    from ..model import weights_fingerprint
    return weights_fingerprint(model.path)
