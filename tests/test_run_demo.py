"""The demo's comparison table (tools/run_demo.py)."""
from repo_scripts import load_script

run_demo = load_script("tools/run_demo.py", "selsa_run_demo")


def test_format_table_rows_columns_and_missing_values():
    results = {
        "faster_rcnn": {"vid": {"mAP": 50.08, "mAP_degraded": 39.4, "mAP_clean": 57.7, "mAP_slow": 64.5,
                                "mAP_medium": 52.6, "mAP_fast": 47.7}, "bbox": {"AP50": 50.04},
                        "timing": {"ms_per_frame": 15.61}},
        "selsa": {"vid": {"mAP": 59.2, "mAP_slow": None}, "bbox": {"AP50": 59.1}, "timing": {"ms_per_frame": 18.0}},
    }
    lines = run_demo.format_table(results).splitlines()
    assert len(lines) == 4
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["model", "vid/mAP", "mAP degraded", "mAP clean", "slow", "medium", "fast", "bbox/AP50", "ms/frame"]
    baseline = [c.strip() for c in lines[2].strip("|").split("|")]
    selsa = [c.strip() for c in lines[3].strip("|").split("|")]
    assert baseline == ["Faster R-CNN (single frame)", "50.1", "39.4", "57.7", "64.5", "52.6", "47.7", "50.0", "15.6"]
    assert selsa == ["SELSA", "59.2", "-", "-", "-", "-", "-", "59.1", "18.0"]
    assert len({len(line) for line in lines}) == 1  # columns aligned
