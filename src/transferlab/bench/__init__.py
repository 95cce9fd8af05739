"""Performance benchmark: our stack against a plain PyTorch loop doing the same work.

``transferlab bench --preset quick`` (or ``scripts/benchmark.py``) runs it; the pieces live in
``settings`` (presets), ``reference`` (the plain loop), ``stack`` (our pipeline pieces),
``accuracy`` (time to accuracy), ``run`` (orchestration) and ``report`` (JSON and Markdown).
"""
