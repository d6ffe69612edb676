"""Only what pyproject.toml cannot say: the top-level assets/ (embedded model, concept bank, λ grid) ship inside the
installed package as ldifs_core/assets, where ldifs_core.paths looks outside a checkout."""
from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["ldifs_core", "ldifs_core.*", "app", "app.*"],
                                     exclude=["*.__pycache__"]) + ["ldifs_core.assets"],
    package_dir={"ldifs_core.assets": "assets"},
    package_data={"ldifs_core.assets": ["*.json", "model/*", "bank/*"]},
)
