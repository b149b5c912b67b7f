"""Command-line tools around asv: tools/mtb.py is the entry point (``python -m tools.mtb``)."""
