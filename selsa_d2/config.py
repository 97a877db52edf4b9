"""SELSA config keys, added to a Detectron2 config with :func:`add_selsa_config`."""

from detectron2.config import CfgNode as CN


def add_selsa_config(cfg):
    """Add the keys used by selsa-d2 to ``cfg`` (in place). Call before ``merge_from_file``."""
    _C = cfg

    # ---------------------------------------------------------------- model
    _C.MODEL.SELSA = CN()
    # Attention heads ("blocks" in mmtracking) of every SelsaAggregator.
    _C.MODEL.SELSA.NUM_ATTENTION_BLOCKS = 16
    # Backbone feature the neck reads: "res5" for the DC5 models, "res4" for truncated tiny nets.
    _C.MODEL.SELSA.BACKBONE_OUT_FEATURE = "res5"
    # Output channels of the 3x3 conv + ReLU neck after the backbone (mmtracking: 512).
    _C.MODEL.SELSA.NECK_CHANNELS = 512
    # Zero-initialise the weight of the last norm of every residual branch, as mmdet's ResNet
    # (zero_init_residual=True, its default) does: each block starts as the identity, which makes
    # training from scratch much faster. Needs trainable norms; pretrained weights overwrite it.
    _C.MODEL.SELSA.ZERO_INIT_RESIDUAL = False
    # Zero-initialise each aggregator's output fc, so that a SELSA model loaded from a single-frame
    # checkpoint (only the aggregators missing) starts as exactly that single-frame detector.
    _C.MODEL.SELSA.ZERO_INIT_AGGREGATOR_OUTPUT = False
    # Name of the single feature map the neck outputs (what RPN.IN_FEATURES / ROI_HEADS.IN_FEATURES use).
    _C.MODEL.SELSA.NECK_OUT_FEATURE = "neck"

    # Temporal RoI Align (mmtracking's TemporalRoIAlign), used by ROI_HEADS.NAME "SelsaTRoIROIHeads".
    _C.MODEL.SELSA.TROI = CN()
    # Name in TEMPORAL_ROI_ALIGN_REGISTRY.
    _C.MODEL.SELSA.TROI.NAME = "TemporalRoIAlign"
    # Most similar points kept per key RoI position and reference frame (top-k of the cosine similarity).
    _C.MODEL.SELSA.TROI.NUM_MOST_SIMILAR_POINTS = 2
    # Channel groups of the temporal attention over (key, references); 0 = plain mean, no embed network.
    _C.MODEL.SELSA.TROI.NUM_TEMPORAL_ATTENTION_BLOCKS = 4
    # Most similarity scores (or stacked-frame feature values) held at once: bounds the search's
    # memory (2**25 float32 = 128 MB), not its result.
    _C.MODEL.SELSA.TROI.CHUNK_SIZE = 33554432

    _C.MODEL.SELSA.INFERENCE = CN()
    # Cache per-frame features (backbone, RPN, RoI features after each shared FC) so that each
    # frame of a video is computed once. False recomputes every reference for every key frame
    # (kept for the equivalence test and the benchmark).
    _C.MODEL.SELSA.INFERENCE.CACHE_FEATURES = True
    # Append the key frame's own proposals to the references (mmtracking does at test time).
    _C.MODEL.SELSA.INFERENCE.KEY_FRAME_AS_REF = True
    # "Key frame only" evaluation: no reference frames, the key frame's own proposals are its only
    # references (whatever KEY_FRAME_AS_REF and INPUT.VIDEO.TEST_NUM_REFS say). The same weights
    # evaluated with and without it measure the gain from the other frames ("gain from references").
    _C.MODEL.SELSA.INFERENCE.KEY_FRAME_ONLY = False

    # mmdet MaxIoUAssigner's min_pos_iou, read by the "MaxIoUAssignerRPN" proposal generator
    # (selsa_d2/modeling/rpn.py): a gt's best anchors become positive (low-quality matches) only
    # if their IoU is >= this. 0: a low-quality match for every gt, as Detectron2's RPN.
    _C.MODEL.RPN.LOW_QUALITY_MIN_IOU = 0.0
    # How the "MaxIoUAssignerRPN" normalises its two losses (summed over the sampled anchors):
    # "batch_size" divides by RPN.BATCH_SIZE_PER_IMAGE x images (Detectron2); "sampled_anchors"
    # by the number of sampled anchors, positives and negatives each counted at least once per
    # image, plus float32 eps (mmdet AnchorHead.loss, avg_factor): they differ when fewer than
    # BATCH_SIZE_PER_IMAGE anchors get sampled.
    _C.MODEL.RPN.LOSS_NORMALIZER = "batch_size"

    # R-CNN proposal matching (SelsaROIHeads, SelsaTRoIROIHeads, MaxIoUAssignerROIHeads): True adds
    # mmdet MaxIoUAssigner's low-quality matches (match_low_quality=True, gt_max_assign_all=True):
    # a proposal that is the best match (IoU >= LOW_QUALITY_MIN_IOU) of a gt goes to that gt, the
    # last such gt winning, even if it overlaps another gt more. False: Detectron2's Matcher.
    _C.MODEL.ROI_HEADS.LOW_QUALITY_MATCHES = False
    _C.MODEL.ROI_HEADS.LOW_QUALITY_MIN_IOU = 0.5

    # Initialisation of SelsaBoxHead's shared FCs: "c2_xavier" (Detectron2's FastRCNNConvFCHead:
    # uniform, bound sqrt(3 / fan_in)) or "xavier_uniform" (mmdet ConvFCBBoxHead: Glorot uniform,
    # bound sqrt(6 / (fan_in + fan_out))); biases 0 either way.
    _C.MODEL.ROI_BOX_HEAD.FC_INIT = "c2_xavier"

    # ---------------------------------------------------------------- video sampling
    _C.INPUT.VIDEO = CN()
    # Training references: "bilateral_uniform" (both sides within +-FRAME_RANGE, key excluded)
    # or "uniform" (anywhere within +-FRAME_RANGE, key excluded where the video allows).
    _C.INPUT.VIDEO.TRAIN_SAMPLER = "bilateral_uniform"
    _C.INPUT.VIDEO.TRAIN_NUM_REFS = 2
    _C.INPUT.VIDEO.TRAIN_FRAME_RANGE = 9
    # Test references. MODE "offline": sequence level, references may lie in the future;
    # "online": causal, only frames already seen.
    _C.INPUT.VIDEO.TEST_MODE = "offline"
    # Offline strategies: "adaptive_stride" (NUM_REFS spread evenly over the whole video, as in
    # the paper and mmtracking) or "fixed_window" (NUM_REFS around the key frame at FRAME_STRIDE).
    # Online always uses the previous NUM_REFS frames at FRAME_STRIDE.
    _C.INPUT.VIDEO.TEST_SAMPLER = "adaptive_stride"
    _C.INPUT.VIDEO.TEST_NUM_REFS = 14
    _C.INPUT.VIDEO.TEST_FRAME_STRIDE = 1

    # ---------------------------------------------------------------- data
    # "detectron2": ResizeShortestEdge as usual; "mmcv": mmcv's size rounding and cv2 bilinear
    # resampling, so that converted mmtracking checkpoints get identical inputs.
    _C.INPUT.RESIZE_STYLE = "detectron2"
    # Relative sampling weights of the DATASETS.TRAIN entries (same length). Empty: plain
    # concatenation, every key frame equally likely (what mmtracking does for VID + DET).
    _C.DATASETS.TRAIN_SAMPLING_WEIGHTS = ()
    # COCO-VID json datasets the config itself declares, as (name, json_file, image_root) triples,
    # e.g. (("my_train", "ann/train.json", "frames/"), ("my_val", "ann/val.json", "frames/")).
    # Every entry point registers them when it sets up its config (selsa_d2.engine.setup_selsa_cfg,
    # which calls register_datasets_from_config), before DATASETS.TRAIN / TEST are read, so a json pair needs no code: name them in DATASETS.TRAIN /
    # TEST. Classes come from each json's categories; paths are as given (relative: to the cwd).
    _C.DATASETS.COCO_VID = ()

    # ---------------------------------------------------------------- evaluation
    _C.TEST.VID = CN()
    # Frames on each side used for a gt instance's motion IoU (FGFA protocol).
    _C.TEST.VID.MOTION_IOU_RANGE = 10
    # Box extent in the "vid" metrics: "devkit" (pixel-inclusive, width x2 - x1 + 1, as the ILSVRC
    # devkit and FGFA's imagenet_vid_eval.py; the published VID mAP) or "continuous" (x2 - x1, as
    # pycocotools). bbox/* (pycocotools) is always continuous.
    _C.TEST.VID.BOX_CONVENTION = "devkit"
    # Seq-NMS (Han et al. 2016) as FGFA / the original SELSA code ship it (TEST.SEQ_NMS there;
    # selsa_d2/postprocessing/seq_nms.py): per video and class, on the boxes with score >
    # SCORE_THRESH before per-frame NMS, link boxes of consecutive frames with IoU >= LINK_IOU,
    # rescore the best-scoring linked sequence ("mean" or "max" of its scores), remove the boxes
    # with IoU >= SUPPRESS_IOU to it, repeat while a sequence scores >= MIN_SEQUENCE_SCORE and
    # links remain; then the usual per-frame NMS and TEST.DETECTIONS_PER_IMAGE cap. Needs the
    # whole video: offline evaluation, VideoPredictor.predict_video, demo/demo.py offline;
    # INPUT.VIDEO.TEST_MODE "online" and streaming refuse it. Needs a SelsaRCNN model (it returns
    # each frame's pre-NMS candidates when this is enabled).
    _C.TEST.VID.SEQ_NMS = CN()
    _C.TEST.VID.SEQ_NMS.ENABLED = False
    _C.TEST.VID.SEQ_NMS.LINK_IOU = 0.5
    _C.TEST.VID.SEQ_NMS.SUPPRESS_IOU = 0.3
    _C.TEST.VID.SEQ_NMS.SCORE_THRESH = 1e-3
    _C.TEST.VID.SEQ_NMS.MIN_SEQUENCE_SCORE = 1e-2
    _C.TEST.VID.SEQ_NMS.RESCORE = "mean"
    # Inference (train_net.py --eval-only, demo/demo.py, VideoPredictor) refuses an empty
    # MODEL.WEIGHTS and weights that leave any parameter or buffer of the model uninitialised
    # (missing, or another shape). True runs such a (partly) random model with a warning: for
    # smoke tests and benchmarks only. Training always accepts partial weights (fine-tuning).
    _C.TEST.ALLOW_MISSING_WEIGHTS = False
    # The same for the reverse: weights with trained tensors the model has no parameter for (a SELSA
    # checkpoint in the single-frame config would silently drop its aggregators) are refused;
    # True ignores them with a warning.
    _C.TEST.ALLOW_UNUSED_WEIGHTS = False

    # ---------------------------------------------------------------- process
    # With MODEL.DEVICE cpu, train_net.py and demo/demo.py ask glibc malloc to keep freed memory
    # for reuse instead of mmap/munmap-ing every large tensor (selsa_d2.cpu_allocator): SELSA
    # training on the CPU runs ~1.6x faster, the process keeps its peak heap resident. Like
    # CUDNN_BENCHMARK, a process setting applied by the entry point, not by the model.
    _C.RETAIN_FREED_CPU_MEMORY = True
    # train_net.py refuses to train from iteration 0 into an OUTPUT_DIR that holds a complete
    # model_final.pth (Detectron2 would silently replace it); True allows it.
    _C.OVERWRITE_FINISHED_MODEL = False
    return cfg
