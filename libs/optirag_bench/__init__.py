"""OptiRAG's benchmarks and experiments (``jobs.bench_*`` -> reports/bench/*.json).

They import the library; the library, the production jobs and the DAGs never import them
(tests/test_import_rules.py): what production needs from an experiment (e.g. choosing the
exit rule the nightly scorer serves, optirag.early_exit.calibration) lives in production.

scoring        what prefix sharing and early exit buy in the nightly scorer (make bench-scoring)
scoring_job    the bodies of jobs.bench_scoring and jobs.bench_peers, on the nightly's rows
device         the scorer timed on a GPU worker from a bundle the CPU bench exports
peers          this engine against llama.cpp on the same rows (make bench-peers)
retrieval      GCN vs LLM retriever time, search scaling (make bench-retrieval)
early_exit     early exit's accuracy and speed, the tau / window / k sweeps (make bench-early-exit)
exit_recipes   which exit-head training recipe lets the rule exit early (--head-recipes)
learning_curve the scorer's test AUC against its training-set size (make bench-tuning)
tuning_paths   tuning as prompts vs with shared prefixes, same rows (make bench-tuning-paths)
nightly        the nightly job against its engine, same scorer and rows (make bench-nightly)
raw_drop       what an incremental night re-scores after a small raw drop (make bench-nightly-drop)
"""
