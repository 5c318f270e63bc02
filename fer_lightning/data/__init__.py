"""Training data: clip windows, the chunked stream, augmentation (loader and device), the
feature cache and the DataModule."""
