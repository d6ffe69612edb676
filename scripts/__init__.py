"""Maintainers' scripts that make the lab's shipped files and tables: the science and continual tables and the λ grid
(experiments), the embedded model and its card (pretrain, model_card), the concept bank (build_bank).

Run them from the repository root as `python -m scripts.<name>`. They use ldifs_core; ldifs_core never imports
them (tests/test_architecture.py checks it).
"""
