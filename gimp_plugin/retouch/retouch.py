#!/usr/bin/env python3
"""GIMP 3 plug-in entry point: Filters > Enhance > Retouch AI (see retouch_gimp/plugin.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from retouch_gimp.plugin import main  # noqa: E402

main()
