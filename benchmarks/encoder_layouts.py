"""Parameter counts and CPU cost of the ResNet encoders, authors' layout vs torchvision's.

Prints, for 84×84×4 input at width 1, each ResNet depth's parameters by part (trunk, spatial
readout), the trunk's output map and the feature size C·F; then the CPU time of one
forward + backward pass (encoder only, loss = sum of the features) at batch 32 for the chosen
depths in both layouts, alternating layouts so that load on the machine hits both alike.

    python benchmarks/encoder_layouts.py                      # ResNet-34/50, 3 timed reps
    python benchmarks/encoder_layouts.py --reps 0             # table only
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from scaledql.models import encoder_param_counts, make_encoder

SHAPE = (4, 84, 84)
LAYOUTS = ("authors", "torchvision")


def param_table(width: float = 1.0) -> list[dict[str, object]]:
    """One row per ResNet depth and layout: parameters by part, trunk map, feature size."""
    rows = []
    for depth in (18, 34, 50, 101):
        for layout in LAYOUTS:
            enc = make_encoder(f"resnet{depth}", SHAPE[0], SHAPE[1:], width, layout=layout)
            with torch.no_grad():
                c, h, w = enc.trunk(torch.zeros(1, *SHAPE)).shape[1:]
            rows.append({"depth": depth, "layout": layout, **encoder_param_counts(enc),
                         "map": f"{c}×{h}×{w}", "features": enc.output_shape[0]})  # fmt: skip
    return rows


def forward_gflops(enc: torch.nn.Module) -> float:
    """Forward FLOPs of one sample (counted by PyTorch, convs and matmuls), in GFLOP."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        enc(torch.rand(1, *SHAPE))
    return counter.get_total_flops() / 1e9


def time_fwd_bwd(depths: list[int], batch: int, reps: int) -> None:
    encs = {(d, lay): make_encoder(f"resnet{d}", SHAPE[0], SHAPE[1:], layout=lay)
            for d in depths for lay in LAYOUTS}  # fmt: skip
    x = torch.rand(batch, *SHAPE)
    times: dict[tuple[int, str], list[float]] = {k: [] for k in encs}
    for rep in range(reps + 1):  # rep 0 warms up (allocator, oneDNN primitives), not counted
        for key, enc in encs.items():
            enc.zero_grad(set_to_none=True)
            start = time.process_time()
            enc(x).sum().backward()
            if rep:
                times[key].append(time.process_time() - start)
    print(f"\nforward+backward, batch {batch}, CPU seconds (process time, "
          f"{torch.get_num_threads()} threads), {reps} reps after 1 warm-up")  # fmt: skip
    print("| encoder | layout | forward GFLOP/sample | min s | median s |")
    print("|---|---|---|---|---|")
    for (d, lay), ts in times.items():
        gf = forward_gflops(encs[d, lay])
        print(f"| ResNet-{d} | {lay} | {gf:.2f} | {min(ts):.2f} | {statistics.median(ts):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[34, 50])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("| encoder | layout | trunk params | readout params | encoder params | map | C·F |")
    print("|---|---|---|---|---|---|---|")
    for r in param_table():
        print(f"| ResNet-{r['depth']} | {r['layout']} | {r['trunk']:,} | {r['readout']:,} | "
              f"{r['total']:,} | {r['map']} | {r['features']:,} |")  # fmt: skip
    if args.reps > 0:
        time_fwd_bwd(args.depths, args.batch, args.reps)


if __name__ == "__main__":
    main()
