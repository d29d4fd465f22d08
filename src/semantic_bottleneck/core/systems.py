"""The conditioning vector of the appendix systems (U-ViT, X-MDPT, MDSGen, SD3, AudioLDM).

In the XL class models c = t_embedder(t) + y_embedder(y) is fixed by five tensors. In these
systems the condition is an input (a pose and a source image, video features, a prompt) or enters
as a token, so c is measured over a set of N conditions (test samples, prompts or classes) at one
t. Each system's module in `zoo` computes the two parts at that t:

    T: (N, d_t) (or (1, d_t), the same for every condition)   the time part
    Y: (N, d_y)                                                 the condition part

and says how the model combines them: `"sum"` (c = T + Y, d_t = d_y; X-MDPT, MDSGen, SD3's temb,
and U-ViT's second reading) or `"concat"` (c = [T; Y]; AudioLDM's UNet, U-ViT's token pair).
`SystemC` holds them and answers what the tables ask of a model (`core.analysis`): c, the
condition part alone ("y alone" of Tables 4 and 5), d and the t it was taken at.
`core.appendix` loads them from the weights cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

COMBINE = ("sum", "concat")


def combine(time: Tensor, cond: Tensor, how: str) -> Tensor:
    """c from its two parts: T + Y ("sum") or [T; Y] along the features ("concat").

    Shapes: time (N, d_t) or (1, d_t), cond (N, d_y) -> (N, d) with d = d_y ("sum", d_t = d_y)
    or d_t + d_y ("concat").
    """
    if how not in COMBINE:
        raise ValueError(f"combine: expected one of {COMBINE}, got {how!r}")
    if time.ndim != 2 or cond.ndim != 2 or time.shape[0] not in (1, cond.shape[0]):
        raise ValueError(
            f"expected time (N, d_t) or (1, d_t) and cond (N, d_y), got {tuple(time.shape)} "
            f"and {tuple(cond.shape)}"
        )
    if how == "sum":
        if time.shape[1] != cond.shape[1]:
            raise ValueError(f"sum needs d_t = d_y, got {time.shape[1]} and {cond.shape[1]}")
        return time + cond
    return torch.cat([time.expand(cond.shape[0], -1), cond], dim=1)


@dataclass
class SystemC:
    """c of one appendix system over N conditions at one t.

    Attributes:
        name: registry name of the checkpoint (or a testbed name).
        label: display name, the paper's where it has one (e.g. 'X-MDPT-L').
        time: T, float32 (N, d_t) or (1, d_t).
        cond: Y, float32 (N, d_y).
        how: "sum" or "concat" (see `combine`).
        t: the t fed to the time embedder, in the model's own convention.
        conditions: what the N conditions are (e.g. '200 DeepFashion test pairs').
        source: where the weights and the condition inputs came from.
        family: the zoo module of the system (registry `system`).
        continuous: whether the conditions are inputs (a pose, a clip, a prompt) rather than
            class labels (U-ViT's).
    """

    name: str
    label: str
    time: Tensor = field(repr=False)
    cond: Tensor = field(repr=False)
    how: str
    t: float
    conditions: str
    source: str = ""
    family: str = ""
    continuous: bool = True

    def __post_init__(self):
        combine(self.time, self.cond, self.how)  # checks the shapes and `how` now

    @property
    def d(self) -> int:
        return self.cond.shape[1] + (self.time.shape[1] if self.how == "concat" else 0)

    @property
    def num_classes(self) -> int:
        """N, the number of conditions (the tables call them classes)."""
        return self.cond.shape[0]

    @property
    def initial_t(self) -> float:
        return self.t

    def c(self) -> Tensor:
        """c for every condition. Shapes: -> (N, d)."""
        return combine(self.time.float(), self.cond.float(), self.how)

    def label_only(self) -> Tensor:
        """Y alone, the condition's embedding (Tables 4 and 5, "y alone"). Shapes: -> (N, d_y)."""
        return self.cond.float()


def readings_from_cosine(
    time: Tensor, cosine: float, n: int = 1000, seed: int = 0
) -> dict[str, Tensor]:
    """c of both readings of a token pair (U-ViT's time and label tokens) for label tokens
    drawn isotropic, with the norm at which the mean cosine of c across labels equals `cosine`.

    A label table whose rows are nearly orthogonal and Gaussian (the paper's U-ViT "y alone":
    cosine 0.00165, nPR 63.52%, close to an i.i.d. Gaussian's 0 and 2/pi) adds to the cosine of
    either reading only through its norm r: cos(c_y, c_y') ~ |T|^2 / (|T|^2 + r^2), so r follows
    from the cosine, while the nPR of the two readings differs. This tells which reading a
    printed (cosine, nPR) pair comes from without the weights.

    Args:
        time: T, (1, D), the exact time token at the model's t.
        cosine: the mean cosine of c across labels to match, in (0, 1).
        n: labels drawn.
        seed: seed of the draw.

    Returns:
        {"concat": (n, 2D), "sum": (n, D)}.
    """
    if not 0 < cosine < 1:
        raise ValueError(f"cosine: expected a value in (0, 1), got {cosine}")
    d = time.shape[1]
    r2 = float((time.double() ** 2).sum()) * (1 / cosine - 1)
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(n, d, generator=g, dtype=torch.float64) * (r2 / d) ** 0.5
    return {how: combine(time.double(), cond, how).float() for how in COMBINE}
