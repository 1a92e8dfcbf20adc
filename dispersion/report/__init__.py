"""Aggregation of run files into tidy CSVs, Markdown/LaTeX tables and figures.

Reads run files (``summary.json``, ``metrics.jsonl``), never live objects.
"""
