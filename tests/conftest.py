"""Shared test set-up: a fixed time zone so log stamps without a zone are predictable."""

import os
import time

os.environ["TZ"] = "UTC"
time.tzset()
