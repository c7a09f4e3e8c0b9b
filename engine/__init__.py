"""vkharp's engine. `engine.load(path)` returns a ready Model (see engine.model.load); importing the
package itself stays light (kp and the model code load on first use)."""


def load(path=None, device=None, **kwargs):
    """Load a converted model directory, a HF directory or a GGUF file (converted on first use);
    the default model when `path` is None. Keyword arguments as engine.model.load (ctx, chunk, progress)."""
    from .model import load as _load
    return _load(path, device, **kwargs)
