"""Assemble REPORT.md: Tables 2-4, Figures 2-5, the environment, ours vs the paper.

Every number comes from the inputs; a missing input is a "not run" cell, and each
comparison sentence is generated from the two numbers it compares.
"""
from __future__ import annotations

from pathlib import Path

from optirag.evaluation.replicas import replica_seeds
from optirag.reporting import figures, paper
from optirag.reporting import numbers as N
from optirag.reporting.inputs import ReportInputs, for_dataset, pick
from optirag.reporting.missing import MIN_TEST_NEGATIVES

NOT_RUN = "not run"
# sweep speed keys as the tables and axes name them (estimated: the measured full-depth
# rate scaled by each point's FLOPs ratio, jobs.bench_early_exit)
SPEED_LABELS = {"samples_per_s": "samples/s", "samples_per_s_estimated": "samples/s (estimated)",
                "throughput": "samples/s", "rps": "requests/s", "throughput_ratio": "throughput ratio"}


def fmt(v: N.Value | float | None) -> str:
    if v is None:
        return NOT_RUN
    if isinstance(v, N.Value):
        spread = f" ± {v.std:.2f}" if v.std is not None and v.n > 1 else ""
        interval = f" [{v.ci[0]:.1f}, {v.ci[1]:.1f}]" if v.ci else ""
        return f"{v.mean:.2f}{spread}{interval}" + (f" (n={v.n})" if v.n > 1 else "")
    return f"{v:.2f}"


def _difference(label: str, d: dict) -> str:
    lo, hi = (100 * x for x in d["ci95"])
    verdict = "excludes 0" if d["excludes_zero"] else "includes 0: not a significant difference"
    return (f"- {label}: {100 * d['diff']:+.2f} points, paired 95% bootstrap interval "
            f"[{lo:+.2f}, {hi:+.2f}] on the same {d['n']} test rows ({verdict}).")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def compare(what: str, dataset: str, ours: N.Value | None, published: float | None, paper_ds: str | None,
            caveat: str | None = None) -> str | None:
    """One sentence on one difference, worded from the numbers alone (caveat: why the
    difference means nothing, e.g. a test split without negatives)."""
    if ours is None or published is None:
        return None
    delta = ours.mean - published
    if caveat:
        size = f"not comparable: {caveat}, too few for an AUC"
    elif ours.std is not None and ours.n > 1 and abs(delta) <= ours.std:
        size = "within one standard deviation of our seeds"
    elif abs(delta) < 1:
        size = "less than one point apart"
    else:
        size = f"{abs(delta):.2f} points {'above' if delta > 0 else 'below'} the paper"
    return (f"{what} on {dataset}: ours {ours.mean:.2f} vs the paper's {published:.2f} "
            f"on {paper_ds} ({delta:+.2f}; {size}).")


def _rank_sentence(dataset: str, ours: dict[str, N.Value | None], published: dict[str, float | None]) -> str | None:
    have = {k: v.mean for k, v in ours.items() if v is not None}
    pub = {k: v for k, v in published.items() if v is not None}
    if len(have) < 2 or len(pub) < 2:
        return None
    best_ours, best_pub = max(have, key=have.get), max(pub, key=pub.get)
    agree = "the same model as" if best_ours == best_pub else "unlike"
    return (f"Best full-shot baseline on {dataset}: {best_ours} ({have[best_ours]:.2f}) in our run, "
            f"{agree} the paper ({best_pub}, {pub[best_pub]:.2f}).")


def _few_negatives(inputs: ReportInputs, dataset: str) -> str | None:
    reason = inputs.llm_skipped.get(dataset)
    return reason.removeprefix("skipped: ") if reason else None


def _llm_cell(inputs: ReportInputs, dataset: str, value: N.Value | float | None) -> str:
    """An LLM-run cell: the number, else why the dataset has none (e.g. no test negatives)."""
    return fmt(value) if value is not None or dataset not in inputs.llm_skipped else inputs.llm_skipped[dataset]


def _llm_category(inputs: ReportInputs, dataset: str) -> str:
    """Few-shot (< 10% of the train split, the paper's setting) or full-shot LLM rows."""
    share = N.train_share(inputs, dataset, "gcn") or N.train_share(inputs, dataset, "none")
    return "Few-shot" if share is None or share < 0.1 else "Full-shot"


def table2(inputs: ReportInputs) -> tuple[list[str], list[str]]:
    lines, sentences = ["## Table 2: AUC per model (test split)", "",
                        "Full-shot baselines: trained on the whole train split, mean ± std over seeds. "
                        "LLM rows: the scorer tuned per prompt variant and scored on every test row; "
                        "one tuning seed: [95% bootstrap interval over the test rows], several: "
                        "mean ± std over tuning seeds (n shown). GCN-earlyexit: that scorer with its "
                        "exit heads, the exit rule (τ, m) chosen on the valid rows and applied to the "
                        "same test rows. AUC x 100.", ""], []
    for d in inputs.datasets:
        pds = paper.PAPER_DATASET.get(d)
        rows, base_ours, base_pub = [], {}, {}
        llm = _llm_category(inputs, d)
        entries = ([("Full-shot", name, N.baseline_auc(inputs, d, key)) for name, key in N.BASELINES]
                   + [("Zero-shot", "SmolLM2 untuned (no retrieval)", N.llm_auc(inputs, d, "zero_shot/none"))]
                   + [(llm, name, N.llm_auc(inputs, d, key)) for name, key in N.LLM_RUNS]
                   + [(llm, "GCN-earlyexit", N.early_exit_auc(inputs, d))])
        for cat, name, ours in entries:
            pub = paper.TABLE2.get(name, {}).get(pds) if pds else None
            delta = f"{ours.mean - pub:+.2f}" if ours is not None and pub is not None else ""
            cell = fmt(ours) if (cat, name) in {("Full-shot", n) for n, _ in N.BASELINES} \
                else _llm_cell(inputs, d, ours)
            rows.append([cat, name, cell, fmt(pub) if pub is not None else "—", delta])
            s = compare(name, d, ours, pub, pds, _few_negatives(inputs, d))
            if s:
                sentences.append(s)
            if name in dict(N.BASELINES):
                base_ours[name], base_pub[name] = ours, pub
        lines += [f"### {d}" + (f" (paper: {pds})" if pds else " (no counterpart in the paper)"), ""]
        n_test, pos = pick(inputs.baselines.get(d), "split_sizes.test"), pick(inputs.baselines.get(d), "test_positive_rate")
        if n_test is not None and pos is not None:
            # a test split with a handful of negatives makes every AUC here noisy
            neg = round(n_test * (1 - pos))
            lines += [f"Test split: {n_test} samples, {100 * pos:.1f}% positive "
                      f"({neg} negative{'' if neg == 1 else 's'}).", ""]
        lines += _table(["Category", "Model", "Ours AUC", "Paper AUC", "Δ"], rows)
        share, n_train = N.train_share(inputs, d, "gcn"), pick(N.llm_run(inputs, d, "gcn"), "train_examples")
        if share is not None:
            pct = f"{100 * share:.0f}" if share >= 0.01 else f"{100 * share:.1g}"   # 256 of 76k: 0.3
            lines += [f"LLM rows tuned on {n_train:,} training examples ({pct}% of the "
                      "train split; the paper's few-shot setting is < 10%).", ""]
        diffs = N.paired_differences(inputs, d)
        if diffs:
            lines += ["Paired differences (AUC x 100, both scorers on the same test rows, rows "
                      "resampled together):", "", *[_difference(label, x) for label, x in diffs], ""]
        else:
            se, n_llm = N.auc_standard_error(inputs, d, "gcn"), pick(N.llm_run(inputs, d, "gcn"), "metrics.test.n")
            if se:  # an eval file without comparisons: say how much of a gap is chance
                lines += [f"LLM rows: {n_llm} test samples each; the standard error of one such AUC is "
                          f"about {se:.1f} points (Hanley-McNeil), so gaps under ~{2 * se:.0f} points "
                          "between them are within chance.", ""]
        rank = None if _few_negatives(inputs, d) else _rank_sentence(d, base_ours, base_pub)
        if rank:
            sentences.append(rank)
    return lines, sentences


def table3(inputs: ReportInputs) -> tuple[list[str], list[str]]:
    rows, sentences = [], []
    for d in inputs.datasets:
        pds = paper.PAPER_DATASET.get(d)
        ours = N.retrieval_layers(inputs, d)
        for key, label in (("average", "Average of layers"), ("last_layer", "Last layer")):
            pub = paper.TABLE3.get(pds, {}).get(key) if pds else None
            rows.append([d, label, _llm_cell(inputs, d, ours[key]), fmt(N.retrieval_hit_rate(inputs, d, key)),
                         fmt(pub) if pub is not None else "—"])
            s = compare(f"GCN retriever ({label.lower()})", d, ours[key], pub, pds)
            if s:
                sentences.append(s)
        avg, last = ours["average"], ours["last_layer"]
        if avg is not None and last is not None:
            better = "average" if avg.mean > last.mean else ("last-layer" if last.mean > avg.mean else "neither")
            se = N.auc_standard_error(inputs, d, "gcn")
            noise = (f"; the gap, {abs(avg.mean - last.mean):.2f} points, is "
                     f"{'within' if abs(avg.mean - last.mean) < 2 * se else 'outside'} two standard errors "
                     f"of one test AUC ({se:.1f} points each, Hanley-McNeil)") if se else ""
            seeds = (f"; over seeds the std is {avg.std:.2f} (average, n={avg.n}) and {last.std:.2f} "
                     f"(last layer, n={last.n})") if avg.std is not None and last.std is not None else ""
            sentences.append(f"On {d} the {better} embedding gives the higher AUC in our run "
                             f"({avg.mean:.2f} vs {last.mean:.2f}{noise}{seeds}).")
    return (["## Table 3: retriever embeddings, average of layers vs last layer", "",
             "AUC x 100 of the scorer tuned and evaluated on prompts whose similar users were "
             "retrieved with each embedding (the same trained LightGCN); hit rate: share of held-out "
             "targets among the k neighbours' items (jobs.evaluate_retriever), in %.", "",
             *_table(["Dataset", "Retrieval layer", "Ours AUC", "Ours hit rate", "Paper AUC"], rows)], sentences)


def table4(inputs: ReportInputs) -> tuple[list[str], list[str]]:
    rows, sentences, notes = [], [], set()
    for d in inputs.datasets:
        pds = paper.PAPER_DATASET.get(d)
        for retr, ee in ((False, False), (True, False), (False, True), (True, True)):
            variant = "gcn" if retr else "none"
            if ee:
                auc, (speed, note) = N.early_exit_auc(inputs, d, variant), N.early_exit_speed(inputs, d, variant)
                if note:
                    notes.add(note)
            else:
                auc, speed = N.llm_auc(inputs, d, variant), N.llm_speed(inputs, d, variant)
            pub = paper.TABLE4.get(pds, {}).get((retr, ee)) if pds else None
            rows.append([d, "w/" if retr else "w/o", "w/" if ee else "w/o", _llm_cell(inputs, d, auc),
                         _llm_cell(inputs, d, None if speed is None else float(speed)),
                         f"{pub[0]:.2f} ({pub[1]:.2f})" if pub else "—"])
            # the other three cells are Table 2's TALLRec / GCN rows, compared there
            s = compare("Early exit without a retriever", d, auc, pub[0] if pub else None, pds) \
                if (retr, ee) == (False, True) else None
            if s:
                sentences.append(s)
        for variant in ("gcn", "none"):
            ee = pick(N.early_exit_run(inputs, d, variant), "early_exit")
            if pick(ee, "test.mean_exit_layer") is not None:
                notes.add(f"{d}, {'w/' if variant == 'gcn' else 'w/o'} retriever: mean exit layer "
                          f"{float(ee['test']['mean_exit_layer']):.1f} of {ee.get('n_layers', '?')}, "
                          f"FLOPs ratio {fmt(ee['test'].get('flops_ratio'))}, AUC without exit "
                          f"{fmt(N.points(ee['test'].get('auc_full_depth')))}, τ={ee.get('tau', '?')} "
                          f"m={ee.get('window', '?')} chosen on the valid split (first seed's scorer)")
        base, fast = N.llm_speed(inputs, d, "gcn"), N.early_exit_speed(inputs, d, "gcn")[0]
        if base and fast:
            sentences.append(f"Early exit changes the GCN-retriever scorer's throughput on {d} by "
                             f"x{fast / base:.2f} in our run (paper on {pds or 'its datasets'}: "
                             + (f"x{paper.TABLE4[pds][(True, True)][1] / paper.TABLE4[pds][(True, False)][1]:.2f})." if pds else "n/a)."))
    lines = ["## Table 4: ablation, retriever x early exit", "",
             "AUC x 100 on the test split, the same rows for all four cells (early exit: "
             "jobs.evaluate_early_exit, mean ± std over tuning seeds as in Table 2); samples/s of "
             "the scorer on this machine (paper: requests/s per A100). Figures 3-5 sweep the "
             "early-exit bench's own rows (up to 300 per split).", "",
             *_table(["Dataset", "Retriever", "Early exit", "Ours AUC", "Ours samples/s", "Paper AUC (RPS)"], rows)]
    lines += [f"- Early exit: {n}." for n in sorted(notes)]
    return lines + [""], sentences


def learning_curve_section(inputs: ReportInputs) -> list[str]:
    """The scorer's test AUC and wall time against its training set size (jobs.bench_tuning)."""
    lines = ["## Scorer tuning: learning curve", "",
             "Test AUC x 100 [95% bootstrap interval] of the scorer tuned on the first n of its "
             "seeded training prompts with the recipe's settings (bench: tuned for the curve; "
             "eval: the production scorer's run, timed where it ran), and the wall time of each step. "
             "Bench points share one cache of the frozen layers: a point's frozen-layer pass counts "
             "only the rows no earlier point cached (the test rows' pass is in the first point's "
             "test scoring).", ""]
    found = False
    for d in inputs.datasets:
        for variant, rec in sorted((pick(for_dataset(inputs.tuning, d), "variants") or {}).items()):
            found = True
            rows = []
            for p in rec.get("curve", []):
                ci = p.get("test_auc_ci95")
                auc = fmt(N.Value(N.points(p["test_auc"]), ci=(N.points(ci[0]), N.points(ci[1])) if ci else None)) \
                    if p.get("test_auc") is not None else NOT_RUN
                epochs = p.get("epochs") or []
                rate = (sum(e["examples_per_s"] for e in epochs) / len(epochs)) if epochs else None
                unrecorded = "not recorded" if p.get("source") == "eval" else NOT_RUN
                rows.append([f"{p['n']:,}", auc,
                             f"{len(epochs)} (best {p.get('best_epoch')})" if epochs else unrecorded,
                             fmt(p.get("cache_seconds")) if p.get("cache_seconds") is not None else unrecorded,
                             fmt(p.get("train_seconds")), fmt(rate) if rate is not None else unrecorded,
                             fmt(p.get("eval_seconds")), p.get("source", "")])
            lines += [f"### {d}, {variant} prompts ({rec.get('dtype')}, {rec.get('torch_threads')} threads, "
                      f"{rec.get('mean_prompt_tokens')} tokens per prompt)", "",
                      *_table(["Train examples", "Test AUC", "Epochs", "Frozen-layer pass s", "Tuning s",
                               "Examples/s per epoch", "Test scoring s", "Source"], rows)]
    return lines if found else lines + [f"{NOT_RUN}: no reports/bench/tuning.json.", ""]


def figure_sections(inputs: ReportInputs, out_dir: Path) -> list[str]:
    lines = ["## Figure 2: retrieval time, GCN vs LLM retriever", ""]
    speedups, rows = {}, []
    for d in inputs.datasets:
        secs = N.retrieval_seconds(inputs, d)
        rows.append([d, _llm_cell(inputs, d, secs["gcn"]), _llm_cell(inputs, d, secs["llm"]),
                     f"{secs['llm'] / secs['gcn']:.1f}x" if secs["gcn"] and secs["llm"] else _llm_cell(inputs, d, None)])
        if secs["gcn"] and secs["llm"]:
            speedups[d] = secs["llm"] / secs["gcn"]
    lines += _table(["Dataset", "GCN seconds", "LLM seconds", "GCN speed-up"], rows)
    if speedups:
        figures.retrieval_speedup(speedups, out_dir / "figures" / "fig2_retrieval_speedup.png")
        lines += ["![Figure 2](figures/fig2_retrieval_speedup.png)", ""]
    for num, param, label in ((3, "tau", "threshold τ"), (4, "window", "window m"), (5, "k", "retrieved users k")):
        lines += [f"## Figure {num}: AUC and throughput vs {label}", ""]
        drawn = False
        for d in inputs.datasets:
            pts = N.sweep(inputs, d, param)
            if not pts:
                continue
            kind = SPEED_LABELS.get(next((p["speed_kind"] for p in pts if p["speed_kind"]), None), "samples/s")
            name = f"fig{num}_{param}_{d}.png"
            figures.auc_and_speed(pts, label, kind, f"{d}: AUC and {kind} vs {label}", out_dir / "figures" / name)
            lines += [f"![Figure {num} {d}](figures/{name})", "",
                      *_table([label, "AUC", kind], [[f"{p['x']:g}", fmt(p["auc"]), fmt(p["speed"])] for p in pts])]
            drawn = True
        refused = [m for d in inputs.datasets if (m := N.bench_scorer_mismatch(inputs, d))]
        lines += [f"- {m}." for m in refused] + ([""] if refused else [])
        if not drawn:
            lines += [f"{NOT_RUN}: no `sweeps.{param}` of the evaluated scorers in reports/bench/early_exit.json.", ""]
    return lines


def environment_section(env: dict, inputs: ReportInputs) -> list[str]:
    lines = ["## Environment", "",
             f"- CPU: {env['cpu']} ({env['cores']} cores), RAM {env['ram_gib']} GiB, GPU: {env['gpu']}"
             + {True: "; serves bf16 (AVX-512 BF16 / AMX)", False: "; serves fp32 (no AVX-512 BF16 / AMX)"}
             .get(env.get("native_bf16"), ""),
             f"- OS: {env['os']}; Python {env['python']}",
             "- Packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items())]
    for d in inputs.datasets:
        seeds = pick(inputs.baselines.get(d), "seeds")
        eval_seed = pick(inputs.llm_eval.get(d), "evaluation.seed")
        replicas = replica_seeds(pick(inputs.llm_eval.get(d), "runs") or {})
        lines.append(f"- Seeds ({d}): baselines {seeds if seeds is not None else NOT_RUN}; "
                     f"LLM evaluation subset {eval_seed if eval_seed is not None else NOT_RUN}; "
                     f"LLM tuning model.tuning.seed" + (f" + replicas {replicas}" if replicas else ""))
    rows = [[d, r.get("role", ""), Path(str(r.get("source_file", ""))).name, str(r.get("accepted", "")),
             str(r.get("quarantined", "")), f"`{str(r.get('sha256', ''))[:16]}…`", str(r.get("data_version", ""))]
            for d in inputs.datasets for r in inputs.manifest.get(d, [])]
    lines += ["", "Data checksums (the `manifest` table):", ""]
    lines += _table(["Dataset", "Role", "File", "Accepted", "Quarantined", "sha256", "Data version"], rows) \
        if rows else [f"{NOT_RUN}: no manifest rows read.", ""]
    return lines


def build_report(inputs: ReportInputs, env: dict, out_dir: Path, jobs_run: list[dict] | None = None) -> str:
    """Write <out_dir>/REPORT.md (+ figures/) and return its text; jobs_run: the logged
    report runs (jobs_log.read_jobs), each {finished_at, lake, datasets, jobs, total_seconds}."""
    out_dir = Path(out_dir)
    t2, s2 = table2(inputs)
    t3, s3 = table3(inputs)
    t4, s4 = table4(inputs)
    lines = ["# OptiRAG report: the paper's tables on our data", "",
             f"Datasets: {', '.join(inputs.datasets)}. Paper setup: {paper.SETUP}. "
             "Regenerate with `make report`; cells read \"not run\" where an input is missing, and "
             f"\"skipped\" where the test split has fewer than {MIN_TEST_NEGATIVES} negatives (the "
             "LLM runs, hours on a CPU, are not made for an AUC that would be noise).", "",
             *t2, *t3, *t4, *learning_curve_section(inputs), *figure_sections(inputs, out_dir),
             "## Ours vs the paper", "",
             *([f"- {s}" for s in s2 + s3 + s4] or [f"- {NOT_RUN}: nothing to compare yet."]), "",
             *environment_section(env, inputs)]
    if jobs_run:
        lines += ["", "## Time to regenerate", "",
                  "Jobs `make report` ran for missing inputs (reports/report_jobs.json), wall time on "
                  "the machine above:", ""]
        lakes: dict[str, list[dict]] = {}
        for run in jobs_run:
            lakes.setdefault(run["lake"], []).append(run)
        # make report resumes: a lake filled over several runs took their sum
        lines += [f"- Lake `{lake}`: {len(runs)} run{'s' if len(runs) != 1 else ''}, "
                  f"{sum(len(r['jobs']) for r in runs)} jobs, "
                  f"{sum(r['total_seconds'] for r in runs) / 60:.1f} min in all." for lake, runs in lakes.items()]
        lines.append("")
        for run in jobs_run:
            n = len(run["jobs"])
            lines += [f"Run finished {run['finished_at']} on {', '.join(run['datasets'])} "
                      f"(lake `{run['lake']}`): {n} job{'s' if n != 1 else ''}, "
                      f"{run['total_seconds'] / 60:.1f} min in all.", "",
                      *_table(["Command", "Seconds", "Exit"],
                              [[f"`{j['command']}`", f"{j['seconds']:.0f}", str(j["rc"])] for j in run["jobs"]])]
    if inputs.problems:
        lines += ["", "Problems:", "", *[f"- {p}" for p in inputs.problems]]
    text = "\n".join(lines).rstrip() + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".REPORT.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out_dir / "REPORT.md")
    return text
