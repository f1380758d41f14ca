#!/usr/bin/python3
"""Test of the torch baseline's grouped-matmul block (ctest bench-grouped-mm).

torch._grouped_mm needs a GPU, so its semantics are emulated here (one matmul per group of rows
that `offs` delimits) to check what the baseline does around it: the stable sort of the slots by
expert, the offsets, the gate/up split, the routing weights and the scatter back, against a
per-token dense reference on the same weights. Exits 0 on success, 1 on a mismatch, 77
(skipped) where torch is not installed (scripts/install-bench-deps.sh installs it).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print(f"grouped_mm_test: SKIPPED: no torch ({e})")
    sys.exit(77)

import torch_baseline  # noqa: E402


def emulated_grouped_mm(a, b, offs):
    out = torch.empty(a.shape[0], b.shape[2], dtype=a.dtype)
    start = 0
    for g, end in enumerate(offs.tolist()):
        out[start:end] = a[start:end] @ b[g]
        start = end
    return out


def main():
    torch.manual_seed(0)
    E, k, H, I, T = 6, 2, 16, 8, 37
    weights = {"gate": [torch.randn(I, H) for _ in range(E)],
               "up": [torch.randn(I, H) for _ in range(E)],
               "down": [torch.randn(H, I) for _ in range(E)]}
    router = torch.randn(E, H)

    def route(x):
        scores = F.softmax(F.linear(x, router), dim=-1)
        routing, selected = torch.topk(scores, k, dim=-1)
        return selected, routing

    def shared_part(x, out):
        return out

    forward = torch_baseline.make_grouped_forward(
        torch, F, route, shared_part, F.silu, weights, E, k, True, emulated_grouped_mm)
    x = torch.randn(T, H)
    got, _ = forward(x)

    selected, routing = route(x)
    want = torch.zeros(T, H)
    for t in range(T):
        for j in range(k):
            e = int(selected[t, j])
            h = F.silu(weights["gate"][e] @ x[t]) * (weights["up"][e] @ x[t])
            want[t] += routing[t, j] * (weights["down"][e] @ h)
    err = float((got - want).abs().max() / want.abs().max())
    if not err < 1e-5:
        print(f"grouped_mm_test: FAIL: max relative difference {err:.2e}")
        return 1
    print(f"grouped_mm_test: OK ({T} tokens, {E} experts, top-{k}; max rel diff {err:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
