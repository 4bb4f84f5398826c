"""Copy one `make demo` run's results into bench/results/demo_gemma3_270m (what README quotes).

    make demo && .venv/bin/python bench/publish_demo.py [--build babel-edge-build]

Copies bench/bench.{json,md,png} and build_summary.json from the build directory, after
checking they belong to one finished build (the bench's artefacts are the build's), and
adds made_by.json: the build command, when it finished, and this checkout's commit.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEST = ROOT / "results" / "demo_gemma3_270m"
COMMAND = "babel-edge build --langs en,de,fr --rate 0.5 --trim-vocab --out babel-edge-build --force"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default="babel-edge-build")
    a = p.parse_args(argv)
    build = Path(a.build)
    files = [build / "build_summary.json"] + [build / "bench" / f"bench.{x}" for x in ("json", "md", "png")]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        print(f"publish_demo: {', '.join(missing)} missing; run 'make demo' first", file=sys.stderr)
        return 2
    summary = json.loads(files[0].read_text())
    bench = json.loads(files[1].read_text())
    measured = {str(Path(r["path"])) for r in bench["results"]}
    made = {str(Path(v)) for v in summary.get("artefacts", {}).values()}
    if not measured <= made:
        print(f"publish_demo: bench.json measured {', '.join(sorted(measured - made))}, which this "
              f"build did not make; rerun 'make demo'", file=sys.stderr)
        return 2
    DEST.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, DEST / f.name)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    (DEST / "made_by.json").write_text(json.dumps(
        {"command": COMMAND, "build_finished": time.strftime(
            "%Y-%m-%d %H:%M", time.gmtime(files[0].stat().st_mtime)), "commit": commit}, indent=2) + "\n")
    print(f"copied {len(files)} files to {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
