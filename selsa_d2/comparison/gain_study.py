"""The seed x dataset-variant study of SELSA's gain (``tools/gain_study.py``): the demo's
comparison repeated, aggregated (:data:`DESCRIPTION`)."""

import argparse
import json
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import step_record, synthetic
from ..file_io import atomic_write_text
from .dataset import DATASET_DIRNAME
from .report import format_number, markdown_table
from .steps import REPO, Budget, Comparison, StepError, banner, check_repository, run_comparison

DESCRIPTION = """Seed x dataset-variant study of SELSA's gain (the demo's comparison, repeated).

For every variant (``selsa_d2.synthetic.VARIANTS``) and every seed it runs exactly
what ``make demo`` runs (``tools/run_demo.py``: shared single-frame stage, single-frame and SELSA
continuations of the same length, evaluation of both and of SELSA with key frame only), then
prints per variant the mean, min and max over seeds of every metric, and whether the gain held
in every run. Results go to ``<out>/study.json`` and ``<out>/study.md``; every run keeps its own
directory ``<out>/<variant>/seed<k>/`` (with its ``summary.json``), so an interrupted study
resumes where it stopped and a finished one only re-aggregates.

    python tools/gain_study.py --out output/gain_study --variants demo texture --seeds 0 1 2
"""

# (row label, summary path): what the table reports, AP in % / AP points.
METRICS = (
    ("single frame: vid/mAP", ("models", "faster_rcnn", "vid", "mAP")),
    ("single frame: degraded", ("models", "faster_rcnn", "vid", "mAP_degraded")),
    ("single frame: clean", ("models", "faster_rcnn", "vid", "mAP_clean")),
    ("SELSA: vid/mAP", ("models", "selsa", "vid", "mAP")),
    ("SELSA: degraded", ("models", "selsa", "vid", "mAP_degraded")),
    ("SELSA: clean", ("models", "selsa", "vid", "mAP_clean")),
    ("SELSA key frame only: vid/mAP", ("models", "selsa_key_frame_only", "vid", "mAP")),
    ("SELSA key frame only: degraded", ("models", "selsa_key_frame_only", "vid", "mAP_degraded")),
    ("SELSA key frame only: clean", ("models", "selsa_key_frame_only", "vid", "mAP_clean")),
    ("gain from references: overall", ("gain_from_references", "overall")),
    ("gain from references: degraded", ("gain_from_references", "degraded")),
    ("gain from references: clean", ("gain_from_references", "clean")),
    ("SELSA - single frame: overall", ("selsa_vs_single_frame", "overall")),
    ("SELSA - single frame: degraded", ("selsa_vs_single_frame", "degraded")),
    ("SELSA - single frame: clean", ("selsa_vs_single_frame", "clean")),
)


def _get(summary: dict, path: Sequence[str]) -> float | None:
    node = summary
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def checks(summary: dict) -> dict[str, bool | None]:
    """The issue's robustness criteria for one run (None when a metric is missing)."""
    g = summary.get("gain_from_references", {})
    d = summary.get("selsa_vs_single_frame", {})

    def ok(cond, *values):
        return None if any(v is None for v in values) else bool(cond)

    return {
        "gain_from_references_positive": ok((g.get("overall") or 0) > 0, g.get("overall")),
        "gain_larger_on_degraded": ok(
            (g.get("degraded") or 0) > (g.get("clean") or 0), g.get("degraded"), g.get("clean")
        ),
        "selsa_ahead_of_single_frame": ok((d.get("overall") or 0) > 0, d.get("overall")),
    }


def aggregate(runs: dict[str, dict[int, dict]]) -> dict:
    """``runs[variant][seed]`` = a run's summary -> per variant: per metric {mean, min, max, n,
    values}, per criterion how many runs met it, and the seeds done."""
    out = {}
    for variant, by_seed in runs.items():
        seeds = sorted(by_seed)
        metrics = {}
        for label, path in METRICS:
            values = [_get(by_seed[s], path) for s in seeds]
            present = [v for v in values if v is not None]
            metrics[label] = {
                "mean": statistics.fmean(present) if present else None,
                "min": min(present) if present else None,
                "max": max(present) if present else None,
                "n": len(present),
                "values": dict(zip(map(str, seeds), values)),
            }
        criteria = {}
        for s in seeds:
            for name, passed in checks(by_seed[s]).items():
                c = criteria.setdefault(name, {"passed": 0, "runs": 0})
                c["runs"] += passed is not None
                c["passed"] += bool(passed)
        out[variant] = {"seeds": seeds, "metrics": metrics, "criteria": criteria}
    return out


def format_study(study: dict) -> str:
    """One markdown table per variant: mean, min, max per metric, then the criteria."""
    parts = []
    for variant, res in study.items():
        rows = []
        for label, _ in METRICS:
            m = res["metrics"][label]
            signed = label.startswith(("gain", "SELSA - "))  # differences, not AP
            rows.append([label] + [format_number(m[k], signed) for k in ("mean", "min", "max")])
        seeds = ", ".join(map(str, res["seeds"]))
        parts.append(
            f"variant {variant!r}, seeds {seeds} (AP in %, differences in AP points)\n\n"
            + markdown_table(["metric", "mean", "min", "max"], rows)
        )
        parts.append(
            "\n".join(
                f"- {name}: {c['passed']}/{c['runs']} runs" for name, c in res["criteria"].items()
            )
        )
    return "\n\n".join(parts)


def run_study(
    out_dir: Path,
    data_root: Path,
    variants: Sequence[str],
    seeds: Sequence[int],
    budget: Budget,
    opts: Sequence[str] = (),
    device: str = "cpu",
    run_one: Callable[[Comparison], dict] | None = None,
    generate: Callable[[Path, str], None] | None = None,
) -> dict:
    """Run (or reuse) every variant x seed comparison; write and return the aggregate.

    ``run_one`` / ``generate`` replace the training and the dataset generation (tests).
    """
    run_one = run_one or (
        lambda c: run_comparison(c, progress=lambda t: print(f"  - {t}", flush=True))
    )
    if generate is None:

        def generate(dataset_dir: Path, variant: str) -> None:
            synthetic.generate(dataset_dir, **synthetic.VARIANTS[variant])

    out_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[int, dict]] = {}
    for variant in variants:
        dataset_dir = data_root / variant / DATASET_DIRNAME
        generate(dataset_dir, variant)
        for seed in seeds:
            run_dir = out_dir / variant / f"seed{seed}"
            summary_file = run_dir / "summary.json"
            c = Comparison(
                run_dir,
                dataset_dir,
                budget,
                seed=seed,
                device=device,
                opts=opts,
                log=run_dir / "train_net.log",
            )
            identity = {
                "step": "comparison",
                "budget": budget.__dict__,
                "seed": seed,
                "device": device,
                "opts": [str(o) for o in opts],
                "dataset": c.dataset_identity(),
            }
            # reused only when made by the same inputs (else rerun: its steps say what differs)
            same = not step_record.compare(step_record.read_record(str(run_dir)), identity)
            if summary_file.exists() and same:
                print(
                    f"[{time.strftime('%H:%M:%S')}] {variant} seed {seed}: done before, reusing {summary_file}",
                    flush=True,
                )
                runs.setdefault(variant, {})[seed] = json.loads(summary_file.read_text())
                continue
            print(
                f"[{time.strftime('%H:%M:%S')}] {variant} seed {seed}: running in {run_dir}",
                flush=True,
            )
            start = time.time()
            run_dir.mkdir(parents=True, exist_ok=True)
            summary = run_one(c)
            summary["wall_seconds"] = time.time() - start
            atomic_write_text(str(summary_file), json.dumps(summary, indent=2))
            step_record.write_record(str(run_dir), identity)
            runs.setdefault(variant, {})[seed] = summary
            g = summary["gain_from_references"]
            print(
                f"[{time.strftime('%H:%M:%S')}] {variant} seed {seed}: {summary['wall_seconds'] / 60:.1f} min, "
                f"gain from references overall {format_number(g['overall'], True)} "
                f"degraded {format_number(g['degraded'], True)} clean {format_number(g['clean'], True)}",
                flush=True,
            )
            _write(out_dir, runs, budget)
    return _write(out_dir, runs, budget)


def _write(out_dir: Path, runs, budget: Budget) -> dict:
    """Aggregate ``runs`` and write ``study.json`` and ``study.md``; returns the aggregate."""
    study = aggregate(runs)
    atomic_write_text(
        str(out_dir / "study.json"),
        json.dumps({"budget": budget.__dict__, "variants": study}, indent=2),
    )
    atomic_write_text(str(out_dir / "study.md"), format_study(study) + "\n")
    return study


def main(argv=None) -> int:
    """``tools/gain_study.py``; user errors exit with ``gain_study.py: error: <cause>``."""
    parser = argparse.ArgumentParser(
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="output/gain_study")
    parser.add_argument(
        "--data-root",
        default="output/gain_study/datasets",
        help="datasets go to <data-root>/<variant>/",
    )
    parser.add_argument("--variants", nargs="+", default=["demo", "texture"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--shared-iters", type=int, default=Budget.shared_iters)
    parser.add_argument("--continue-iters", type=int, default=Budget.continue_iters)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="extra config options for every step (KEY VALUE ...)"
    )
    args = parser.parse_args(argv)
    start = time.time()
    for flag, value in (
        ("--shared-iters", args.shared_iters),
        ("--continue-iters", args.continue_iters),
    ):
        if value < 1:
            parser.error(f"{flag} must be at least 1 (got {value})")
    budget = Budget(args.shared_iters, args.continue_iters)
    try:
        check_repository()
        study = run_study(
            (REPO / args.out).resolve(),
            (REPO / args.data_root).resolve(),
            args.variants,
            args.seeds,
            budget,
            opts=args.opts,
            device=args.device,
        )
    except (StepError, OSError, ValueError) as e:
        raise SystemExit(f"gain_study.py: error: {e}") from None
    except subprocess.CalledProcessError as e:
        raise SystemExit(
            f"gain_study.py: error: {' '.join(e.cmd[:4])} ... failed with exit status "
            f"{e.returncode} (see {e.output or 'the output above'})"
        ) from None
    banner(f"gain study after {(time.time() - start) / 60:.1f} min: {args.out}/study.json")
    print(format_study(study))
    return 0
