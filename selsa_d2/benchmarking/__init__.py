"""The benchmarks (``benchmarks/*.py`` are their command lines): inference (:mod:`.inference`
over :mod:`.inference_models`, :mod:`.inference_variants`, :mod:`.inference_phases`,
:mod:`.inference_report`), training (:mod:`.training`), AMP against float32 (:mod:`.amp_check`)
and Seq-NMS (:mod:`.seq_nms`), with what they share: models and inputs (:mod:`.configs`), a
run's set-up (:mod:`.run_setup`), time and memory measurement (:mod:`.measure`) and the report
(:mod:`.report`: hardware, tables, JSON).

Every speed figure is a ratio against a baseline measured in the same process and run. The
configs are the repository's (``configs/``): run from a checkout installed with
``pip install -e .``.
"""
