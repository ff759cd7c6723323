"""L-BFGS with the compact representation of the inverse Hessian: torch's iterates, fewer and bigger kernels.

`CompactLBFGS` gives the iterates of ``torch.optim.LBFGS(max_iter=1, line_search_fn=None, tolerance_grad=0,
tolerance_change=0)`` up to rounding, but d = -H g from the compact representation of Byrd, Nocedal and
Schnabel (1994, Theorem 2.2) over a ring buffer of pairs: two matrix products and one host sync a step, where
the two-loop recursion makes ~4m small calls. `load_state_dict` also takes a ``torch.optim.LBFGS`` state.
Derivation, buffer layout, accuracy and gain: docs/lbfgs.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer

__all__ = ["CompactLBFGS", "skip_dynamo_import"]

TOLERANCE_GRAD = 0.0  # torch's tolerance_grad as stylelab sets it: stop only on an all-zero gradient
TOLERANCE_CHANGE = 0.0  # torch's tolerance_change: a direction with g.d > -0 is not taken
CURVATURE_EPS = 1e-10  # torch keeps a pair only when y.s > 1e-10
_FIRST_CAPACITY = 8  # rows of the pair buffer before it first doubles


def skip_dynamo_import() -> None:
    """Keep torch's optimisers from importing torch._dynamo (and sympy) at their first call: 1.2 s of every job's
    start on a CPU. torch wraps Optimizer's methods so that torch.compile never traces into them (torch/_compile.py,
    `_disable_dynamo`), importing torch._dynamo at the first call to make that wrapper, and caching it in the
    method's `__dynamo_disable`. stylelab compiles nothing, so each method is given itself there: calls go straight
    to it. Where torch wraps its methods otherwise, this leaves them as they are."""
    marker = torch._compile._disable_dynamo(lambda: None).__code__
    for method in vars(Optimizer).values():
        wrapped = getattr(method, "__wrapped__", None)
        if wrapped is not None and getattr(method, "__code__", None) is marker:
            wrapped.__dynamo_disable = wrapped


class CompactLBFGS(Optimizer):
    """torch.optim.LBFGS(max_iter=1, no line search, tolerance_grad=0, tolerance_change=0) with H g computed by
    the compact representation: `params` real and dense on one device (one group), `lr` the step length after
    the first step, `history_size` the curvature pairs kept."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1.0,
                 history_size: int = 100) -> None:
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if int(history_size) != history_size or history_size < 1:
            raise ValueError(f"Invalid history_size: {history_size}")
        super().__init__(params, {"lr": lr, "history_size": int(history_size)})
        if len(self.param_groups) != 1:
            raise ValueError("CompactLBFGS doesn't support per-parameter options (parameter groups)")
        self._params: list[Tensor] = self.param_groups[0]["params"]

    def _gather_flat_grad(self) -> Tensor:
        views = []
        for p in self._params:
            if p.grad is None:
                views.append(p.new_zeros(p.numel()))
            elif p.grad.is_sparse:
                views.append(p.grad.to_dense().view(-1))
            else:
                views.append(p.grad.reshape(-1))
        # One parameter: a view of its gradient, not torch's copy (read only; prev_flat_grad is a copy).
        return views[0] if len(views) == 1 else torch.cat(views, 0)

    def _move(self, t: float | Tensor, d: Tensor, keep: Tensor) -> None:
        """x += t d where ``keep`` (0-dim bool), with no host sync; addcmul_ by t rounds as torch's add_(alpha=t)."""
        scale = keep.to(d.dtype).mul_(t)
        offset = 0
        for p in self._params:
            numel = p.numel()
            p.addcmul_(d[offset:offset + numel].view_as(p), scale)
            offset += numel

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        """One L-BFGS iteration: evaluates ``closure`` (which must zero the gradient, compute the loss and
        call backward; it may then change the gradient in place) once, and returns its loss."""
        closure = torch.enable_grad()(closure)
        if not self._params:
            return closure()
        group = self.param_groups[0]
        lr = group["lr"]
        m = group["history_size"]
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure()
        state["func_evals"] += 1
        g = self._gather_flat_grad()
        # torch: g.abs().max() <= tolerance_grad; the inf-norm is the same value without a temporary.
        zero_grad = torch.linalg.vector_norm(g, float("inf")) <= TOLERANCE_GRAD

        if state["n_iter"] == 0:
            taken = self._first_direction(state, g, zero_grad, lr)
        else:
            taken = self._next_direction(state, g, zero_grad, lr, m)
        if taken is None:  # an all-zero gradient: no move, the state as it was
            return orig_loss
        d, t = taken

        if state.get("prev_flat_grad") is None:
            state["prev_flat_grad"] = g.clone(memory_format=torch.contiguous_format)
        else:
            state["prev_flat_grad"].copy_(g)
        state["prev_loss"] = orig_loss.detach() if isinstance(orig_loss, Tensor) else float(orig_loss)

        # torch: `if gtd > -tolerance_change: break` before moving; d and t are stored either way.
        gtd = g.dot(d)
        self._move(t, d, (gtd > -TOLERANCE_CHANGE).logical_not())
        state["d"] = d
        state["t"] = t
        return orig_loss

    @staticmethod
    def _first_direction(state: dict, g: Tensor, zero_grad: Tensor, lr):
        """First step: d = -g, t = min(1, 1/|g|_1) * lr (torch's expression). One sync for both tests."""
        inv = 1.0 / g.abs().sum()
        flags = torch.stack([zero_grad.to(inv.dtype), inv, inv * lr]).tolist()
        if flags[0]:
            return None
        state.update(n_iter=1, H_diag=1, count=0, head=0)
        t: float | Tensor = flags[2] if flags[1] < 1.0 else 1.0 * lr
        return g.neg(), t

    def _next_direction(self, state: dict, g: Tensor, zero_grad: Tensor, lr, m: int):
        """A later step: the new pair (s, y) if it passes the curvature test, then d = -H g; t = lr."""
        work = getattr(self, "_work", None)  # s, y and g; not state: nothing in it outlives a step
        if work is None or work.shape[1] != g.numel() or work.dtype != g.dtype or work.device != g.device:
            work = self._work = g.new_empty(3, g.numel())
        s, y = work[0], work[1]
        d = state["d"]
        torch.mul(d, state["t"], out=s)  # s = t_prev d_prev
        torch.sub(g, state["prev_flat_grad"], out=y)
        ys = y.dot(s)
        flags = torch.stack([zero_grad, ys > CURVATURE_EPS]).tolist()
        if flags[0]:
            return None
        state["n_iter"] += 1
        if flags[1]:
            yy = y.dot(y)
            state["H_diag"] = ys / yy
            work[2].copy_(g)
            a, b = self._add_pair(state, m, work, ys, yy)
        elif state["count"]:
            c = state["count"]
            a, b = torch.mv(state["pairs"][:c].view(2 * c, -1), g).view(c, 2).unbind(1)
        else:
            a = b = None
        self._direction(state, g, a, b, out=d)  # d_prev is spent (it is in s): reuse its memory
        return d, lr

    @staticmethod
    def _add_pair(state: dict, m: int, work: Tensor, ys: Tensor, yy: Tensor) -> tuple[Tensor, Tensor]:
        """Store (s, y) = work[0], work[1]; update S^T Y and Y^T Y; return a = S^T g, b = Y^T g (g = work[2]),
        in slot order."""
        n = work.shape[1]
        pairs = state.get("pairs")
        c, head = state["count"], state["head"]
        if pairs is None or (c == pairs.shape[0] and c < m):  # grow (doubling up to m)
            cap = min(m, max(_FIRST_CAPACITY, 2 * (0 if pairs is None else pairs.shape[0])))
            grown = work.new_empty(cap, 2, n)
            if c:
                grown[:c] = pairs[:c]
            pairs = state["pairs"] = grown
        if state.get("sy") is None or state["sy"].shape[0] != m:
            state["sy"] = work.new_zeros(m, m)
            state["yy"] = work.new_zeros(m, m)
        sy, yyt = state["sy"], state["yy"]
        if c < m:
            slot = c
            c += 1
        else:  # full: the newest pair replaces the oldest
            slot = head
            head = (head + 1) % m
        pairs[slot] = work[:2]
        # One pass over the pairs: prods[r, i, k] = work[r] . pairs[i, k] (r: s, y, g; k: s_i, y_i).
        prods = torch.mm(work, pairs[:c].view(2 * c, n).t()).view(3, c, 2)
        sy[:c, slot] = prods[1, :, 0]  # s_i . y_new
        sy[slot, :c] = prods[0, :, 1]  # s_new . y_j
        sy[slot, slot] = ys  # torch's y.dot(s), the value of the curvature test
        yyt[:c, slot] = prods[1, :, 1]
        yyt[slot, :c] = prods[1, :, 1]
        yyt[slot, slot] = yy
        state["count"], state["head"] = c, head
        return prods[2, :, 0], prods[2, :, 1]

    @staticmethod
    def _direction(state: dict, g: Tensor, a: Tensor | None, b: Tensor | None, out: Tensor) -> Tensor:
        """out = d = -H g by the compact representation (module docstring); a, b = S^T g, Y^T g in slot
        order."""
        gamma = state["H_diag"]
        c, head = state["count"], state["head"]
        torch.mul(g, gamma, out=out).neg_()  # torch: (-g) * H_diag, the same bits
        if c == 0:
            return out
        sty = state["sy"][:c, :c]
        yty = state["yy"][:c, :c]
        if head:  # slot order -> chronological order (oldest first)
            sty = sty.roll((-head, -head), (0, 1))
            yty = yty.roll((-head, -head), (0, 1))
            a, b = a.roll(-head), b.roll(-head)
        # R = triu(S^T Y): solve_triangular reads only the upper triangle of sty (the lower of sty^T).
        z = torch.linalg.solve_triangular(sty, a.unsqueeze(1), upper=True)
        rhs = sty.diagonal().unsqueeze(1) * z + gamma * (yty @ z - b.unsqueeze(1))
        w = torch.linalg.solve_triangular(sty.mT, rhs, upper=False)
        coef = torch.cat([w.neg(), z.mul(gamma)], 1)  # row i: coefficients of s_i and y_i
        if head:
            coef = coef.roll(head, 0)
        return out.addmv_(state["pairs"][:c].view(2 * c, -1).t(), coef.view(-1))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of this optimizer, or of a ``torch.optim.LBFGS`` (converted to this form)."""
        if any("max_iter" in group for group in state_dict.get("param_groups", [])):  # torch's LBFGS
            state_dict = self._from_torch_lbfgs(state_dict)
        super().load_state_dict(state_dict)
        # Own the tensors: an in-memory state dict would otherwise share buffers this updates in place.
        for s in self.state.values():
            for key, value in s.items():
                if isinstance(value, Tensor):
                    s[key] = value.clone()

    def _from_torch_lbfgs(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        groups = [dict(gr) for gr in state_dict["param_groups"]]
        m = self.param_groups[0]["history_size"]
        for gr in groups:
            gr["history_size"] = m
            for key in ("max_iter", "max_eval", "tolerance_grad", "tolerance_change", "line_search_fn",
                        "maximize"):
                gr.pop(key, None)
        converted = {}
        for pid, old in state_dict["state"].items():
            new: dict[str, Any] = {"func_evals": old.get("func_evals", 0), "n_iter": old.get("n_iter", 0)}
            if "old_dirs" in old:
                ys_list, ss_list = old["old_dirs"][-m:], old["old_stps"][-m:]
                c = len(ys_list)
                new.update(count=c, head=0, H_diag=old["H_diag"], d=old["d"], t=old["t"],
                           prev_flat_grad=old["prev_flat_grad"], prev_loss=old.get("prev_loss"))
                if c:
                    ref = ys_list[0]
                    n = ref.numel()
                    pairs = ref.new_empty(min(m, max(_FIRST_CAPACITY, c)), 2, n)
                    pairs[:c, 0] = torch.stack(ss_list)
                    pairs[:c, 1] = torch.stack(ys_list)
                    S, Y = pairs[:c, 0], pairs[:c, 1]
                    sy, yy = ref.new_zeros(m, m), ref.new_zeros(m, m)
                    sy[:c, :c] = S @ Y.T
                    yy[:c, :c] = Y @ Y.T
                    sy.diagonal()[:c] = torch.stack([yi.dot(si) for yi, si in zip(ys_list, ss_list)])
                    yy.diagonal()[:c] = torch.stack([yi.dot(yi) for yi in ys_list])
                    new.update(pairs=pairs, sy=sy, yy=yy)
            converted[pid] = {k: v for k, v in new.items() if v is not None}
        return {"state": converted, "param_groups": groups}
