"""Start-up cost of DataLoader workers per multiprocessing context: time from `iter(loader)` to the first batch.

    python benchmarks/loader_startup.py                       # quickstart data, 1 and 2 workers, 3 repeats
    python benchmarks/loader_startup.py --workers 1 2 4 --repeats 5

Each figure is the median over repeats of building the quickstart training loader with
`data.multiprocessing_context=<ctx>` and waiting for its first batch, minus the same with `num_workers=0` (the
batch's own cost), all in one process, contexts interleaved. The same is then run inside a joblib/loky worker
(what `hydra/launcher=joblib` does), where the process-wide default context is loky's; "default" there is what
the DataLoader did before the context was chosen explicitly. The synthetic data is generated into --cache-dir
on the first run (not timed).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
CONTEXTS = ("fork", "forkserver", "spawn")


def compose_config(cache_dir: str, workers: int, context: str | None):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import romp_hydra.config  # noqa: F401  (resolvers)

    GlobalHydra.instance().clear()
    overrides = ["experiment=quickstart", f"paths.cache_dir={cache_dir}", f"data.num_workers={workers}",
                 "logger=none"]
    if context is not None:
        overrides.append(f"data.multiprocessing_context={context}")
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="bench_loader"):
        return compose("train", overrides=overrides)


def first_batch_seconds(cache_dir: str, workers: int, context: str | None) -> float:
    """Seconds from iter(loader) to its first batch; `context=None`: the DataLoader's default context."""
    from romp_hydra.data import loader as loader_module

    cfg = compose_config(cache_dir, workers, context)
    loader = loader_module.build_train_loader(cfg)
    if context is None and workers > 0:
        loader.multiprocessing_context = None  # what the loader did before the context was named
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    elapsed = time.perf_counter() - start
    del iterator
    return elapsed


def measure(cache_dir: str, workers_list: list[int], repeats: int, contexts: tuple) -> dict:
    first_batch_seconds(cache_dir, 0, None)  # warm: data generated, modules imported
    results: dict = {}
    for _ in range(repeats):
        results.setdefault(("in-process", 0), []).append(first_batch_seconds(cache_dir, 0, None))
        for workers in workers_list:
            for context in contexts:
                try:
                    value = first_batch_seconds(cache_dir, workers, context)
                except Exception as err:  # noqa: BLE001  (the failure is the figure)
                    value = f"fails: {type(err).__name__}: {err}"[:90]
                results.setdefault((context or "default", workers), []).append(value)
    return results


def report(title: str, results: dict) -> None:
    base = statistics.median(results[("in-process", 0)])
    print(f"\n{title}\n  first batch in-process (num_workers=0): {base * 1000:.0f} ms")
    print(f"  {'context':<12}{'workers':>8}{'first batch':>14}{'start-up':>12}")
    for (context, workers), values in results.items():
        if workers == 0:
            continue
        failures = [v for v in values if isinstance(v, str)]
        if failures:
            print(f"  {context:<12}{workers:>8}  {failures[0]}")
            continue
        median = statistics.median(values)
        print(f"  {context:<12}{workers:>8}{median * 1000:>11.0f} ms{(median - base) * 1000:>9.0f} ms")


def in_loky(cache_dir: str, workers_list: list[int], repeats: int) -> dict:
    from joblib.externals.loky import get_reusable_executor  # the pool behind joblib's loky backend

    return get_reusable_executor(max_workers=1).submit(
        measure, cache_dir, workers_list, repeats, (None, *CONTEXTS)).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "romp_hydra_bench_cache"))
    args = parser.parse_args()
    report("plain process (basic launcher, submitit)", measure(args.cache_dir, args.workers, args.repeats, CONTEXTS))
    report("inside a joblib/loky worker (hydra/launcher=joblib)", in_loky(args.cache_dir, args.workers, args.repeats))


if __name__ == "__main__":
    main()
