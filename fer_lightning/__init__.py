"""fer-lightning: facial affect from video, pretrained on emotion classes, fine-tuned by CCC."""

import os

# albumentations asks PyPI for its newest version when imported; nothing here may touch the
# network at run time (compute nodes have none, and the tests run offline)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
