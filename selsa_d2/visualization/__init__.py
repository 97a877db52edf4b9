"""Drawing for the demo (OpenCV)."""
