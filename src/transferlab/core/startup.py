"""Start-up trimming: keep torchmetrics from importing packages transferlab never uses from it
(issue 21).

``import lightning`` imports torchmetrics, which imports optional packages at import time
whenever they are installed: ``transformers`` for its text and multimodal metrics (BERTScore,
InfoLM, CLIPScore; the dev extras pull it in through sentence-transformers), ``torchvision``
(with ``torchvision.models``) for ARNIQA, LPIPS, DISTS and the detection metrics, and
``matplotlib`` for its plot methods: together over a second of every training process's
start-up on 2 cores. Its ``__init__`` also imports ``scipy.signal`` (about a second) only to add
``scipy.signal.hamming`` back for the SRMR audio metric's ``SRMRpy``; the hook skips that import
(:data:`SKIPPED_AT_TORCHMETRICS_INIT`) and the same one in its audio packages (the flag
``_SCIPI_AVAILABLE``); scipy itself stays available to its metrics.
:func:`skip_torchmetrics_transformers` marks them unavailable *to torchmetrics only*, right
after torchmetrics computes its availability flags; transferlab's own imports of them
(sentence-transformers, torchvision transforms, plots) and a user's are unaffected. Installed
by the entry points (``transferlab.cli``: train.py, eval.py and their sweep workers;
``transferlab.commands``), not by ``import transferlab``, so a notebook that imports
transferlab's modules keeps torchmetrics as it is. ``TRANSFERLAB_TORCHMETRICS_TRANSFORMERS=1``
keeps torchmetrics' own behaviour everywhere.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType

TORCHMETRICS_IMPORTS = "torchmetrics.utilities.imports"
# the optional packages torchmetrics imports at import time for metrics transferlab never uses,
# and the requirement flags (in torchmetrics.utilities.imports) that make it import them:
# transformers (text and multimodal metrics), torchvision (ARNIQA, LPIPS, DISTS, detection;
# it brings torchvision.models and torch._dynamo), matplotlib (the metrics' plot methods)
HIDDEN_FROM_TORCHMETRICS = {
    "transformers": (
        "_TRANSFORMERS_AVAILABLE",
        "_TRANSFORMERS_GREATER_EQUAL_4_4",
        "_TRANSFORMERS_GREATER_EQUAL_4_10",
    ),
    "torchvision": ("_TORCHVISION_AVAILABLE",),
    "matplotlib": ("_MATPLOTLIB_AVAILABLE",),
    # (sic) the flag its audio packages import scipy.signal under, only for SRMRpy's patch below;
    # _SCIPY_AVAILABLE, which its metrics check, is left as it is
    "scipy": ("_SCIPI_AVAILABLE",),
}
OPT_OUT_VARIABLE = "TRANSFERLAB_TORCHMETRICS_TRANSFORMERS"
TORCHMETRICS = "torchmetrics"
# packages torchmetrics' __init__ imports only to patch them for metrics transferlab never uses
# (scipy: ``scipy.signal.hamming`` for SRMRpy, the SRMR audio metric's back end); their
# ``package_available`` check answers False to that __init__ alone
SKIPPED_AT_TORCHMETRICS_INIT = frozenset({"scipy"})


def mark_unavailable(module: ModuleType) -> list[str]:
    """Set the requirement flags of :data:`HIDDEN_FROM_TORCHMETRICS` in ``module`` (torchmetrics'
    ``utilities.imports``) to unavailable.

    The flags are lightning-utilities ``RequirementCache`` objects, whose truth value is their
    ``available`` attribute once set. Returns the names of the flags it changed.
    """
    changed = []
    for package, names in HIDDEN_FROM_TORCHMETRICS.items():
        for name in names:
            flag = getattr(module, name, None)
            if flag is None or not hasattr(flag, "_check_available"):
                continue
            flag.available = False
            flag.message = f"{package} hidden from torchmetrics ({OPT_OUT_VARIABLE}=1 keeps it)"
            changed.append(name)
    return changed


class _WrappedLoader(importlib.abc.Loader):
    """A module's real loader, with ``exec_module`` changed by the subclasses."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)

    def __getattr__(self, name: str) -> object:  # the rest (get_source, resources) unchanged
        return getattr(self.loader, name)


class _FlagsLoader(_WrappedLoader):
    """Runs the real loader of torchmetrics' import flags, then hides the packages."""

    def exec_module(self, module: ModuleType) -> None:
        super().exec_module(module)
        mark_unavailable(module)


class _InitLoader(_WrappedLoader):
    """Runs torchmetrics' ``__init__`` with ``package_available`` answering False, to that
    ``__init__`` only, for :data:`SKIPPED_AT_TORCHMETRICS_INIT`."""

    def exec_module(self, module: ModuleType) -> None:
        import lightning_utilities.core.imports as imports

        original = imports.package_available

        def package_available(package_name: str) -> bool:
            caller = sys._getframe(1).f_globals.get("__name__")
            if caller == TORCHMETRICS and package_name in SKIPPED_AT_TORCHMETRICS_INIT:
                return False
            return original(package_name)

        imports.package_available = package_available  # torchmetrics imports it by name
        try:
            self.loader.exec_module(module)
        finally:
            imports.package_available = original
            if module.__dict__.get("package_available") is package_available:
                module.package_available = original


WRAPPED_LOADERS = {TORCHMETRICS_IMPORTS: _FlagsLoader, TORCHMETRICS: _InitLoader}


class _FlagsFinder(importlib.abc.MetaPathFinder):
    """Finds torchmetrics' package and its import flags with the other finders and wraps their
    loaders (:data:`WRAPPED_LOADERS`)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        wrapper = WRAPPED_LOADERS.get(fullname)
        if wrapper is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = wrapper(spec.loader)
                return spec
        return None


def skip_torchmetrics_transformers() -> bool:
    """Hide :data:`HIDDEN_FROM_TORCHMETRICS` from torchmetrics in this process, unless
    torchmetrics is loaded.

    Returns True when the hook is in place.
    """
    if os.environ.get(OPT_OUT_VARIABLE) == "1":
        return False
    loaded = sys.modules.get(TORCHMETRICS_IMPORTS) or sys.modules.get(TORCHMETRICS)
    if loaded is not None:  # too late to save the import time; leave torchmetrics as it is
        return False
    if not any(isinstance(finder, _FlagsFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FlagsFinder())
    return True
