"""The comparison's results: the gains it measures, its summary and its tables."""

import os
from dataclasses import asdict

# (key, label): the evaluated models, in table order.
MODELS = (
    ("faster_rcnn", "Faster R-CNN (single frame)"),
    ("selsa", "SELSA"),
    ("selsa_key_frame_only", "SELSA, key frame only"),
    ("faster_rcnn_seq_nms", "single frame + Seq-NMS"),
    ("selsa_seq_nms", "SELSA + Seq-NMS"),
)
TABLE_COLUMNS = (
    # (header, results section, key)
    ("vid/mAP", "vid", "mAP"),
    ("mAP degraded", "vid", "mAP_degraded"),
    ("mAP clean", "vid", "mAP_clean"),
    ("slow", "vid", "mAP_slow"),
    ("medium", "vid", "mAP_medium"),
    ("fast", "vid", "mAP_fast"),
    ("bbox/AP50", "bbox", "AP50"),
    ("ms/frame", "timing", "ms_per_frame"),
)
# (label, vid metric) of the gain rows
GAIN_METRICS = (("overall", "mAP"), ("degraded", "mAP_degraded"), ("clean", "mAP_clean"))


def _vid(results: dict, key: str, metric: str) -> float | None:
    return results.get(key, {}).get("vid", {}).get(metric)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def gains(results: dict) -> dict:
    """``gain_from_references`` (SELSA - SELSA key frame only, same weights) and
    ``selsa_vs_single_frame`` (SELSA - single frame), each {overall, degraded, clean} in AP points."""
    return {
        "gain_from_references": {
            name: _diff(_vid(results, "selsa", m), _vid(results, "selsa_key_frame_only", m))
            for name, m in GAIN_METRICS
        },
        "selsa_vs_single_frame": {
            name: _diff(_vid(results, "selsa", m), _vid(results, "faster_rcnn", m))
            for name, m in GAIN_METRICS
        },
    }


def summarize(results: dict, c=None) -> dict:
    """The summary of one comparison: the models' results, the gains (:func:`gains`) and, given
    the :class:`~selsa_d2.comparison.steps.Comparison`, what it was run with."""
    summary = {"models": results, **gains(results)}
    if c is not None:
        summary["run"] = {
            "seed": c.seed,
            "dataset": c.dataset_record(),
            "configs": list(c.configs),
            **asdict(c.budget),
            # results depend on the thread count (floating-point sums): recorded for comparisons
            "threads": os.environ.get("OMP_NUM_THREADS", f"default ({os.cpu_count()} cores)"),
        }
    return summary


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table with aligned columns."""
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def format_number(value: float | None, signed: bool = False) -> str:
    """One decimal (with its sign when ``signed``); ``-`` for a missing value."""
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def format_table(results: dict) -> str:
    """One row per evaluated model, the TABLE_COLUMNS metrics (AP in percent; '-' when absent)."""
    rows = []
    for key, label in MODELS:
        if key not in results:
            continue
        rows.append(
            [label]
            + [
                format_number(results[key].get(section, {}).get(metric))
                for _, section, metric in TABLE_COLUMNS
            ]
        )
    return markdown_table(["model"] + [c[0] for c in TABLE_COLUMNS], rows)


def format_gains(summary: dict) -> str:
    """Two rows: gain from references and SELSA minus single frame, overall / degraded / clean."""
    rows = [
        ["gain from references (SELSA - key frame only)"]
        + [format_number(summary["gain_from_references"][n], True) for n, _ in GAIN_METRICS],
        ["SELSA - single frame"]
        + [format_number(summary["selsa_vs_single_frame"][n], True) for n, _ in GAIN_METRICS],
    ]
    return markdown_table(["vid/mAP difference (AP points)"] + [n for n, _ in GAIN_METRICS], rows)
