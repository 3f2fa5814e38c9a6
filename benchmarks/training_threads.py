"""Benchmark: two trainings in parallel on one worker against one alone, with and without thread settings.

The `train_models` DAG trains the families in parallel tasks on one worker. Each training here is
the return model's network (`ReturnModule` through the shared Trainer, `training.trainer.fit`) on
a fixed synthetic set of CDNOW-sized examples for a fixed number of epochs, in its own process:

- `default`: torch's own thread count (one intra-op thread per core, in every process);
- `configured`: each training holds a `training.threads.training_slot` in one shared folder and calls
  `configure_threads` with params.yaml `training:` (threads: auto, concurrent_trainings: auto: a
  training alone takes every core; two started together share them, `ShareThreads` following the
  count during the fit).

For each it times one training alone, then two started together, and reports the ratio (parallel
wall time of the slower one / alone). The issue's target: at most 2.5 with the settings. Results
go to benchmarks/results/training_threads.json with the load average before and after.

Usage: python benchmarks/training_threads.py [--rows 20000] [--epochs 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "training_threads.json"
MODES = ("default", "configured")


def one_training(mode: str, rows: int, epochs: int, slots_home: str, queue: mp.Queue) -> None:
    """Train the return network for `epochs` on `rows` synthetic examples; put (wall, cpu, threads)."""
    from retention.params import load_params
    from training.threads import configure_threads, training_slot

    params = load_params(ROOT / "params.yaml")
    with contextlib.ExitStack() as stack:
        if mode == "configured":
            stack.enter_context(training_slot(Path(slots_home)))
            configure_threads(params.training)
        _train(params, rows, epochs, queue)


def _train(params: Any, rows: int, epochs: int, queue: mp.Queue) -> None:
    import numpy as np
    import torch

    from training.churn.model import ReturnDataModule, ReturnModule, ReturnNetwork
    from training.trainer import fit

    rng = np.random.default_rng(0)
    length, n_features = params.return_.sequence_length, 60

    def arrays(n: int) -> dict[str, np.ndarray]:
        return {
            "features": rng.normal(size=(n, n_features)).astype(np.float32),
            "events": rng.normal(size=(n, length, 3)).astype(np.float32),
            "event_type": rng.integers(1, 4, size=(n, length)),
            "lengths": rng.integers(1, length + 1, size=n),
            "returned": (rng.random(n) < 0.1).astype(np.float32),
        }

    c = params.return_
    torch.manual_seed(0)
    network = ReturnNetwork(n_features, c.hidden_size, c.sequence_size, c.event_embedding, c.dropout)
    module = ReturnModule(network, c.learning_rate, c.weight_decay)
    data = ReturnDataModule(arrays(rows), arrays(rows // 4), c.batch_size)
    trainer = params.training.model_copy(update={"max_epochs": epochs, "patience": epochs})
    with tempfile.TemporaryDirectory() as run_dir:
        started, cpu = time.perf_counter(), time.process_time()
        fit(module, data, trainer, Path(run_dir))
        queue.put((time.perf_counter() - started, time.process_time() - cpu, torch.get_num_threads()))


def run(mode: str, copies: int, rows: int, epochs: int) -> list[tuple[float, float, int]]:
    """`copies` trainings started together (spawned: each process starts torch afresh)."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    with tempfile.TemporaryDirectory() as slots_home:
        processes = [
            context.Process(target=one_training, args=(mode, rows, epochs, slots_home, queue))
            for _ in range(copies)
        ]
        for process in processes:
            process.start()
        results = [queue.get() for _ in processes]
        for process in processes:
            process.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="training examples per training")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alone/parallel pairs per mode (median)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    report: dict = {"rows": args.rows, "epochs": args.epochs, "modes": {}}
    for mode in MODES:
        alone, parallel, threads = [], [], 0
        for _ in range(args.repeats):  # interleaved, so both see the same background load
            wall, _, threads = run(mode, 1, args.rows, args.epochs)[0]
            alone.append(wall)
            parallel.append(max(wall for wall, _, _ in run(mode, 2, args.rows, args.epochs)))
        entry = {
            "threads_per_training": threads,
            "alone_seconds": round(statistics.median(alone), 1),
            "parallel_seconds": round(statistics.median(parallel), 1),
            "ratio": round(statistics.median(parallel) / statistics.median(alone), 2),
            "runs": {"alone": [round(x, 1) for x in alone], "parallel": [round(x, 1) for x in parallel]},
        }
        report["modes"][mode] = entry
        print(
            f"{mode}: {threads} threads, alone {entry['alone_seconds']}s, two in parallel {entry['parallel_seconds']}s, ratio {entry['ratio']}",
            file=sys.stderr,
        )
    report["target"] = "ratio <= 2.5 (configured)"
    report["load_average"] = {
        "before": [round(x, 2) for x in load_before],
        "after": [round(x, 2) for x in os.getloadavg()],
    }
    report["machine"] = {
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
    }
    report["measured"] = time.strftime("%Y-%m-%d %H:%M")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {args.results}")


if __name__ == "__main__":
    main()
