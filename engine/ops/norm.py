"""Launchers for shaders/norm.comp (RMSNorm, LayerNorm)."""
from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError


def _rows_dim(x: Buffer, weight: Buffer, out: Buffer, layer: int):
    """Rows and width of x; the weight is f32[DIM] or layer-stacked f32[L, DIM] (`layer` picks one)."""
    dim = x.shape[-1]
    rows = x.size // dim
    if weight.size % dim or out.size != x.size:
        raise VkharpError(f"norm: x {x.shape}, weight {weight.shape}, out {out.shape} do not agree")
    if not 0 <= layer < weight.size // dim:
        raise VkharpError(f"norm: layer {layer} is not in the weight's {weight.size // dim} stacked layers")
    return rows, dim


def rmsnorm(rec: Recorder, out: Buffer, x: Buffer, weight: Buffer, *, eps: float, layer: int = 0, wg: int = 64):
    rows, dim = _rows_dim(x, weight, out, layer)
    rec.dispatch("rmsnorm", [out, x, weight], grid1d(rec.device, rows, 1),
                 {"WG": wg, "DIM": dim, "ROWS": rows, "EPS": eps}, {"woff": layer * dim})


def layernorm(rec: Recorder, out: Buffer, x: Buffer, weight: Buffer, bias: Buffer, *, eps: float, layer: int = 0,
              wg: int = 64):
    rows, dim = _rows_dim(x, weight, out, layer)
    rec.dispatch("layernorm", [out, x, weight, bias], grid1d(rec.device, rows, 1),
                 {"WG": wg, "DIM": dim, "ROWS": rows, "EPS": eps}, {"woff": layer * dim})
