"""Model declarations: one config dataclass (HF field names) and one Architecture per model family."""
from engine.errors import VkharpError

from .base import Architecture
from .config import ModelConfig
from .gemma3 import GEMMA3
from .llama import LLAMA, MISTRAL
from .qwen2 import QWEN2

# HF model_type → architecture (near-identical families share one).
ARCHITECTURES: dict[str, Architecture] = {
    "llama": LLAMA,
    "mistral": MISTRAL,
    "qwen2": QWEN2,
    "gemma3_text": GEMMA3,
    "gemma3": GEMMA3,
}


def get_architecture(model_type: str) -> Architecture:
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise VkharpError(f"unsupported model_type {model_type!r}; supported: "
                          f"{', '.join(sorted(ARCHITECTURES))}") from None


__all__ = ["ARCHITECTURES", "Architecture", "ModelConfig", "get_architecture"]
