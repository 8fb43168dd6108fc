"""The Mamba mixer (Gu & Dao, 2023) with the parameter names and shapes of mamba-ssm's ``Mamba``."""

import difflib
import inspect
import math

import torch
from torch import nn

from .conv import causal_conv1d
from .scan import selective_scan


DT_INITS = ("random", "constant")


class Mamba(nn.Module):
    """Selective state-space mixer.

    Args:
        d_model: width of the input and output.
        d_state: state size per channel (N).
        d_conv: width of the causal depthwise convolution.
        expand: d_inner = expand * d_model.
        dt_rank: rank of the step-size projection; "auto" = ceil(d_model / 16).
        dt_min, dt_max, dt_init_floor, dt_scale: step-size initialisation (Mamba's).
        dt_init: "random" (uniform dt_proj weight, Mamba's default) or "constant".
        conv_bias, bias: biases of the convolution and of in_proj/out_proj.
        use_fast_path: accepted for mamba-ssm compatibility (released ssm_cfg have it) and ignored:
            ``scan_backend`` chooses the kernel.
        scan_backend: see ``grelu_caduceus.core.scan.BACKENDS``; "auto" picks the fastest available.

    Shapes: input (B, L, d_model) -> output (B, L, d_model).

    Raises:
        TypeError: an option that is none of the above (named, with the closest valid one).
        ValueError: an unknown ``dt_init``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank="auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_fast_path: bool = True,
        scan_backend: str = "auto",
        device=None,
        dtype=None,
        **unknown,
    ):
        if unknown:  # a typo in ssm_cfg must not silently fall back to a default
            raise TypeError(unknown_options_message("Mamba", unknown, MAMBA_OPTIONS))
        if dt_init not in DT_INITS:
            raise ValueError(f"Unknown dt_init {dt_init!r}{_closest(dt_init, DT_INITS)}; choose one of "
                             f"{', '.join(map(repr, DT_INITS))}.")
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend = scan_backend

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **kw)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias, **kw
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **kw)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **kw)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state, device=device, dtype=torch.float32))
        self.D = nn.Parameter(torch.empty(self.d_inner, device=device, dtype=torch.float32))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **kw)
        self.out_proj._is_out_proj = True  # rescaled by 1/sqrt(n_layer) at init, as in Mamba
        for p in (self.A_log, self.D, self.dt_proj.bias):
            p._no_weight_decay = True
        self._init_ssm(dt_min, dt_max, dt_init, dt_scale, dt_init_floor)

    @torch.no_grad()
    def _init_ssm(self, dt_min, dt_max, dt_init, dt_scale, dt_init_floor):
        """Mamba's initialisation: S4D-real A, unit D, softplus(dt bias) log-uniform in [dt_min, dt_max]."""
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.dt_proj.bias._no_reinit = True
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log.copy_(torch.log(A))
        self.D.fill_(1.0)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (B, L, d_model) -> (B, L, d_model).

        Computed channels-last, (B, L, channels), the layout the linear layers produce; the scan
        receives (B, channels, L) transposed views, which the CPU and GPU kernels read in place.
        """
        return self.out_proj(self.mix(self.in_proj(hidden)))

    def mix(self, xz: torch.Tensor, reverse: bool = False, add_to: torch.Tensor | None = None,
            conv_out: torch.Tensor | None = None) -> torch.Tensor:
        """Everything between in_proj and out_proj: (B, L, 2 * d_inner) -> gated y (B, L, d_inner).
        ``xz`` may also be the pair (x, z) of its halves.

        ``reverse=True`` runs the mixer over the reversed sequence, i.e. it returns
        ``flip(mix(flip(xz)))`` along L, with the convolution and the scan run backwards in place:
        no flipped copies. Since in_proj and out_proj act per position,
        ``flip(self(flip(u))) == out_proj(mix(in_proj(u), reverse=True))``.

        ``add_to`` (B, L, d_inner), optional: returns ``add_to + mix(xz)``, added in place into
        ``add_to`` by the CPU scan when no autograd graph is recorded (see ``selective_scan``).
        The step-size projection dt_proj (without its bias) is passed to the scan as ``delta_proj``
        (the CPU kernels apply it themselves; the other backends form ``dt_proj(dt)`` first).
        ``conv_out`` (B, L, d_inner), optional, inference: a buffer for the convolution's output,
        which the CPU scan then overwrites with its own output (the result may be ``conv_out``).
        """
        x, z = xz if isinstance(xz, tuple) else xz.chunk(2, dim=-1)  # (B, L, d_inner) each
        x = causal_conv1d(x, self.conv1d.weight, self.conv1d.bias, activation="silu", reverse=reverse, out=conv_out)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        y = selective_scan(
            x.transpose(1, 2), dt.transpose(1, 2), -torch.exp(self.A_log.float()),
            B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z.transpose(1, 2),
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True, backend=self.scan_backend,
            reverse=reverse, delta_proj=self.dt_proj.weight,
            add_to=None if add_to is None else add_to.transpose(1, 2), overwrite_u=True,  # x is ours
        )
        return y.transpose(1, 2)


# Keyword options of Mamba (besides d_model, device and dtype), for error messages and ssm_cfg checks.
MAMBA_OPTIONS = tuple(
    name for name, p in inspect.signature(Mamba.__init__).parameters.items()
    if p.kind is p.POSITIONAL_OR_KEYWORD and name not in ("self", "d_model", "device", "dtype")
)


def _closest(name, valid) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or ''."""
    match = difflib.get_close_matches(str(name), list(valid), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown_options_message(owner: str, unknown, valid) -> str:
    """One line naming each unknown option, the closest valid one, and every valid option."""
    named = ", ".join(f"{k!r}{_closest(k, valid)}" for k in sorted(unknown))
    return f"{owner} got unknown option(s) {named}; valid options: {', '.join(valid)}."


def cast_keeping_ssm_float32(module: nn.Module, device=None, dtype=None) -> nn.Module:
    """``module.to(device, dtype)``, except that every Mamba's ``A_log`` and ``D`` stay float32.

    As in mamba-ssm, which keeps them in float32 under bf16/fp16 weights: the scan's decay
    ``exp(dt * A)`` is sensitive to their precision. With ``dtype=torch.float64`` they become float64
    too (never less precise than the rest). ``dtype=None`` moves the module without casting it.

    Returns:
        ``module``, changed in place.
    """
    if dtype is None:
        return module.to(device=device)
    module.to(device=device, dtype=dtype)
    ssm_dtype = torch.promote_types(dtype, torch.float32)
    for m in module.modules():
        if isinstance(m, Mamba):
            for p in (m.A_log, m.D):
                p.data = p.data.to(ssm_dtype)
    return module
