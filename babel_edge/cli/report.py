"""`babel-edge report`: heatmaps, shared/specific experts and language families (babel_edge.report)."""
from __future__ import annotations

import argparse
from pathlib import Path

REPORT_DESCRIPTION = """\
Turn a profile into figures and numbers: a layer x expert frequency heatmap per
language (same expert order in every panel) and a grid of all, shared experts
(high-frequency in all / most languages), language-specific experts (high in
some language, low in most others; with LAPE's entropy view), their counts per layer,
a language similarity matrix, a hierarchical clustering dendrogram, and how well
the clusters agree with the true language families — next to the same numbers for
a random expert split recorded in the same pass and for shuffled family labels.

Writes DIR/report.html (self-contained, images inlined), DIR/summary.json and
DIR/*.png.

example: babel-edge report six.profile.safetensors --out report/
"""


def register(sub) -> None:
    s = sub.add_parser("report", help="heatmaps, shared/specific experts and language families "
                                      "from a profile",
                       description=REPORT_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("profile", metavar="PROFILE", help="a file written by 'babel-edge profile'")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    s.add_argument("--high", type=float, default=None, metavar="FREQ",
                   help="frequency from which an expert counts as high-frequency for a language "
                        "(default: twice the top-k share, i.e. 0.5)")
    s.add_argument("--low", type=float, default=None, metavar="FREQ",
                   help="frequency up to which an expert counts as low for a language "
                        "(default: half the top-k share, i.e. 0.125)")
    s.add_argument("--most", type=float, default=0.75, metavar="SHARE",
                   help="'shared by most' = high in at least this share of languages; "
                        "'specific' = high in some, low in at least this share of the others "
                        "(default 0.75)")
    s.set_defaults(func=run)


def run(args) -> int:
    from ..profile import load_profile
    from ..report import write_report

    profile = load_profile(args.profile)
    summary = write_report(profile, args.out, high=args.high, low=args.low, most=args.most)
    print(f"report: {Path(args.out) / 'report.html'}")
    fa = summary["family_agreement"].get("family")
    if fa:
        print("family agreement (nearest neighbour in the same family / adjusted Rand index): "
              + ", ".join(f"{name} {fa[name]['nn_same']:.2f} / {fa[name]['ari']:.2f}"
                          for name in ("experts", "random_split", "neurons", "shuffled")))
    pl = summary["per_layer"]
    print(f"experts shared by all languages per layer: {pl['shared_all']}")
    print(f"language-specific experts per layer:       {pl['specific']}")
    return 0
