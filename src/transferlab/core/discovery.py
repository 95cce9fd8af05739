"""Plug-ins by location: importing every module of a package runs its registrations."""

from __future__ import annotations

import importlib
import pkgutil
import sys


def import_submodules(package: str) -> None:
    """Import every module directly inside ``package`` (so the ``@register...`` decorators in
    them run): a new strategy or task is one file, with no import line to add elsewhere."""
    path = sys.modules[package].__path__
    for info in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{info.name}")
