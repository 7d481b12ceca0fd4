"""A training script imported by mistake: it exits as soon as it is imported."""

import sys

from torch import nn

Net = nn.Identity
sys.exit(0)
