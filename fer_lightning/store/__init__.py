"""The face-clip store: ``write`` fills it (``fer-lightning preprocess``), ``read`` points a
corpus's records at it."""
