#!/usr/bin/python3
"""Draws moe-bench's roofline: plot_roofline.py RESULTS.json OUT.png

Throughput (GFLOP/s) against arithmetic intensity (FLOP per byte of expert weights read), log-log,
with the measured FMA ceiling and read-bandwidth slope of the run's machine, and one point per
(implementation, token count). Needs matplotlib (Debian: python3-matplotlib).
"""

import json
import sys


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: plot_roofline.py RESULTS.json OUT.png\n")
        return 2
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        sys.stderr.write(f"plot_roofline: error: matplotlib is not installed ({e}); "
                         "Debian: apt-get install python3-matplotlib\n")
        return 3
    with open(argv[1]) as f:
        run = json.load(f)
    machine, results = run["machine"], run["results"]
    fma, bw = machine["fma_gflops"], machine["read_gbps"]
    if not results:
        sys.stderr.write("plot_roofline: error: no results to plot\n")
        return 1

    def intensity(r):
        return r.get("intensity_flop_per_byte") or r["gflops"] / r["weight_gbps"]

    xs = [intensity(r) for r in results]
    lo, hi = min(xs + [fma / bw]) / 4, max(xs + [fma / bw]) * 4
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    ridge = fma / bw
    ax.plot([lo, ridge], [bw * lo, fma], color="0.3", lw=2)
    ax.plot([ridge, hi], [fma, fma], color="0.3", lw=2)
    ax.annotate(f"FMA peak {fma:.0f} GFLOP/s", (hi, fma), textcoords="offset points",
                xytext=(-4, 5), ha="right", fontsize=9)
    ax.annotate(f"read {bw:.1f} GB/s", (lo * 1.3, bw * lo * 1.3), textcoords="offset points",
                xytext=(4, 6), rotation=0, fontsize=9)
    styles = {"moec": ("o", "tab:red"), "blas": ("s", "tab:blue"), "torch": ("^", "tab:green")}
    for impl in sorted({r["impl"] for r in results}, key=lambda i: list(styles).index(i)
                       if i in styles else 99):
        pts = sorted((r for r in results if r["impl"] == impl), key=lambda r: r["tokens"])
        marker, color = styles.get(impl, ("D", "tab:gray"))
        wdt = pts[0].get("weight_dtype", pts[0].get("dtype", ""))
        ax.plot([intensity(r) for r in pts], [r["gflops"] for r in pts], marker=marker,
                color=color, ls=":", lw=1, ms=7, label=f"{impl} ({wdt} weights)")
        for r in pts:
            ax.annotate(f"T={r['tokens']}", (intensity(r), r["gflops"]),
                        textcoords="offset points", xytext=(6, -10), fontsize=7, color=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ys = [r["gflops"] for r in results]
    ax.set_ylim(min(ys + [bw * lo]) / 2, fma * 2)
    ax.set_xlabel("arithmetic intensity (FLOP / byte of expert weights read)")
    ax.set_ylabel("throughput (GFLOP/s)")
    title = (f"{run.get('family', '?')} layer, {run.get('dtype', '?')} weights, "
             f"{machine.get('threads', '?')} thread(s)")
    layer = run.get("layer", {})
    if layer:
        title += (f"\nhidden {layer.get('hidden_size')}, {layer.get('num_experts')} experts x "
                  f"width {layer.get('expert_width')}, top-{layer.get('top_k')}")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=9)
    fig.text(0.01, 0.01, machine.get("cpu_model", ""), fontsize=7, color="0.4")
    fig.tight_layout()
    fig.savefig(argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
