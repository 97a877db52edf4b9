"""Post-processing of detections over whole videos (Seq-NMS)."""

from .seq_nms import SeqNMSParams, seq_nms_class, seq_nms_video

__all__ = ["SeqNMSParams", "seq_nms_class", "seq_nms_video"]
