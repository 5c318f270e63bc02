"""The evaluation core: frames stitched from windows, post-processing and scores."""
