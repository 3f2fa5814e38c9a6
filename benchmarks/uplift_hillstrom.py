"""Benchmark: EVALUATION.md task 3 (uplift) on the Hillstrom e-mail experiment, every learner and baseline.

The reference splits: stratified by (arm, outcome > 0), 70 / 30, seeds 0..9. Four binary tasks
(women's and men's e-mail vs none, on visit and on conversion) report the Qini coefficient, uplift
AUC and uplift@30% of each learner per split; one policy task (three arms, spend, budget 30%,
propensity 1/3) reports the value per customer of each policy by IPW and doubly robust estimates.
Every learner is fitted on the training part only: ours (`blend`) tunes its weights by inner
cross-validation on that part, and its policy chooses which arms it may give by the inner
cross-validated DR value, also on that part. Mean and standard deviation over the seeds, fit
seconds beside each learner. Results: benchmarks/results/uplift_hillstrom.{json,md} and Qini
curves of seed 0 (uplift_hillstrom_qini_*.png).

Usage: python benchmarks/uplift_hillstrom.py [--data ../shared/data] [--seeds 10] [--workers 2]
       [--learners random,risk,...]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")  # one thread per worker: before numpy loads its BLAS

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
CONTROL = "No E-Mail"
WOMENS, MENS = "Womens E-Mail", "Mens E-Mail"
TASKS = [(WOMENS, "visit"), (WOMENS, "conversion"), (MENS, "visit"), (MENS, "conversion")]
LEARNERS = [
    "random",
    "risk",
    "response",
    "s_learner",
    "t_learner",
    "x_learner",
    "class_transformation",
    "dr_learner",
    "blend",
    "net",
]
BUDGET = 0.3
PROPENSITY = 1 / 3  # the protocol's policy task: each arm with probability 1/3
CURVES = ("random", "response", "s_learner", "t_learner", "blend", "net")  # drawn for seed 0
# Targets (mean over the ten splits): Qini per task, IPW value per customer of our policy.
TARGETS = {"Womens E-Mail / visit": 0.066, "Womens E-Mail / conversion": 0.090, "Mens E-Mail / visit": 0.028}
POLICY_TARGET = 0.95
# EVALUATION.md's reference figures (Qini, mean over the same splits).
REFERENCE = {
    "Womens E-Mail / visit": {
        "random": -0.001,
        "risk": -0.000,
        "response": 0.031,
        "s_learner": 0.060,
        "t_learner": 0.047,
        "x_learner": 0.049,
        "class_transformation": 0.032,
    },
    "Womens E-Mail / conversion": {
        "random": 0.015,
        "risk": 0.047,
        "response": 0.031,
        "s_learner": 0.084,
        "t_learner": 0.045,
        "x_learner": 0.062,
        "class_transformation": 0.027,
    },
    "Mens E-Mail / visit": {
        "random": -0.005,
        "risk": -0.026,
        "response": 0.025,
        "s_learner": 0.016,
        "t_learner": 0.011,
        "x_learner": 0.009,
        "class_transformation": 0.003,
    },
    "Mens E-Mail / conversion": {
        "random": 0.029,
        "risk": -0.023,
        "response": 0.030,
        "s_learner": 0.011,
        "t_learner": 0.012,
        "x_learner": -0.013,
        "class_transformation": -0.001,
    },
}
REFERENCE_POLICY = {
    "nobody": 0.680,
    "random arm": 0.830,
    "t_learner": 0.831,
    "men's e-mail to a random 30%": 0.950,
}

if TYPE_CHECKING:
    from retention.params import UpliftParams
    from training.uplift.data import CampaignLog


def _quiet() -> None:
    """One thread per worker and no library chatter (the machine is shared)."""
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.getLogger("causalml").setLevel(logging.ERROR)


def load(data: Path, outcome: str) -> CampaignLog:
    """hillstrom.csv read through the product's campaign-log reader."""
    from training.uplift.data import read_campaign_log

    return read_campaign_log(data / "hillstrom" / "hillstrom.csv", outcome, CONTROL, fmt="hillstrom")


def split(campaign: CampaignLog, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference split: stratified by (arm, outcome > 0), 70 / 30."""
    from sklearn.model_selection import train_test_split

    strata = np.char.add(campaign.arm.to_numpy().astype(str), (campaign.outcome > 0).astype(int).astype(str))
    rows = np.arange(len(campaign))
    train, test = train_test_split(rows, test_size=0.3, random_state=seed, stratify=strata)
    return np.sort(train), np.sort(test)


def params() -> UpliftParams:
    from retention.params import load_params

    return load_params(ROOT / "params.yaml").uplift


def binary_job(data: Path, seed: int, outcome: str, learners: list[str]) -> dict[str, Any]:
    """Every learner on one split of one outcome: both arms' metrics from one multi-arm fit."""
    _quiet()
    from training.uplift.data import FeatureEncoder
    from training.uplift.evaluation import pair_rows, qini_points, ranking_metrics
    from training.uplift.registry import make_learner

    p = params()
    campaign = load(data, outcome)
    train_rows, test_rows = split(campaign, seed)
    train, test = campaign.subset(train_rows), campaign.subset(test_rows)
    encoder = FeatureEncoder().fit(train.features)
    X_train, X_test = encoder.transform(train.features), encoder.transform(test.features)
    rows, curves, choices = [], {}, {}
    for name in learners:
        started = time.perf_counter()
        learner = make_learner(name, p, CONTROL, seed).fit(
            X_train, train.arm.to_numpy(), train.outcome, train.propensity
        )
        seconds = time.perf_counter() - started
        uplift = learner.predict_uplift(X_test)
        if name == "blend":
            choices = learner.describe()["chosen"]
        for arm in (WOMENS, MENS):
            pair, treated = pair_rows(test.arm.to_numpy(), arm, CONTROL)
            score = uplift[f"uplift_{arm}"].to_numpy()[pair]
            metrics = ranking_metrics(test.outcome[pair], score, treated)
            rows.append(
                {
                    "seed": seed,
                    "task": f"{arm} / {outcome}",
                    "learner": name,
                    "fit_seconds": seconds,
                    **metrics,
                }
            )
            if seed == 0 and name in CURVES:
                curves[(f"{arm} / {outcome}", name)] = qini_points(
                    test.outcome[pair], score, treated
                ).to_dict("list")
        logging.info("seed %d %s %s: %.1fs", seed, outcome, name, seconds)
    return {"rows": rows, "curves": curves, "choices": {f"{seed} {outcome}": choices}}


def _rank_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Ranking-only scores (the baselines) as positive ranks, so the budget policy takes their top B."""
    return scores.rank(pct=True)


def choose_arms(
    X: np.ndarray,
    arm: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray,
    p: UpliftParams,
    seed: int,
    choice: dict[str, Any],
) -> tuple[list[str], dict[str, float]]:
    """Which arms our policy may give: every arm, or one, by the inner cross-validated DR value on the training part.

    Per-customer arm choices from noisy uplift estimates can do worse than one strong arm at the
    budget (the winner's curse across arms); the training part decides, never the test part.
    """
    from training.uplift.evaluation import budget_policy, policy_value_dr
    from training.uplift.learners import ArmOutcomes, Blend
    from training.uplift.tuning import inner_folds

    treatments = sorted(set(arm) - {CONTROL})
    candidates = {"all arms": treatments, **{f"{a} only": [a] for a in treatments}}
    values: dict[str, list[float]] = {name: [] for name in candidates}
    for fit_rows, score_rows in inner_folds(arm, y, p.inner_folds, seed):
        blend = Blend(p, CONTROL, seed, choice=choice).fit(
            X[fit_rows], arm[fit_rows], y[fit_rows], propensity[fit_rows]
        )
        uplift = blend.predict_uplift(X[score_rows])
        expected = ArmOutcomes(p, seed).fit(X[fit_rows], arm[fit_rows], y[fit_rows]).predict(X[score_rows])
        for name, arms in candidates.items():
            policy = budget_policy(uplift, CONTROL, BUDGET, arms)
            values[name].append(
                policy_value_dr(
                    y[score_rows], arm[score_rows], policy, propensity[score_rows], expected
                ).value
            )
    means = {name: float(np.mean(v)) for name, v in values.items()}
    best = max(candidates, key=lambda name: means[name])
    return candidates[best], means


def policy_job(data: Path, seed: int, learners: list[str]) -> dict[str, Any]:
    """The three-arm spend policies on one split: IPW and DR value per customer at a 30% budget."""
    _quiet()
    from training.uplift.data import FeatureEncoder
    from training.uplift.evaluation import budget_policy, policy_value_dr, policy_value_ipw
    from training.uplift.learners import ArmOutcomes, Blend
    from training.uplift.registry import make_learner

    p = params()
    campaign = load(data, "spend")
    train_rows, test_rows = split(campaign, seed)
    train, test = campaign.subset(train_rows), campaign.subset(test_rows)
    encoder = FeatureEncoder().fit(train.features)
    X_train, X_test = encoder.transform(train.features), encoder.transform(test.features)
    a_train, a_test = train.arm.to_numpy(), test.arm.to_numpy()
    p_train, p_test = np.full(len(train), PROPENSITY), np.full(len(test), PROPENSITY)
    treatments = sorted(set(a_train) - {CONTROL})
    rng = np.random.default_rng(seed)
    n_treated = int(np.floor(BUDGET * len(test)))
    policies: dict[str, np.ndarray] = {"nobody": np.full(len(test), CONTROL, dtype=object)}
    random_arm = np.full(len(test), CONTROL, dtype=object)
    picked = rng.choice(len(test), n_treated, replace=False)
    random_arm[picked] = rng.choice(treatments, n_treated)
    policies["random arm"] = random_arm
    mens = np.full(len(test), CONTROL, dtype=object)
    mens[rng.choice(len(test), n_treated, replace=False)] = MENS
    policies["men's e-mail to a random 30%"] = mens
    seconds: dict[str, float] = {}
    best_mean_arm = max(treatments, key=lambda a: train.outcome[a_train == a].mean())
    chosen: dict[str, Any] = {}
    for name in learners:
        if name == "random":
            continue
        started = time.perf_counter()
        learner = make_learner(name, p, CONTROL, seed).fit(X_train, a_train, train.outcome, p_train)
        seconds[name] = time.perf_counter() - started
        uplift = learner.predict_uplift(X_test)
        if name == "risk":  # least likely to buy untreated first, all given the arm with the best mean spend
            policies[name] = budget_policy(_rank_scores(uplift), CONTROL, BUDGET, [best_mean_arm])
        elif not learner.effect_sizes:  # the response model: top B by expected spend when treated, its arm
            policies[name] = budget_policy(_rank_scores(uplift), CONTROL, BUDGET)
        else:
            policies[name] = budget_policy(uplift, CONTROL, BUDGET)
        if name == "blend":
            assert isinstance(learner, Blend)
            started = time.perf_counter()
            arms, figures = choose_arms(X_train, a_train, train.outcome, p_train, p, seed, learner.choice)
            seconds["blend policy"] = seconds[name] + time.perf_counter() - started
            policies["blend policy"] = budget_policy(uplift, CONTROL, BUDGET, arms)
            chosen = {"arms": arms, "inner_cv_dr_value": figures, "blend": learner.choice}
        logging.info("seed %d spend %s: %.1fs", seed, name, seconds[name])
    expected = ArmOutcomes(p, seed).fit(X_train, a_train, train.outcome).predict(X_test)
    rows = []
    for name, policy in policies.items():
        ipw = policy_value_ipw(test.outcome, a_test, policy, p_test)
        dr = policy_value_dr(test.outcome, a_test, policy, p_test, expected)
        rows.append(
            {
                "seed": seed,
                "policy": name,
                "ipw": ipw.value,
                "ipw_se": ipw.se,
                "dr": dr.value,
                "dr_se": dr.se,
                "treated_share": float(np.mean(policy != CONTROL)),
                "mens_share": float(np.mean(policy == MENS)),
                "fit_seconds": seconds.get(name, 0.0),
            }
        )
    return {"rows": rows, "chosen": {str(seed): chosen}}


def summarise(frame: pd.DataFrame, by: str, metrics: list[str]) -> dict[str, Any]:
    """Mean and sd over the seeds (and the per-seed values) of each metric, per `by`."""
    out: dict[str, Any] = {}
    for key, group in frame.groupby(by, sort=False):
        group = group.sort_values("seed")
        out[str(key)] = {
            m: {
                "mean": round(float(group[m].mean()), 4),
                "sd": round(float(group[m].std(ddof=1)), 4),
                "per_seed": [round(float(v), 4) for v in group[m]],
            }
            for m in metrics
        }
        out[str(key)]["fit_seconds"] = round(float(group["fit_seconds"].mean()), 2)
    return out


def markdown(results: dict[str, Any]) -> str:
    """The tables of uplift_hillstrom.md."""
    lines = [
        "# Uplift on Hillstrom (EVALUATION.md task 3)",
        "",
        f"Reference splits: stratified by (arm, outcome > 0), 70 / 30, seeds {results['seeds'][0]}..{results['seeds'][-1]}; "
        "mean ± sd over the seeds; fit seconds = mean wall time of one fit on the training part (all three arms, "
        f"{results['machine']['cpus']} CPUs shared, one thread per model). Generated by `benchmarks/uplift_hillstrom.py` "
        f"in {results['seconds'] / 60:.1f} minutes.",
        "",
        "## Qini coefficient per task (test parts)",
        "",
        "| learner | " + " | ".join(results["tasks"]) + " | fit s |",
        "|---|" + "---|" * (len(results["tasks"]) + 1),
    ]
    binary = results["binary"]
    for name in results["learners"]:
        cells = []
        for task in results["tasks"]:
            m = binary[task][name]["qini"]
            ref = REFERENCE[task].get(name)
            cells.append(
                f"{m['mean']:.3f} ± {m['sd']:.3f}" + (f" (ref {ref:.3f})" if ref is not None else "")
            )
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {binary[results['tasks'][0]][name]['fit_seconds']:.1f} |"
        )
    lines += [
        "",
        "## Uplift AUC and uplift@30% (mean ± sd)",
        "",
        "| learner | " + " | ".join(results["tasks"]) + " |",
        "|---|" + "---|" * len(results["tasks"]),
    ]
    for name in results["learners"]:
        cells = [
            f"{binary[t][name]['uplift_auc']['mean']:.4f} ± {binary[t][name]['uplift_auc']['sd']:.4f} / "
            f"{binary[t][name]['uplift_at_30']['mean']:.4f} ± {binary[t][name]['uplift_at_30']['sd']:.4f}"
            for t in results["tasks"]
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Policy task: three arms, spend, budget 30%, propensity 1/3 (value per customer)",
        "",
        "| policy | IPW | DR | treated share | men's e-mail share | fit s | reference (IPW) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in results["policy"].items():
        ref = REFERENCE_POLICY.get(name)
        lines.append(
            f"| {name} | {m['ipw']['mean']:.3f} ± {m['ipw']['sd']:.3f} | {m['dr']['mean']:.3f} ± {m['dr']['sd']:.3f} | "
            f"{m['treated_share']['mean']:.2f} | {m['mens_share']['mean']:.2f} | {m['fit_seconds']:.1f} | {'' if ref is None else f'{ref:.3f}'} |"
        )
    lines += [
        "",
        "## Targets (mean over the splits)",
        "",
        "| target | bound | ours | held |",
        "|---|---|---|---|",
    ]
    for row in results["targets"]:
        lines.append(
            f"| {row['target']} | {row['bound']} | {row['value']:.4f} | {'yes' if row['held'] else 'NO'} |"
        )
    lines += ["", "## Notes", ""] + [f"- {note}" for note in results["notes"]] + [""]
    return "\n".join(lines)


def plots(curves: dict[str, dict[str, list[float]]], out: Path) -> None:
    """One PNG of Qini curves per task (seed 0's test part), from the points kept in the JSON."""
    from training.uplift.evaluation import CURVE_POINTS, plot_qini

    share = np.linspace(0, 1, CURVE_POINTS)
    for task, named in curves.items():
        slug = task.lower().replace(" / ", "_").replace(" ", "_").replace("-", "")
        frames = {name: pd.DataFrame({"share": share, "qini": q}) for name, q in named.items()}
        plot_qini(frames, out / f"uplift_hillstrom_qini_{slug}.png", f"Hillstrom {task}, seed 0 test part")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--learners", default=",".join(LEARNERS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="Rewrite the .md from the .json and the notes file; fit nothing.",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    notes_path = args.out / "uplift_hillstrom_notes.json"
    if args.render_only:
        results = json.loads((args.out / "uplift_hillstrom.json").read_text())
        results["notes"] = json.loads(notes_path.read_text()) if notes_path.exists() else []
        (args.out / "uplift_hillstrom.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        (args.out / "uplift_hillstrom.md").write_text(markdown(results))
        plots(results["qini_curves_seed0"], args.out)
        return
    learners = args.learners.split(",")
    seeds = list(range(args.seeds))
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        binary_jobs = [
            pool.submit(binary_job, args.data, s, o, learners) for s in seeds for o in ("visit", "conversion")
        ]
        policy_jobs = [pool.submit(policy_job, args.data, s, learners) for s in seeds]
        binary = [j.result() for j in binary_jobs]
        policy = [j.result() for j in policy_jobs]
    seconds = time.perf_counter() - started
    tasks = [f"{a} / {o}" for a, o in TASKS]
    frame = pd.DataFrame([r for b in binary for r in b["rows"]])
    by_task = {
        t: summarise(frame[frame["task"] == t], "learner", ["qini", "uplift_auc", "uplift_at_30"])
        for t in tasks
    }
    policy_frame = pd.DataFrame([r for p in policy for r in p["rows"]])
    by_policy = summarise(policy_frame, "policy", ["ipw", "dr", "treated_share", "mens_share"])
    targets = [
        {
            "target": f"Qini {t} (blend)",
            "bound": f">= {b}",
            "value": by_task[t]["blend"]["qini"]["mean"],
            "held": by_task[t]["blend"]["qini"]["mean"] >= b,
        }
        for t, b in TARGETS.items()
        if "blend" in learners
    ]
    if "blend policy" in by_policy:
        value = by_policy["blend policy"]["ipw"]["mean"]
        targets.append(
            {
                "target": "policy IPW value (blend policy)",
                "bound": f"> {POLICY_TARGET}",
                "value": value,
                "held": value > POLICY_TARGET,
            }
        )
    results = {
        "dataset": "hillstrom",
        "split": {"stratify": "(arm, outcome > 0)", "test_share": 0.3, "seeds": seeds},
        "seeds": seeds,
        "tasks": tasks,
        "learners": learners,
        "params": params().model_dump(),
        "reference_qini": REFERENCE,
        "reference_policy_ipw": REFERENCE_POLICY,
        "binary": by_task,
        "policy": by_policy,
        "blend_choices": {k: v for b in binary for k, v in b["choices"].items()},
        "policy_choices": {k: v for p in policy for k, v in p["chosen"].items()},
        "targets": targets,
        "notes": [],
        "seconds": round(seconds, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "workers": args.workers},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, dict[str, pd.DataFrame]] = {}
    for b in binary:
        for (task, name), points in b["curves"].items():
            curves.setdefault(task, {})[name] = pd.DataFrame(points)
    results["qini_curves_seed0"] = {
        t: {n: c["qini"].round(2).tolist() for n, c in cs.items()} for t, cs in curves.items()
    }
    plots(results["qini_curves_seed0"], args.out)
    if notes_path.exists():  # hand-written observations kept beside the generated figures
        results["notes"] = json.loads(notes_path.read_text())
    (args.out / "uplift_hillstrom.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (args.out / "uplift_hillstrom.md").write_text(markdown(results))
    for row in targets:
        logging.info(
            "%s: %.4f (%s) %s",
            row["target"],
            row["value"],
            row["bound"],
            "held" if row["held"] else "NOT held",
        )
    logging.info("done in %.1f minutes", seconds / 60)


if __name__ == "__main__":
    main()
