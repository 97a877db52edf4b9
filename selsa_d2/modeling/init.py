"""Initialisations for continuing a single-frame detector as SELSA (the shared-start regime)."""

import logging

from torch import nn

__all__ = ["zero_init_aggregator_outputs"]

logger = logging.getLogger(__name__)


def zero_init_aggregator_outputs(box_head: nn.Module) -> int:
    """Zero the output fc (weight and bias) of every aggregator of a ``SelsaBoxHead``; return the count.

    Each shared FC layer computes ``x + aggregator(x, refs)``; with a zero output fc the sum is
    ``x``, so a SELSA model whose other weights come from a single-frame checkpoint starts as
    exactly that detector. The output fc still gets a gradient (the attention output times the
    loss gradient), and the other aggregator layers get theirs once it is non-zero: aggregation
    is learned from a detector that is already decent, and can only be added where it helps the
    loss. (The same idea as mmdet's zero_init_residual for residual branches.)
    """
    aggregators = getattr(box_head, "aggregators", None)
    if aggregators is None:
        raise ValueError(
            f"MODEL.SELSA.ZERO_INIT_AGGREGATOR_OUTPUT needs a box head with aggregators (SelsaBoxHead), "
            f"got {type(box_head).__name__}"
        )
    for agg in aggregators:
        nn.init.zeros_(agg.fc.weight)
        nn.init.zeros_(agg.fc.bias)
    logger.info(
        "Zero-initialised the output fc of %d aggregators (MODEL.SELSA.ZERO_INIT_AGGREGATOR_OUTPUT)",
        len(aggregators),
    )
    return len(aggregators)
