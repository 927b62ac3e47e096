"""This engine against llama.cpp on the same rows (see optirag_bench.peers).

python -m jobs.bench_peers --dataset bookcrossing --lake /tmp/lake --llama-cpp-src DIR
Needs llama-cpp-python (a bench-only install: `make bench-peers` builds it from its PyPI
sdist and passes the sdist's vendor/llama.cpp as --llama-cpp-src for the GGUF converter),
the lake's candidates for --date (built if missing) and the scorer + exit heads of
scoring.variant. Writes reports/bench/peers.json and peers.png.
"""
import argparse
import json

from jobs.bench_scoring import add_row_args
from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    add_row_args(parser)
    parser.add_argument("--eval-rows", type=int, default=1000,
                        help="labelled eval candidates (AUC, agreement, paired AUC differences)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="threads of every scorer")
    parser.add_argument("--llama-cpp-src", required=True, help="llama.cpp source tree (convert_hf_to_gguf.py)")
    parser.add_argument("--gguf-type", default="q8_0", choices=["f32", "f16", "bf16", "q8_0"])
    parser.add_argument("--gguf-dir", default=".cache/gguf", help="where converted scorers are kept")
    parser.add_argument("--out", default="reports/bench/peers.json")
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag_bench.scoring_job import run_peers

    result = run_peers(cfg, args)
    print(json.dumps({"scorers": result["scorers"], "ours_best_vs_best_peer": result["ours_best_vs_best_peer"]},
                     indent=1, default=str))
    return 0


if __name__ == "__main__":
    run_job("bench_peers", main)
