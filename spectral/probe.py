"""Probe sets: run a configured list of measurements on one network and return flat floats.

``probe(module, loss_fn, layers=..., inputs=..., metrics=...)`` returns
``{metric_name: float}`` with stable names:

======================  ==========================================================
group (``metrics``)     keys it adds
======================  ==========================================================
``hessian_top``         ``hessian/top_1`` … ``top_k`` (descending)
``hessian_bottom``      ``hessian/bottom_1`` … ``bottom_k`` (ascending: bottom_1 = min)
``layer_hessian_top``   ``hessian/<layer>/top_1`` … (diagonal Hessian block of each layer)
``hessian_density``     ``hessian/eps_rank`` (node sum at ``eps``), ``eps_rank_std`` (over
                        SLQ probes), ``eps_rank_grid`` (paper's smoothed-density trapezoid
                        at ``eps``), ``eps_rank_paper/rel<r>`` and ``eps_rank_nodes/rel<r>``
                        (the two estimators at ε = r·max|λ| for each r of ``eps_sweep``),
                        ``eps_resolution`` / ``eps_resolution_nodes`` (smallest ε the paper's
                        estimator / the node sum resolves; ``_rel``: as a fraction of
                        max|λ|), ``neg_mass``, ``effective_rank`` (fraction of dim),
                        ``slq_min``, ``slq_max``. Every ε-rank ``K`` has ``K_censored``:
                        1.0 when its ε is below its estimator's resolution, and then ``K``
                        is the ε-rank at the resolution (a lower bound), never NaN.
``ggn_density``         ``ggn/...``: the same keys for the generalised Gauss-Newton matrix
                        (needs ``ggn``; PSD, so ``slq_min`` >= 0 up to rounding)
``hessian_eps_count``   ``hessian/eps_count/rel<r>`` (number of eigenvalues with |λ| >
                        r·max|λ|, from converged Lanczos Ritz values, both ends; see
                        :mod:`spectral.eps_count`), ``hessian/eps_count_fraction/rel<r>``
                        (÷ parameter count: the exact normalised ε-rank), each with a
                        ``_censored`` companion (1.0: not closed within ``eps_count_iters``
                        steps, the value is a lower bound), for each r of ``eps_sweep``;
                        ``hessian/eps_count_steps`` (Lanczos steps used)
``ggn_eps_count``       ``ggn/eps_count/...``: the same for the Gauss-Newton matrix (needs ``ggn``)
``hessian_trace``       ``hessian/trace``, ``hessian/trace_stderr``
``features``            ``features/<layer>/{effective_rank, srank, feature_rank,
                        numerical_rank, dormant_fraction, dead_fraction, zero_fraction,
                        feature_norm, preactivation_norm}``, and ``saturated_fraction``
                        for a tanh layer (``ProbeConfig.saturation_bound``)
``gradient``            ``grad/norm``, ``grad/zero_fraction``
``weights``             ``weights/norm``
``distance_from_init``  ``weights/distance_from_init`` (needs ``init_params``)
``one_step_gain``       ``opt/one_step_gain`` (needs ``eval_loss_fn``)
======================  ==========================================================

Every group also reports ``time/<group>`` (seconds); ``time/hessian_setup`` is the one
forward/backward that builds the gradient graph all Hessian groups share, and
``time/total`` the whole call. See :func:`list_metrics`.

Randomness: each group draws from its own generator seeded from ``generator`` (one draw)
and the group's name, so a group's values do not depend on which other groups run. The
global RNG is never consumed. Side effects: none (see :mod:`spectral.state`).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from spectral import features as feature_stats
from spectral.capture import FeatureCapture, Layers, resolve_layers
from spectral.density import (
    SpectralDensity,
    censored_epsilon_rank,
    epsilon_rank_per_probe,
    epsilon_resolution,
    hessian_effective_rank,
    negative_mass,
    spectral_radius,
    stochastic_lanczos_quadrature,
)
from spectral.eigen import EigenResult, lanczos_eigenvalues
from spectral.eps_count import EpsCount, epsilon_counts
from spectral.errors import SpectralError
from spectral.hvp import CurvatureOperator, GGNOperator, HessianOperator, OutputLoss
from spectral.layers import layer_parameters
from spectral.optim_stats import (
    distance_from_init,
    gradient_stats,
    gradient_stats_of,
    one_step_gain,
    weight_norm,
)
from spectral.params import LossFn, as_parameter_list
from spectral.state import preserved_state
from spectral.trace import TRACE_METHODS, operator_trace

GGNSpec = tuple[Callable[[], Tensor], OutputLoss]
"""``(output_fn, output_loss)``: what :class:`~spectral.hvp.GGNOperator` needs."""


@dataclass(frozen=True)
class ProbeConfig:
    """Knobs of the probe groups (defaults are the cheap settings for probing every shift).

    Attributes:
        top_k: eigenvalues per end (``hessian_top``/``hessian_bottom``/``layer_hessian_top``).
        lanczos_iters: Lanczos step cap for those. 30 steps (stopping earlier at
            ``lanczos_tol``) resolve the top-5 of the 4-120-84-2 DQN network to ~1e-3 or
            better (benchmarks/probes.py); raise it, or set ``lanczos_tol=0``, for exact values.
        lanczos_tol: relative residual tolerance for early stopping.
        slq_iters, slq_probes: SLQ Lanczos steps per probe vector, number of probe vectors
            (paper: 100 and 1; several probes give ``eps_rank_std``).
        eps_count_iters, eps_count_tol: step cap (operator products) and relative residual
            tolerance of the exact ε-counts (``hessian_eps_count``); 200 products are the
            cost of an SLQ row at 100 steps × 2 probes.
        eps, eps_relative: ε-rank threshold, absolute or as a fraction of ``max|λ|``.
        eps_sweep: relative thresholds (fractions of ``max|λ|``, in (0, 1]) at which both
            ε-rank estimators are reported, so that networks whose curvature scales differ
            by orders of magnitude are compared at the same relative ε.
        trace_samples, trace_method: product budget and estimator of ``hessian_trace``.
        srank_threshold, feature_rank_eps, dormant_tau: feature-statistic parameters.
        saturation_bound: a tanh unit is saturated on a batch when its ``|pre-activation|``
            exceeds this on every sample (``spectral.saturated_fraction``; default 3:
            ``tanh' < 0.0099`` there, under 1% of its gradient at 0).
        one_step_lr: step size of ``one_step_gain``.
        dtype: precision of the Lanczos/trace recurrences (float64 also for float32 models).
    """

    top_k: int = 5
    lanczos_iters: int = 30
    lanczos_tol: float = 1e-3
    slq_iters: int = 100
    slq_probes: int = 4
    eps_count_iters: int = 200
    eps_count_tol: float = 1e-2
    eps: float = 0.01
    eps_relative: bool = False
    eps_sweep: tuple[float, ...] = (0.001, 0.01, 0.03, 0.1)
    trace_samples: int = 60
    trace_method: str = "hutch++"
    srank_threshold: float = 0.99
    feature_rank_eps: float = 0.01
    dormant_tau: float = 0.025
    saturation_bound: float = 3.0
    one_step_lr: float = 1e-3
    dtype: torch.dtype = field(default=torch.float64)

    def __post_init__(self) -> None:
        for name in ("top_k", "lanczos_iters", "slq_iters", "slq_probes", "trace_samples",
                     "eps_count_iters"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SpectralError(f"ProbeConfig.{name} must be a positive integer, got {value!r}")
        for name in ("eps", "lanczos_tol", "feature_rank_eps", "dormant_tau", "saturation_bound"):
            if getattr(self, name) < 0:
                raise SpectralError(f"ProbeConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.trace_method not in TRACE_METHODS:
            raise SpectralError(
                f"unknown trace_method {self.trace_method!r}; valid choices: {', '.join(TRACE_METHODS)}"
            )
        if not self.eps_count_tol > 0:
            raise SpectralError(f"ProbeConfig.eps_count_tol must be > 0, got {self.eps_count_tol!r}")
        if not self.one_step_lr > 0:
            raise SpectralError(f"ProbeConfig.one_step_lr must be > 0, got {self.one_step_lr!r}")
        sweep = self.eps_sweep
        if isinstance(sweep, (int, float)) or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r <= 1 for r in sweep
        ):
            raise SpectralError(
                f"ProbeConfig.eps_sweep must be a list of fractions of max|λ| in (0, 1], "
                f"got {sweep!r}"
            )
        object.__setattr__(self, "eps_sweep", tuple(float(r) for r in sweep))  # TOML lists


class _Context:
    """What one probe call measures, with the shared pieces computed lazily once."""

    def __init__(
        self,
        module: nn.Module,
        loss_fn: LossFn,
        params: list[Tensor],
        config: ProbeConfig,
        base_seed: int,
        layers: dict[str, nn.Module] | None,
        inputs: Tensor | None,
        param_layers: dict[str, list[Tensor]] | None,
        eval_loss_fn: LossFn | None,
        init_params: Sequence[Tensor] | None,
        ggn: GGNSpec | None,
        wanted: Sequence[str],
    ) -> None:
        self.module, self.loss_fn, self.params, self.config = module, loss_fn, params, config
        self.base_seed, self.layers, self.inputs = base_seed, layers, inputs
        self.param_layers, self.eval_loss_fn, self.init_params = (
            param_layers,
            eval_loss_fn,
            init_params,
        )
        self.ggn = ggn
        self.wanted = wanted
        self.times: dict[str, float] = {}
        self._operator: HessianOperator | None = None
        self._extremes: tuple[str, EigenResult] | None = None

    def generator(self, group: str) -> torch.Generator:
        return torch.Generator().manual_seed(self.base_seed + zlib.crc32(group.encode()))

    @property
    def operator(self) -> HessianOperator:
        if self._operator is None:
            start = time.perf_counter()
            self._operator = HessianOperator(self.loss_fn, self.params)
            self.times["hessian_setup"] = time.perf_counter() - start
        return self._operator

    def eigenvalues(
        self, which: str, operator: HessianOperator | None = None, group: str = "hessian_extremes"
    ) -> EigenResult:
        op = operator or self.operator
        k = min(self.config.top_k, op.dim // 2 if which == "both" else op.dim)
        if k < 1:  # a 1-parameter block has no "both ends"
            which, k = "largest", 1
        return lanczos_eigenvalues(
            op,
            k,
            which,
            max_iters=max(self.config.lanczos_iters, 2 * k),
            tol=self.config.lanczos_tol,
            generator=self.generator(group),
            dtype=self.config.dtype,
        )

    def extremes(self) -> tuple[np.ndarray, np.ndarray]:
        """(bottom ascending, top descending), from one Lanczos run if both are wanted."""
        if self._extremes is None:
            wanted_both = "hessian_top" in self.wanted and "hessian_bottom" in self.wanted
            if wanted_both and self.operator.dim >= 2:
                which = "both"
            else:
                which = "largest" if "hessian_top" in self.wanted else "smallest"
            self._extremes = (which, self.eigenvalues(which))
        which, result = self._extremes
        r = result.eigenvalues
        if which == "both":
            half = len(r) // 2
            return r[:half], r[half:][::-1]
        return (r[::-1], r) if which == "largest" else (r, r[::-1])


def _hessian_top(ctx: _Context) -> dict[str, float]:
    _, top = ctx.extremes()
    return {f"hessian/top_{i + 1}": float(v) for i, v in enumerate(top)}


def _hessian_bottom(ctx: _Context) -> dict[str, float]:
    bottom, _ = ctx.extremes()
    return {f"hessian/bottom_{i + 1}": float(v) for i, v in enumerate(bottom)}


def _layer_hessian_top(ctx: _Context) -> dict[str, float]:
    out = {}
    for name, params in _require(ctx.param_layers, "layer_hessian_top", "param_layers").items():
        result = ctx.eigenvalues(
            "largest", ctx.operator.block(params), group=f"layer_hessian_top/{name}"
        )
        out.update(
            {f"hessian/{name}/top_{i + 1}": float(v) for i, v in enumerate(result.eigenvalues)}
        )
    return out


def density_summary(prefix: str, density: SpectralDensity, config: ProbeConfig) -> dict[str, float]:
    """The ``hessian_density`` keys of one SLQ density, under ``prefix`` (see module docstring).

    Each ε-rank ``K`` comes with ``K_censored``: 1.0 when its ε is below the estimator's
    :func:`~spectral.density.epsilon_resolution`, and then ``K`` is the ε-rank at the
    resolution, a lower bound (:func:`~spectral.density.censored_epsilon_rank`); never NaN.
    """
    cfg, nan = config, float("nan")
    radius = spectral_radius(density)
    resolution = {m: epsilon_resolution(density, method=m) for m in ("grid", "nodes")}
    threshold = cfg.eps * radius if cfg.eps_relative else cfg.eps
    nodes_censored = threshold < resolution["nodes"]
    per_probe = epsilon_rank_per_probe(density, max(threshold, resolution["nodes"]))
    out: dict[str, float] = {}

    def put(key: str, value: tuple[float, bool]) -> None:
        out[key], out[f"{key}_censored"] = value[0], float(value[1])

    put(f"{prefix}/eps_rank", (float(per_probe.mean()), nodes_censored))
    out[f"{prefix}/eps_rank_std"] = float(per_probe.std(ddof=1)) if len(per_probe) > 1 else nan
    put(f"{prefix}/eps_rank_grid",
        censored_epsilon_rank(density, cfg.eps, relative=cfg.eps_relative, method="grid"))
    for suffix, method in (("", "grid"), ("_nodes", "nodes")):
        out[f"{prefix}/eps_resolution{suffix}"] = resolution[method]
        out[f"{prefix}/eps_resolution{suffix}_rel"] = (
            resolution[method] / radius if radius > 0 else nan
        )
    for r in cfg.eps_sweep:
        for name, method in (("paper", "grid"), ("nodes", "nodes")):
            put(f"{prefix}/eps_rank_{name}/rel{r:g}",
                censored_epsilon_rank(density, r, relative=True, method=method))
    out[f"{prefix}/neg_mass"] = negative_mass(density)
    out[f"{prefix}/effective_rank"] = hessian_effective_rank(density)
    out[f"{prefix}/slq_min"] = float(min(n.min() for n in density.nodes))
    out[f"{prefix}/slq_max"] = float(max(n.max() for n in density.nodes))
    return out


def _slq(ctx: _Context, operator: CurvatureOperator, group: str) -> SpectralDensity:
    cfg = ctx.config
    return stochastic_lanczos_quadrature(
        operator,
        cfg.slq_iters,
        cfg.slq_probes,
        generator=ctx.generator(group),
        dtype=cfg.dtype,
    )


def _hessian_density(ctx: _Context) -> dict[str, float]:
    density = _slq(ctx, ctx.operator, "hessian_density")
    return density_summary("hessian", density, ctx.config)


def _ggn_density(ctx: _Context) -> dict[str, float]:
    output_fn, output_loss = _require(ctx.ggn, "ggn_density", "ggn")
    operator = GGNOperator(output_fn, ctx.params, loss=output_loss)
    return density_summary("ggn", _slq(ctx, operator, "ggn_density"), ctx.config)


def eps_count_summary(prefix: str, counts: EpsCount) -> dict[str, float]:
    """The ``hessian_eps_count`` keys of one :class:`~spectral.eps_count.EpsCount`."""
    out: dict[str, float] = {}
    for r, count, fraction, censored in zip(
        counts.rels, counts.counts, counts.fractions(), counts.censored, strict=True
    ):
        flag = float(censored)
        out[f"{prefix}/eps_count/rel{r:g}"] = float(count)
        out[f"{prefix}/eps_count/rel{r:g}_censored"] = flag
        out[f"{prefix}/eps_count_fraction/rel{r:g}"] = fraction
        out[f"{prefix}/eps_count_fraction/rel{r:g}_censored"] = flag
    out[f"{prefix}/eps_count_steps"] = float(counts.num_iters)
    return out


def _eps_count(ctx: _Context, operator: CurvatureOperator, group: str) -> EpsCount:
    cfg = ctx.config
    return epsilon_counts(
        operator,
        cfg.eps_sweep,
        max_iters=cfg.eps_count_iters,
        tol=cfg.eps_count_tol,
        generator=ctx.generator(group),
        dtype=cfg.dtype,
    )


def _hessian_eps_count(ctx: _Context) -> dict[str, float]:
    return eps_count_summary("hessian", _eps_count(ctx, ctx.operator, "hessian_eps_count"))


def _ggn_eps_count(ctx: _Context) -> dict[str, float]:
    output_fn, output_loss = _require(ctx.ggn, "ggn_eps_count", "ggn")
    operator = GGNOperator(output_fn, ctx.params, loss=output_loss)
    return eps_count_summary("ggn", _eps_count(ctx, operator, "ggn_eps_count"))


def _hessian_trace(ctx: _Context) -> dict[str, float]:
    cfg = ctx.config
    est = operator_trace(
        ctx.operator,
        cfg.trace_samples,
        cfg.trace_method,
        generator=ctx.generator("hessian_trace"),
        dtype=cfg.dtype,
    )
    return {"hessian/trace": est.trace, "hessian/trace_stderr": est.std_error}


def _features(ctx: _Context) -> dict[str, float]:
    layers = _require(ctx.layers, "features", "layers")
    inputs = _require(ctx.inputs, "features", "inputs")
    with FeatureCapture(layers) as cap, torch.no_grad():
        ctx.module(inputs)
    cfg, out = ctx.config, {}
    # Looked up on the module at call time: mitigations (ER, ReDo) call the same functions,
    # so a change there changes what both see (tested).
    f = feature_stats
    for name in layers:
        if name not in cap.outputs:
            raise SpectralError(f"layer {name!r} was not called in the forward pass of the module")
        phi = cap.outputs[name]
        units = phi.shape[1] // f.features_per_unit(layers[name])
        prefix = f"features/{name}/"
        out[prefix + "effective_rank"] = float(f.effective_rank(phi))
        out[prefix + "srank"] = float(f.srank(phi, cfg.srank_threshold))
        out[prefix + "feature_rank"] = float(f.feature_rank(phi, cfg.feature_rank_eps))
        out[prefix + "numerical_rank"] = float(f.numerical_rank(phi))
        out[prefix + "dormant_fraction"] = f.dormant_fraction(phi, cfg.dormant_tau, units)
        out[prefix + "dead_fraction"] = f.dead_fraction(phi, units)
        out[prefix + "zero_fraction"] = f.zero_fraction(phi)
        out[prefix + "feature_norm"] = float(f.feature_norm(phi))
        if name in cap.inputs:
            out[prefix + "preactivation_norm"] = float(f.feature_norm(cap.inputs[name]))
            if isinstance(layers[name], nn.Tanh):
                out[prefix + "saturated_fraction"] = f.saturated_fraction(
                    cap.inputs[name], cfg.saturation_bound)
    return out


def _gradient(ctx: _Context) -> dict[str, float]:
    # Reuse the Hessian groups' gradient when their graph exists; else one backward pass.
    if ctx._operator is not None:
        stats = gradient_stats_of(ctx._operator.gradient)
    else:
        stats = gradient_stats(ctx.loss_fn, ctx.params)
    return {"grad/norm": stats.norm, "grad/zero_fraction": stats.zero_fraction}


def _weights(ctx: _Context) -> dict[str, float]:
    return {"weights/norm": weight_norm(ctx.params)}


def _distance(ctx: _Context) -> dict[str, float]:
    init = _require(ctx.init_params, "distance_from_init", "init_params")
    return {"weights/distance_from_init": distance_from_init(ctx.params, init)}


def _one_step_gain(ctx: _Context) -> dict[str, float]:
    eval_loss_fn = _require(ctx.eval_loss_fn, "one_step_gain", "eval_loss_fn")
    gain = one_step_gain(ctx.loss_fn, ctx.params, ctx.config.one_step_lr, eval_loss_fn)
    # The step and its undo write the parameters in place, which invalidates the shared
    # gradient graph: a Hessian group after this one builds it anew (same values).
    ctx._operator = None
    return {"opt/one_step_gain": gain}


def _require(value, group: str, argument: str):
    if value is None:
        raise SpectralError(f"metric group {group!r} needs the `{argument}` argument of probe()")
    return value


@dataclass(frozen=True)
class _Metric:
    description: str
    run: Callable[[_Context], dict[str, float]]


METRICS: dict[str, _Metric] = {
    "hessian_top": _Metric("top-k Hessian eigenvalues (Lanczos)", _hessian_top),
    "hessian_bottom": _Metric("bottom-k Hessian eigenvalues (Lanczos)", _hessian_bottom),
    "layer_hessian_top": _Metric(
        "top-k eigenvalues of each layer's Hessian block", _layer_hessian_top
    ),
    "hessian_density": _Metric(
        "SLQ Hessian spectrum: eps-rank (node sum, paper's trapezoid; absolute and relative "
        "eps; a censored lower bound below resolution), negative mass, effective rank",
        _hessian_density,
    ),
    "ggn_density": _Metric(
        "the same SLQ summaries for the Gauss-Newton matrix J^T H_L J (needs ggn)",
        _ggn_density,
    ),
    "hessian_eps_count": _Metric(
        "exact eps-counts #{|lambda| > r max|lambda|} from converged Lanczos (both ends), "
        "count and fraction of parameters per r of eps_sweep; censored lower bound at the cap",
        _hessian_eps_count,
    ),
    "ggn_eps_count": _Metric(
        "the same exact eps-counts for the Gauss-Newton matrix (needs ggn)", _ggn_eps_count
    ),
    "hessian_trace": _Metric("Hessian trace (Hutch++ or Hutchinson)", _hessian_trace),
    "features": _Metric("per-layer feature ranks, dormant/dead/zero fractions, norms", _features),
    "gradient": _Metric("gradient L2 norm and fraction of exactly-zero entries", _gradient),
    "weights": _Metric("L2 norm of the parameters", _weights),
    "distance_from_init": _Metric(
        "L2 distance from the initial parameters (needs init_params)", _distance
    ),
    "one_step_gain": _Metric(
        "eval-loss decrease after one SGD step (needs eval_loss_fn)", _one_step_gain
    ),
}

DEFAULT_METRICS: tuple[str, ...] = ("hessian_top", "features", "gradient", "weights")
"""Cheap set for probing around every shift: one Lanczos run of ≤ 30 steps, one forward."""

FULL_METRICS: tuple[str, ...] = DEFAULT_METRICS + (
    "hessian_bottom",
    "hessian_density",
    "hessian_trace",
)
"""Adds the bottom of the spectrum, the SLQ density (ε-rank) and the trace."""


def list_metrics() -> dict[str, str]:
    """``{group name: description}`` of every metric group ``probe`` accepts."""
    return {name: m.description for name, m in METRICS.items()}


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise SpectralError(f"unknown metric(s) {unknown}; valid choices: {', '.join(METRICS)}")
    return tuple(dict.fromkeys(metrics))


class ProbeSet:
    """A reusable, validated probe configuration: ``ProbeSet(metrics, config)(module, ...)``."""

    def __init__(
        self, metrics: Sequence[str] = DEFAULT_METRICS, config: ProbeConfig | None = None
    ) -> None:
        self.metrics = _check_metrics(metrics)
        self.config = config or ProbeConfig()

    def __call__(
        self,
        module: nn.Module,
        loss_fn: LossFn,
        *,
        layers: Layers | None = None,
        inputs: Tensor | None = None,
        generator: torch.Generator | None = None,
        params: Sequence[Tensor] | None = None,
        param_layers: Mapping[str, nn.Module | Sequence[Tensor]] | None = None,
        eval_loss_fn: LossFn | None = None,
        init_params: Sequence[Tensor] | None = None,
        ggn: GGNSpec | None = None,
    ) -> dict[str, float]:
        """Run the groups on ``module`` and return ``{metric: float}`` (see module docstring).

        Args:
            module: the network (its state is left exactly as found).
            loss_fn: ``() -> scalar`` loss on the probe batch (differentiable twice).
            layers: ``{name: submodule}`` or submodule names whose outputs are features.
            inputs: network input for the feature forward pass.
            generator: seeds the probe's randomness (default: seed 0).
            params: parameters for the Hessian/gradient (default: all trainable ones).
            param_layers: ``{name: submodule or parameter list}`` for ``layer_hessian_top``
                (default: every submodule that owns trainable parameters).
            eval_loss_fn: loss on a fresh batch, for ``one_step_gain``.
            init_params: initial parameter values (same order as ``params``).
            ggn: ``(output_fn, output_loss)`` for ``ggn_density``: ``output_fn() -> f(θ)``
                (the network output on the probe batch) and ``output_loss(f) -> scalar``
                (convex in ``f``; :func:`spectral.output_loss` names the usual ones).
        """
        if not isinstance(module, nn.Module):
            raise SpectralError(f"module must be an nn.Module, got {type(module).__name__}")
        start = time.perf_counter()
        plist = as_parameter_list(module if params is None else params)
        resolved_layers = resolve_layers(module, layers) if layers is not None else None
        if param_layers is None:
            blocks = layer_parameters(module) if "layer_hessian_top" in self.metrics else None
        else:
            blocks = {
                name: as_parameter_list(v.parameters() if isinstance(v, nn.Module) else v)
                for name, v in param_layers.items()
            }
        base_seed = (
            0 if generator is None
            else int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        )
        ctx = _Context(
            module,
            loss_fn,
            plist,
            self.config,
            base_seed,
            resolved_layers,
            inputs,
            blocks,
            eval_loss_fn,
            init_params,
            ggn,
            self.metrics,
        )
        results: dict[str, float] = {}
        with preserved_state(module), torch.enable_grad():
            for name in self.metrics:
                t0 = time.perf_counter()
                setup_before = ctx.times.get("hessian_setup", 0.0)
                results.update(METRICS[name].run(ctx))
                # Charge the shared graph construction to hessian_setup, not to this group.
                setup = ctx.times.get("hessian_setup", 0.0) - setup_before
                ctx.times[name] = time.perf_counter() - t0 - setup
        for name, seconds in ctx.times.items():
            results[f"time/{name}"] = seconds
        results["time/total"] = time.perf_counter() - start
        return results


def probe(
    module: nn.Module,
    loss_fn: LossFn,
    *,
    layers: Layers | None = None,
    inputs: Tensor | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    generator: torch.Generator | None = None,
    config: ProbeConfig | None = None,
    params: Sequence[Tensor] | None = None,
    param_layers: Mapping[str, nn.Module | Sequence[Tensor]] | None = None,
    eval_loss_fn: LossFn | None = None,
    init_params: Sequence[Tensor] | None = None,
    ggn: GGNSpec | None = None,
) -> dict[str, float]:
    """One-shot :class:`ProbeSet` call: ``ProbeSet(metrics, config)(module, loss_fn, ...)``."""
    return ProbeSet(metrics, config)(
        module,
        loss_fn,
        layers=layers,
        inputs=inputs,
        generator=generator,
        params=params,
        param_layers=param_layers,
        eval_loss_fn=eval_loss_fn,
        init_params=init_params,
        ggn=ggn,
    )
