"""Where the test corpus of real email replies lives (tests/corpus, copied with its licences)."""

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
