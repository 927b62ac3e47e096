"""Train the conventional CTR baselines (DeepFM, DIN, GRU4Rec, SIM) on a dataset's samples.

python -m jobs.train_baselines --dataset bookcrossing --lake /tmp/lake [--models deepfm,din] [--seeds 0,1,2]
Trains on the train split, early-stops on the valid AUC, scores valid+test into the
eval_scores table (run_id baseline/<model>/seed<seed>) and writes
<baselines.reports_dir>/baselines_<dataset>.json (test AUC/logloss per seed, mean +- std).
"""
import argparse

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--models", type=_csv, default=None, help="comma list (default: baselines.models)")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in _csv(s)], default=None,
                        help="comma list of ints (default: baselines.seeds)")
    args = parser.parse_args()
    overrides = list(args.overrides)
    if args.models:
        overrides.append(f"baselines.models=[{','.join(args.models)}]")
    if args.seeds:
        overrides.append(f"baselines.seeds=[{','.join(map(str, args.seeds))}]")
    args.overrides = overrides
    cfg = config_from_args(args)
    from optirag.baselines.config import baselines_config
    from optirag.baselines.job import run_baselines
    from optirag.spark import get_spark

    baselines_config(cfg)  # a bad model name or section fails before Spark starts
    report = run_baselines(get_spark(cfg), cfg)
    for model, r in report["models"].items():
        mean, std = r["auc_mean"], r["auc_std"]
        shown = "n/a" if mean is None else f"{100 * mean:.2f} +- {100 * std:.2f}"
        print(f"{cfg.dataset.name} {model}: test AUC {shown} over seeds {report['seeds']}")
    return 0


if __name__ == "__main__":
    run_job("train_baselines", main)
