"""spectral: exact, cheap, side-effect-free measurements of curvature and representations.

A leaf package (torch, numpy, scipy only) that works on any torch model: it sees a module,
a loss closure ``() -> scalar tensor`` and tensors.

Curvature (:mod:`spectral.hvp`, :mod:`spectral.lanczos`, :mod:`spectral.eigen`,
:mod:`spectral.density`, :mod:`spectral.trace`): Hessian / Gauss-Newton products that reuse
one gradient graph, Lanczos with full reorthogonalisation, top/bottom-k eigenvalues, SLQ
spectral density and ε-rank, exact ε-counts from converged Lanczos
(:mod:`spectral.eps_count`), Hutchinson / Hutch++ trace, per-layer blocks.

Representations and optimisation (:mod:`spectral.features`, :mod:`spectral.optim_stats`,
:mod:`spectral.capture`): effective rank, srank, feature rank, numerical rank, ReDo
scores, dormant/dead/zero fractions, feature and pre-activation norms, gradient and weight
norms, distance from init, one-step gain, forward-hook feature capture.

Trainability (:mod:`spectral.trainability`): fit a hook-free copy of a network to fixed
targets for a fixed budget and read the fitting curve (final loss, area under the curve).

Probing (:mod:`spectral.probe`): :func:`probe` / :class:`ProbeSet` run a configured list of
the above and return ``{metric_name: float}`` including each group's time.
"""

from spectral.capture import FeatureCapture, capture_features, resolve_layers
from spectral.density import (
    SpectralDensity,
    censored_epsilon_rank,
    epsilon_rank,
    epsilon_rank_per_probe,
    epsilon_resolution,
    gaussian_smoothing,
    hessian_effective_rank,
    negative_mass,
    spectral_density,
    spectral_radius,
    stochastic_lanczos_quadrature,
)
from spectral.eigen import EigenResult, hessian_eigenvalues, lanczos_eigenvalues
from spectral.eps_count import EpsCount, epsilon_counts
from spectral.errors import SpectralError
from spectral.features import (
    dead_fraction,
    dormant_fraction,
    effective_rank,
    feature_norm,
    feature_rank,
    numerical_rank,
    redo_scores,
    saturated_fraction,
    singular_values,
    srank,
    stable_rank,
    zero_fraction,
)
from spectral.hvp import CurvatureOperator, GGNOperator, HessianOperator, hvp, output_loss
from spectral.lanczos import LanczosIteration, LanczosResult, lanczos
from spectral.layers import layer_parameters, per_layer
from spectral.optim_stats import (
    GradientStats,
    distance_from_init,
    gradient_norm,
    gradient_stats,
    one_step_gain,
    weight_norm,
)
from spectral.probe import (
    DEFAULT_METRICS,
    FULL_METRICS,
    ProbeConfig,
    ProbeSet,
    list_metrics,
    probe,
)
from spectral.state import preserved_state
from spectral.trace import TraceEstimate, hessian_trace, operator_trace
from spectral.trainability import FIT_LOSSES, FitCurve, fit_curve, network_copy, standardized

__all__ = [
    "DEFAULT_METRICS",
    "FIT_LOSSES",
    "FULL_METRICS",
    "CurvatureOperator",
    "EigenResult",
    "EpsCount",
    "FeatureCapture",
    "FitCurve",
    "GGNOperator",
    "GradientStats",
    "HessianOperator",
    "LanczosIteration",
    "LanczosResult",
    "ProbeConfig",
    "ProbeSet",
    "SpectralDensity",
    "SpectralError",
    "TraceEstimate",
    "capture_features",
    "censored_epsilon_rank",
    "dead_fraction",
    "saturated_fraction",
    "distance_from_init",
    "dormant_fraction",
    "effective_rank",
    "epsilon_counts",
    "epsilon_rank",
    "epsilon_rank_per_probe",
    "epsilon_resolution",
    "feature_norm",
    "feature_rank",
    "fit_curve",
    "gaussian_smoothing",
    "gradient_norm",
    "gradient_stats",
    "hessian_effective_rank",
    "hessian_eigenvalues",
    "hessian_trace",
    "hvp",
    "lanczos",
    "lanczos_eigenvalues",
    "layer_parameters",
    "list_metrics",
    "negative_mass",
    "network_copy",
    "numerical_rank",
    "one_step_gain",
    "operator_trace",
    "output_loss",
    "per_layer",
    "preserved_state",
    "probe",
    "redo_scores",
    "resolve_layers",
    "singular_values",
    "spectral_density",
    "spectral_radius",
    "srank",
    "stable_rank",
    "standardized",
    "stochastic_lanczos_quadrature",
    "weight_norm",
    "zero_fraction",
]
