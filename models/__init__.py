"""Model declarations: one config dataclass (HF field names) and one Architecture per model family."""
from engine.errors import VkharpError

from .base import Architecture
from .config import ModelConfig
from .gemma2 import GEMMA2
from .gemma3 import GEMMA3
from .llama import LLAMA, MISTRAL
from .local1d import LOCAL1D
from .phi3 import PHI3
from .qwen2 import QWEN2
from .qwen3 import QWEN3
from .smollm3 import SMOLLM3

# HF model_type → architecture (near-identical families share one).
ARCHITECTURES: dict[str, Architecture] = {
    "llama": LLAMA,
    "mistral": MISTRAL,
    "qwen2": QWEN2,
    "qwen3": QWEN3,
    "phi3": PHI3,
    "smollm3": SMOLLM3,
    "gemma2": GEMMA2,
    "gemma3_text": GEMMA3,
    "gemma3": GEMMA3,
    "vkharp_local1d": LOCAL1D,
}


def get_architecture(model_type: str) -> Architecture:
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise VkharpError(f"unsupported model_type {model_type!r}; supported: "
                          f"{', '.join(sorted(ARCHITECTURES))}") from None


__all__ = ["ARCHITECTURES", "Architecture", "ModelConfig", "get_architecture"]
