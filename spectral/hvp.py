"""Curvature matrix-vector products: the Hessian ``H`` and the generalised Gauss-Newton ``G``.

Both act on flat vectors (see :mod:`spectral.params`) and never touch ``.grad`` fields.

* :class:`HessianOperator`: ``H v = d/dθ (∇_θ L(θ) · v)``. The first-order gradient graph
  is built once (``create_graph=True``) and each product is one extra backward pass through
  it (``retain_graph=True``), so ``m`` products cost one forward/backward plus ``m``
  double-backwards.
* :class:`GGNOperator`: ``G v = Jᵀ H_L J v`` with ``J = ∂f/∂θ`` the Jacobian of the network
  output ``f`` and ``H_L = ∂²L/∂f²`` the Hessian of the loss w.r.t. the output (PSD for MSE
  and cross-entropy, so ``G`` is PSD). ``J v`` uses the double-backward trick: ``Jᵀu`` is
  linear in a dummy ``u``, so ``∂(Jᵀu · v)/∂u = J v``.

Vectors may have any floating dtype (e.g. float64 for Lanczos on a float32 model): the
input is cast to each parameter's dtype for the product and the result is cast back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from spectral.errors import SpectralError
from spectral.params import (
    LossFn,
    Params,
    as_parameter_list,
    evaluate_scalar_loss,
    flatten,
    num_entries,
    unflatten,
    zeros_for_none,
)


class CurvatureOperator:
    """A symmetric linear operator on the flat parameter space.

    Attributes:
        params: the parameters the curvature is taken with respect to.
        dim: number of scalar parameters (the operator is ``dim × dim``).
        device, dtype: those of the first parameter.
        num_matvecs: products computed so far (for cost accounting).
    """

    def __init__(self, params: Params) -> None:
        self.params = as_parameter_list(params)
        self.dim = num_entries(self.params)
        self.device = self.params[0].device
        self.dtype = self.params[0].dtype
        self.num_matvecs = 0

    def _product(self, vs: list[Tensor]) -> list[Tensor]:
        raise NotImplementedError

    def matvec(self, v: Tensor) -> Tensor:
        """Return ``A v`` for a flat vector ``v`` (result in ``v``'s dtype and device)."""
        out = self._product(unflatten(v, self.params))
        self.num_matvecs += 1
        return flatten(out).to(device=v.device, dtype=v.dtype)

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)

    def to_dense(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """Materialise the ``dim × dim`` matrix column by column (``dim`` products; tests only)."""
        eye = torch.eye(self.dim, dtype=dtype, device=self.device)
        return torch.stack([self.matvec(eye[i]) for i in range(self.dim)], dim=1)


class HessianOperator(CurvatureOperator):
    """Hessian of ``loss_fn()`` w.r.t. ``params``: ``v ↦ ∇²_θ L · v``.

    ``loss_fn`` is called exactly once, here; :attr:`loss` and :attr:`gradient` keep its
    value and flat gradient (reused by the probes for gradient statistics).

    Args:
        loss_fn: ``() -> scalar tensor``, differentiable twice w.r.t. ``params``.
        params: tensors that require grad, or an ``nn.Module`` (its trainable parameters).
    """

    def __init__(self, loss_fn: LossFn, params: Params) -> None:
        super().__init__(params)
        loss = evaluate_scalar_loss(loss_fn)
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        self.loss = loss.detach()
        self._set_graph(list(grads))

    def _set_graph(self, grads: list[Tensor | None]) -> None:
        self._all_grads = grads
        self.gradient = flatten([g.detach() for g in zeros_for_none(grads, self.params)])
        # A gradient entry that does not depend on θ (loss linear in that parameter) has a
        # zero Hessian row; leave it out of the double-backward instead of failing on it.
        self._curved = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        self._grads = [grads[i] for i in self._curved]

    def block(self, params: Sequence[Tensor]) -> HessianOperator:
        """The diagonal block ``∇²_{θ_S} L`` for a subset ``S`` of the parameters.

        Shares this operator's gradient graph (no new forward/backward pass): for
        ``v`` supported on ``S``, ``d/dθ_S (∇_S L · v)`` is the block product.
        """
        index = {id(p): i for i, p in enumerate(self.params)}
        missing = [tuple(p.shape) for p in params if id(p) not in index]
        if missing:
            raise SpectralError(
                f"parameters of shapes {missing} are not among this operator's parameters"
            )
        sub = HessianOperator.__new__(HessianOperator)
        CurvatureOperator.__init__(sub, params)
        sub.loss = self.loss
        sub._set_graph([self._all_grads[index[id(p)]] for p in sub.params])
        return sub

    def _product(self, vs: list[Tensor]) -> list[Tensor]:
        if not self._grads:
            return [torch.zeros_like(p) for p in self.params]
        hv = torch.autograd.grad(
            self._grads,
            self.params,
            grad_outputs=[vs[i] for i in self._curved],
            retain_graph=True,
            allow_unused=True,
        )
        return zeros_for_none(hv, self.params)


OutputLoss = Callable[[Tensor], Tensor]
OUTPUT_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": F.mse_loss,
    "huber": F.huber_loss,
    "cross_entropy": F.cross_entropy,
}


def output_loss(name: str, targets: Tensor) -> OutputLoss:
    """``z ↦ L(z, targets)`` for a named loss with mean reduction (as in ``torch.nn.functional``).

    ``mse``: ``mean((z - y)²)`` over all entries (``H_L = 2I/N``). ``huber``: ``δ = 1``, i.e.
    ``smooth_l1`` (``H_L = 1{|z - y| ≤ 1}/N``: outliers carry no curvature). ``cross_entropy``:
    mean over the batch of ``-log softmax(z)[y]`` (``targets`` are class indices or class
    probabilities); ``H_L = (diag(p) − ppᵀ)/B`` with ``p = softmax(z)`` does not depend on the
    targets, so for a softmax policy (any targets, e.g. ``softmax(z).detach()``) ``G`` is the
    policy's Fisher information matrix on the batch's states, which needs no advantages.
    """
    if name not in OUTPUT_LOSSES:
        raise SpectralError(
            f"unknown Gauss-Newton loss {name!r}; valid choices: {', '.join(OUTPUT_LOSSES)}"
        )
    fn = OUTPUT_LOSSES[name]
    return lambda z: fn(z, targets)


class GGNOperator(CurvatureOperator):
    """Generalised Gauss-Newton matrix ``G = Jᵀ H_L J`` of ``loss(output_fn())``.

    Args:
        output_fn: ``() -> network output f(θ)`` (any shape), called once.
        params: tensors that require grad, or an ``nn.Module``.
        loss: a name of :func:`output_loss` (then ``targets`` is required), or a callable
            ``output -> scalar loss``. ``G`` is PSD when the loss is convex in the output.
        targets: regression targets / class labels for a named loss.
    """

    def __init__(
        self,
        output_fn: Callable[[], Tensor],
        params: Params,
        loss: str | OutputLoss = "mse",
        targets: Tensor | None = None,
    ) -> None:
        super().__init__(params)
        if isinstance(loss, str):
            if targets is None:
                raise SpectralError(f"the {loss!r} Gauss-Newton loss needs `targets`")
            loss = output_loss(loss, targets)
        outputs = output_fn()
        if not isinstance(outputs, Tensor) or not outputs.requires_grad:
            raise SpectralError("output_fn must return a tensor that depends on the parameters")
        # Loss as a function of a detached copy of the output: its Hessian is H_L.
        z = outputs.detach().requires_grad_(True)
        loss_z = loss(z)
        if not isinstance(loss_z, Tensor) or loss_z.ndim != 0:
            raise SpectralError(
                "the Gauss-Newton loss must map the output to a scalar (0-dim) tensor"
            )
        (grad_z,) = torch.autograd.grad(loss_z, z, create_graph=True)
        u = torch.zeros_like(outputs, requires_grad=True)
        jt_u = torch.autograd.grad(
            outputs, self.params, grad_outputs=u, create_graph=True, allow_unused=True
        )
        self._outputs, self._z, self._grad_z, self._u = outputs, z, grad_z, u
        self._linear = [i for i, g in enumerate(jt_u) if g is not None and g.requires_grad]
        self._jt_u = [jt_u[i] for i in self._linear]

    def _product(self, vs: list[Tensor]) -> list[Tensor]:
        if not self._jt_u or not self._grad_z.requires_grad:
            return [torch.zeros_like(p) for p in self.params]
        (jv,) = torch.autograd.grad(
            self._jt_u, self._u, grad_outputs=[vs[i] for i in self._linear], retain_graph=True
        )
        (hjv,) = torch.autograd.grad(self._grad_z, self._z, grad_outputs=jv, retain_graph=True)
        gv = torch.autograd.grad(
            self._outputs, self.params, grad_outputs=hjv, retain_graph=True, allow_unused=True
        )
        return zeros_for_none(gv, self.params)


def hvp(
    loss_fn: LossFn, params: Params, vector: Tensor | Sequence[Tensor]
) -> Tensor | list[Tensor]:
    """One Hessian-vector product ``∇²L · v``.

    ``vector`` is either flat (returns a flat tensor) or a list shaped like ``params``
    (returns a list). For several products build one :class:`HessianOperator` instead.
    """
    op = HessianOperator(loss_fn, params)
    if isinstance(vector, Tensor):
        return op.matvec(vector)
    vs = list(vector)
    if len(vs) != len(op.params) or any(
        v.shape != p.shape for v, p in zip(vs, op.params, strict=True)
    ):
        raise SpectralError(
            f"vector shapes {[tuple(v.shape) for v in vs]} do not match parameter shapes "
            f"{[tuple(p.shape) for p in op.params]}"
        )
    return unflatten(op.matvec(flatten(vs, dtype=op.dtype)), op.params)
