"""The video demo (``demo/demo.py``): SELSA on a user video or a folder of frames.

Follows Detectron2's ``demo/demo.py`` conventions::

    python demo/demo.py --config-file configs/selsa_R_50_DC5_7e_imagenetvid.yaml \
        --video-input clip.mp4 --output out/ --opts MODEL.WEIGHTS model_final.pth

Writes an annotated video (mp4, ``mp4v``) drawn with Detectron2's ``Visualizer`` and a JSON
list with one entry per frame (see ``demo/README.md``).

Modes (``--mode``, default ``INPUT.VIDEO.TEST_MODE``):

* ``offline``: references may come from the whole video. The video is counted once (a cheap
  ``grab()`` pass) and its frames are decoded lazily on demand: only the most recently used
  frames (``TestReferenceSampler.max_cached_frames() + 2``) are held in memory, frames are
  decoded forward from the current position and a backward jump re-opens the video and skips
  forward (exact, unlike ``CAP_PROP_POS_FRAMES`` seeking on some codecs).
* ``online``: causal; each frame is read, predicted, drawn and written before the next is read.

Frame size changes: every frame is resized to the first frame's size (logged once per new size),
because the model's reference frames and the output video need one size. The JSON still gives
boxes in the pixel coordinates of the frame as stored in the input, with its own ``height`` /
``width``, and marks such frames with ``"resized": true``.

Bad input (missing file, unreadable video or image, no frames, unusable ``MODEL.WEIGHTS``)
stops with a message naming the file and a non-zero exit status. Outputs are checked before
inference starts: never an input (or inside an input frames folder) or each other, a video
container the writer supports (``VIDEO_CONTAINERS``), writable. An output that was started is
always finalised, also on SIGINT and SIGTERM: the video writer is released and the JSON is
written for the frames done so far.
"""

from .arguments import VIDEO_CONTAINERS, DemoInputError, get_parser, setup_cfg
from .loop import Terminated, main, run
from .outputs import VideoOutputs, check_outputs, open_source, output_paths
