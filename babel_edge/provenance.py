"""Where an artefact came from: package versions and a timestamp, recorded the same way by
every stage that writes one (pruning plans, export summaries, healing records)."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md

from . import __version__

PACKAGES = ("torch", "transformers", "gguf", "llama_cpp_python", "onnx", "onnxruntime",
            "optimum", "optimum-onnx")


def package_versions(packages=PACKAGES) -> dict[str, str]:
    """{"babel-edge": version, package: version} for the installed ones among `packages`."""
    out = {"babel-edge": __version__}
    for pkg in packages:
        try:
            out[pkg] = _md.version(pkg)
        except _md.PackageNotFoundError:
            pass
    return out


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
