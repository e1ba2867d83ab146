"""K networks of one architecture trained as one: stacked parameters with a member dimension.

A population trains K seeds of one arm in lockstep. On the small networks of this testbed
an update is dominated by per-op overhead (Python, dispatch, kernel launch), which is paid
once per op whatever its size, so K networks whose parameters are stacked along a leading
*member* dimension cost little more than one: every layer is one batched matmul
(``torch.baddbmm``) over all members.

:class:`StackedMLP` owns this. Each member is still a plain :class:`~agents.networks.MLP`
(``stacked.members[k]``) whose parameters are *views* of the stacked tensors: probes,
mitigations, ``state_dict`` and in-place resets work on a member exactly as on a network of
its own, and every in-place change of a member is a change of the stacked storage (and the
other way round). The stacked tensors are leaves of their own; after a batched backward,
:meth:`StackedMLP.link_grads` makes each member's ``p.grad`` a view of the stacked gradient,
so a mitigation that edits a member's gradient edits what the optimiser steps on.

This module is also the one place for the speed paths of the training loop, each tested
against the plain module forward / autograd (tests/agents/test_batched.py):

* :meth:`StackedMLP.inference` -- the forward without autograd or hooks (acting, targets);
* :meth:`StackedMLP.numpy_inference` / :meth:`StackedMLP.numpy_forward` -- acting in
  numpy (a batch per member, or one observation per member: ~3x cheaper per op than
  torch's dispatch on rows this small);
* :meth:`StackedMLP.forward_saving` / :meth:`StackedMLP.backward_into_grad` -- the
  closed-form MLP backward used by DQN (:func:`closed_form_ready` says when it is exact);
* :meth:`StackedMLP.forward` -- the autograd forward; when a hook listens on a member's
  modules (a mitigation reading features during training, e.g. CBP) it runs each member
  through its own module instead, so the hooks see exactly what a single run shows them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as torch_module

from agents.base import AgentError
from agents.networks import MLP

__all__ = ["StackedMLP"]


class _HookScan:
    """Whether a module hook (forward or backward; global, or on one of fixed ``modules``)
    or a tensor hook on one of their parameters would be called by a forward/backward pass.

    A module's hook dictionaries are created with it and only filled and emptied by
    ``register_*_hook`` and the handles' ``remove``, so they are read, not re-found, at
    every scan; a tensor's hook dictionaries are created at its first ``register_hook``,
    so the parameters are asked each time. The parameters are held (:class:`StackedMLP`'s
    views, installed before the scan is built and only ever changed in place)."""

    _GLOBAL = (torch_module._global_forward_hooks, torch_module._global_forward_pre_hooks,
               torch_module._global_backward_hooks, torch_module._global_backward_pre_hooks)

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.dicts = [*self._GLOBAL]
        for m in modules:
            self.dicts += (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks,
                           m._backward_pre_hooks)
        self.params = [p for m in modules for p in m._parameters.values() if p is not None]

    def any(self) -> bool:
        if any(self.dicts):
            return True
        for p in self.params:  # a loop: a generator costs more than the tests it makes
            if p._backward_hooks or p._post_accumulate_grad_hooks:
                return True
        return False


class StackedMLP:
    """K :class:`MLP` s of one architecture with their parameters stacked ``(K, ...)``.

    Args:
        members: the member networks (already initialised, e.g. each from its own seed).
            They must share the architecture; their parameters are replaced by views of
            the stacked tensors (values unchanged).
        requires_grad: whether the stacked tensors are trained (False for a target network).

    Attributes:
        members: the member networks (plain modules; parameters alias the stacked storage).
        names: parameter names in ``MLP.named_parameters`` order.
        params: the stacked tensors, one per name, each ``(K, *member shape)``.
    """

    def __init__(self, members: Sequence[MLP], requires_grad: bool = True) -> None:
        if not members:
            raise AgentError("a population needs at least one member network")
        self.members = list(members)
        first = self.members[0]
        shapes = [(n, tuple(p.shape)) for n, p in first.named_parameters()]
        for net in self.members[1:]:
            if [(n, tuple(p.shape)) for n, p in net.named_parameters()] != shapes:
                raise AgentError("population members must share one network architecture")
        self.names = [n for n, _ in shapes]
        self.k = len(self.members)
        with torch.no_grad():
            self.params = [
                torch.stack([dict(net.named_parameters())[n].detach() for net in self.members])
                .requires_grad_(requires_grad)
                for n in self.names
            ]
        self._member_params: list[list[nn.Parameter]] = []
        for k, net in enumerate(self.members):
            owned = []
            for name, stacked in zip(self.names, self.params, strict=True):
                module_name, _, leaf = name.rpartition(".")
                module = net.get_submodule(module_name) if module_name else net
                view = nn.Parameter(stacked[k], requires_grad=requires_grad)
                module._parameters[leaf] = view
                owned.append(view)
            self._member_params.append(owned)
        self._index = {n: i for i, n in enumerate(self.names)}
        self._layers = self._layer_plan(first)
        self._hooks = _HookScan([m for net in self.members for m in net.modules()])
        # Detached views of the stacked storage (no autograd), and the per-layer operands
        # built from them once: the no-grad paths (acting, targets, the closed form) would
        # otherwise pay a transpose and an unsqueeze per layer per call.
        self._plain = [p.detach() for p in self.params]
        self._plain_layers = self._operands(self._plain)
        self._plain_member_layers = [self._operands([p[k] for p in self._plain])
                                     for k in range(self.k)]
        # A population of one trains through its member's own parameters (never replaced,
        # only changed in place), whose 2-D operands are those parameters themselves.
        self._single_layers = self._operands(self._member_params[0]) if self.k == 1 else None
        self._numpy: list[list[tuple]] | None = None  # built at first use
        self._by_member = False

    # --------------------------------------------------------------------------- structure

    def _layer_plan(self, net: MLP) -> list[tuple[int, int, int | None, int | None, nn.Module | None]]:
        """Per linear layer: (weight index, bias index, LN weight index, LN bias index, act)."""
        plan = []
        for i, block in enumerate(net.hidden):
            ln = isinstance(block.norm, nn.LayerNorm)
            plan.append((self._index[f"hidden.{i}.linear.weight"],
                         self._index[f"hidden.{i}.linear.bias"],
                         self._index[f"hidden.{i}.norm.weight"] if ln else None,
                         self._index[f"hidden.{i}.norm.bias"] if ln else None,
                         block.act))
        plan.append((self._index["head.weight"], self._index["head.bias"], None, None, None))
        return plan

    def _operands(self, params: Sequence[Tensor]) -> list[tuple]:
        """Per layer ``(weight, bias, LN weight, LN bias, act)`` as views of ``params``: of
        the stacked tensors, shaped for :func:`torch.baddbmm` on ``(K, B, in)`` inputs
        (``W^T`` ``(K, in, out)``, ``(K, 1, out)``...); of one member's, for
        :func:`torch.nn.functional.linear` on ``(B, in)`` inputs (the parameters as they are)."""
        if params[self._layers[0][0]].dim() == 2:
            return [(params[w], params[b], None if ln_w is None else params[ln_w],
                     None if ln_b is None else params[ln_b], act)
                    for w, b, ln_w, ln_b, act in self._layers]

        def row(i: int | None) -> Tensor | None:
            return None if i is None else params[i].unsqueeze(1)

        return [(params[w].transpose(1, 2), row(b), row(ln_w), row(ln_b), act)
                for w, b, ln_w, ln_b, act in self._layers]

    def param(self, name: str) -> Tensor:
        """The stacked tensor of parameter ``name`` (e.g. ``"head.weight"``)."""
        return self.params[self._index[name]]

    def member_params(self, k: int) -> list[nn.Parameter]:
        """Member ``k``'s parameters (views), in the order of :attr:`params`."""
        return self._member_params[k]

    def hooked(self) -> bool:
        """Whether any hook listens on a member network (then :meth:`forward` goes member by
        member, through the modules)."""
        return self._hooks.any()

    def closed_form_ready(self) -> bool:
        """Whether :meth:`forward_saving` / :meth:`backward_into_grad` equal autograd: ReLU or
        tanh hidden layers, no LayerNorm, no hook anywhere."""
        return (all(ln_w is None and type(act) in (nn.ReLU, nn.Tanh)
                    for _, _, ln_w, _, act in self._layers[:-1])
                and not self.hooked())

    # ----------------------------------------------------------------------------- forward

    @staticmethod
    def _batched(h: Tensor, layers: Sequence[tuple]) -> Tensor:
        """The forward through ``layers`` (:meth:`_operands`) for flat inputs: ``(K, B, in)``
        with the stacked operands, ``(B, in)`` with one member's."""
        batched = h.dim() == 3
        for weight, bias, ln_w, ln_b, act in layers:
            h = torch.baddbmm(bias, h, weight) if batched else F.linear(h, weight, bias)
            if ln_w is not None:
                h = F.layer_norm(h, h.shape[-1:]) * ln_w + ln_b
            if act is not None:
                h = torch.relu(h) if type(act) is nn.ReLU else act.forward(h)
        return h

    def forward(self, x: Tensor, lengths: Sequence[int] | None = None) -> Tensor:
        """``(K, B, out)`` outputs for inputs ``(K, B, ...)`` with autograd.

        Gradients reach the stacked tensors; if a hook listens (see :meth:`hooked`) each
        member runs through its own module (on its first ``lengths[k]`` rows only, the rest
        being padding: the hooks see what a single run shows them; padded outputs are 0)
        and the gradients reach the members' views (:meth:`finish_backward` collects them).
        A population of one runs :meth:`single_forward`.
        """
        if self.k == 1:
            return self.single_forward(x[0])[None]
        self._by_member = self.hooked()
        if not self._by_member:
            return self._batched(x.flatten(2), self._operands(self.params))
        outs = []
        for k, net in enumerate(self.members):
            n = x.shape[1] if lengths is None else int(lengths[k])
            out = net(x[k, :n])
            outs.append(F.pad(out, (0, 0, 0, x.shape[1] - n)))
        return torch.stack(outs)

    def single_forward(self, x: Tensor) -> Tensor:
        """A population of one's :meth:`forward` on its member's inputs ``(B, ...)`` without
        the member dimension -> ``(B, out)``: the plain 2-D forward of the member's views
        (through its module when a hook listens), whose backward autograd does in fewer ops
        than the batched one's, and with no view in and out of a stack of one."""
        if self.k != 1:
            raise AgentError(f"single_forward is for a population of one; this one has {self.k}")
        self._by_member = True
        if self.hooked():
            return self.members[0](x)
        return self._batched(x.flatten(1), self._single_layers)

    def finish_backward(self) -> None:
        """After ``backward()`` of a loss built with :meth:`forward`: make sure the stacked
        ``.grad`` holds the gradient (a member-by-member forward left it in the members')."""
        if self._by_member:
            self.stack_member_grads()

    def inference(self, x: Tensor) -> Tensor:
        """``(K, B, out)`` without autograd and without calling hooks (acting, targets).

        The operands are detached views of the stacked storage, so for inputs that need no
        gradient (observations) no graph is recorded, without the cost of a ``no_grad``
        context, which on these small forwards is a good part of the whole."""
        if self.k == 1:
            return self.member_inference(0, x[0])[None]
        return self._batched(x.flatten(2), self._plain_layers)

    def member_inference(self, k: int, x: Tensor) -> Tensor:
        """Member ``k``'s ``(B, out)`` outputs for ``(B, ...)`` inputs, without autograd or hooks."""
        return self._batched(x.flatten(1), self._plain_member_layers[k])

    def numpy_inference(self, x: np.ndarray, member: int | None = None) -> np.ndarray | None:
        """:meth:`inference` in numpy (``x`` ``(K, B, ...)`` -> ``(K, B, out)``), or for one
        ``member`` :meth:`member_inference` (``(B, ...)`` -> ``(B, out)``); None where
        unsupported (parameters off the CPU, LayerNorm, activations other than ReLU/tanh:
        use those). On arrays this small a numpy op costs a fraction of a torch op's
        dispatch, and acting runs these forwards at every env step.

        The numpy arrays are views of the stacked storage, which is only changed in place,
        so they stay current.
        """
        if self._numpy is None:
            self._numpy = self._numpy_plans()
        if not self._numpy:
            return None
        x = np.asarray(x, dtype=np.float32)
        if member is not None:
            return _numpy_run(x.reshape(len(x), -1), self._numpy[1 + member])
        if self.k == 1:  # 2-D products: cheaper than a stack of one
            return _numpy_run(x.reshape(x.shape[1], -1), self._numpy[1])[None]
        return _numpy_run(x.reshape(self.k, x.shape[1], -1), self._numpy[0])

    def numpy_forward(self, obs: np.ndarray, member: int | None = None) -> np.ndarray | None:
        """:meth:`numpy_inference` of one observation per member, ``obs`` ``(K, ...)`` ->
        ``(K, out)`` (or ``(...)`` -> ``(out,)`` for one ``member``); None where unsupported."""
        obs = np.asarray(obs, dtype=np.float32)
        if member is None:
            out = self.numpy_inference(obs.reshape(self.k, 1, -1))
            return None if out is None else out[:, 0]
        out = self.numpy_inference(obs.reshape(1, -1), member)
        return None if out is None else out[0]

    def _numpy_plans(self) -> list[list[tuple]]:
        """``[stacked plan, member 0's plan, member 1's...]``, each per layer (transposed
        weight, bias, in-place activation) as numpy views of the stacked storage (the stacked
        ones ``(K, in, out)``, ``(K, 1, out)``); empty where :meth:`numpy_inference` is
        unsupported."""
        if self.params[0].device.type != "cpu":
            return []
        stacked = []
        for w, b, ln_w, _, act in self._layers:
            fn = None if act is None else {nn.ReLU: _relu_, nn.Tanh: _tanh_}.get(type(act), False)
            if fn is False or ln_w is not None:
                return []
            stacked.append((self.params[w].detach().numpy().transpose(0, 2, 1),
                            self.params[b].detach().numpy()[:, None, :], fn))
        members = [[(w[k], b[k, 0], fn) for w, b, fn in stacked] for k in range(self.k)]
        return [stacked, *members]

    # ------------------------------------------------------------------ closed-form backward

    def forward_saving(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(K, B, out)`` outputs without autograd, and the input of every linear layer.

        Call under ``torch.no_grad()``, only where :meth:`closed_form_ready` holds.
        """
        inputs = [x.flatten(2)]
        for weight_t, bias, _, _, act in self._plain_layers[:-1]:
            h = torch.baddbmm(bias, inputs[-1], weight_t)
            inputs.append(h.relu_() if type(act) is nn.ReLU else h.tanh_())
        weight_t, bias, _, _, _ = self._plain_layers[-1]
        return torch.baddbmm(bias, inputs[-1], weight_t), inputs

    def backward_into_grad(self, inputs: list[Tensor], grad_out: Tensor) -> None:
        """Set each stacked tensor's ``.grad`` to d(loss)/dp given ``grad_out`` = d(loss)/d(output)
        ``(K, B, out)``.

        With ``h_0 = x``, ``z_l = h_{l-1} W_l^T + b_l``, ``h_l = act(z_l)`` and ``d_L = grad_out``
        (per member): ``dW_l = d_l^T h_{l-1}``, ``db_l = sum_rows d_l``,
        ``d_{l-1} = (d_l W_l) * act'(z_{l-1})`` with ``relu' = [h > 0]`` and ``tanh' = 1 - h^2``
        (read off the saved outputs ``h``).
        """
        params = self.params
        delta = grad_out
        for i in range(len(self._layers) - 1, -1, -1):
            w, b, _, _, _ = self._layers[i]
            h = inputs[i]
            params[w].grad = torch.bmm(delta.transpose(1, 2), h)
            params[b].grad = delta.sum(1)
            if i == 0:
                break
            delta = torch.bmm(delta, self._plain[w])
            # autograd's own derivative kernels (one fused pass)
            if type(self._layers[i - 1][4]) is nn.ReLU:
                delta = torch.ops.aten.threshold_backward(delta, h, 0)
            else:
                delta = torch.ops.aten.tanh_backward(delta, h)

    # ------------------------------------------------------------------------- gradients

    def clear_grads(self) -> None:
        for p in self.params:
            p.grad = None
        for owned in self._member_params:
            for p in owned:
                p.grad = None

    def stack_member_grads(self) -> None:
        """After a member-by-member backward: the stacked ``.grad`` from the members' grads
        (for a population of one, a view of its member's: nothing to copy)."""
        if self.k == 1:
            for p, owned in zip(self.params, self._member_params[0], strict=True):
                g = owned.grad
                if g is not None:  # else used outside the modules only (PPO's log_std)
                    p.grad = g[None] if p.grad is None else p.grad + g[None]
            return
        for i, p in enumerate(self.params):
            grads = [owned[i].grad for owned in self._member_params]
            if all(g is None for g in grads):
                continue  # used outside the modules only (PPO's log_std): p.grad has it
            stacked = torch.stack([torch.zeros_like(p[0]) if g is None else g for g in grads])
            p.grad = stacked if p.grad is None else p.grad + stacked

    def link_grads(self, k: int) -> None:
        """Make member ``k``'s ``p.grad`` views of the stacked gradients (for hooks that edit them)."""
        for p, owned in zip(self.params, self._member_params[k], strict=True):
            owned.grad = p.grad[k]

    def copy_(self, other: StackedMLP) -> None:
        """``self <- other`` (all members), in place."""
        with torch.no_grad():
            torch._foreach_copy_(self.params, other.params)

    def lerp_(self, other: StackedMLP, weight: float) -> None:
        """``self <- self + weight * (other - self)`` (Polyak averaging), in place."""
        with torch.no_grad():
            torch._foreach_lerp_(self.params, other.params, weight)


def _numpy_run(h: np.ndarray, plan: list[tuple]) -> np.ndarray:
    """The forward of flat inputs through a numpy plan (:meth:`StackedMLP._numpy_plans`).

    Each layer's product is a new array, so the bias and the activation are applied to it in
    place; a 2-D product is ``np.dot`` (BLAS directly, without ``matmul``'s gufunc set-up),
    a stacked one ``matmul``."""
    for weight_t, bias, fn in plan:
        h = np.dot(h, weight_t) if h.ndim == 2 else h @ weight_t
        h += bias
        if fn is not None:
            fn(h)
    return h


def _relu_(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def _tanh_(x: np.ndarray) -> np.ndarray:
    return np.tanh(x, out=x)
