"""Unit tests of the Python stage and the benchmark's pure parts: no emulator, only the
`spotstep` CLI (target/debug, or $SPOTSTEP_TARGET_DIR) for the contract. Build first with
`cargo build -j2 --workspace --bins`."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "local"))
sys.path.insert(0, str(REPO / "bench"))
