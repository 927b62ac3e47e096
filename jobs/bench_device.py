"""The nightly scorer's throughput on a GPU worker (bf16), from a CPU-exported bundle.

python -m jobs.bench_scoring --dataset bookcrossing --lake LAKE --date D --device-bundle B
python -m jobs.bench_device --bundle B --device cuda --dtype bfloat16 [--source GGUF_FOLDER]
Needs no Spark, Ray or lake: only torch, transformers and the base model's source. Writes
reports/bench/scoring_device.json (parity vs the CPU, rows/s per variant and batch size).
"""
import argparse
import json
from pathlib import Path

from optirag.cli import run_job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch-sizes", default="16,64,256")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", default=None, help="base model source (default: the bundle's config)")
    parser.add_argument("--out", default="reports/bench/scoring_device.json")
    args = parser.parse_args()
    from optirag_bench.device import run_bundle

    result = run_bundle(Path(args.bundle), args.device, args.dtype,
                        [int(b) for b in args.batch_sizes.split(",")], args.repeats, args.source)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "by_batch_size"}, default=float))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_job("bench_device", main)
