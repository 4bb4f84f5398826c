"""`babel-edge heal`: recover what pruning lost, by training the kept FFN weights against the
dense model (babel_edge.heal)."""
from __future__ import annotations

DESCRIPTION = """\
Heal a pruned model: every kept FFN is trained, layer by layer, so that its decoder layer
reproduces the dense model's output when fed by the already-healed layers below (block
reconstruction); then end-to-end distillation of the dense model's next-token
distribution (--distill-steps, 0 for none; --distill-params all trains attention and norms
too). Training text: the target languages' fitting
text (the corpus's profile split, never its evaluation text; with a multi-domain corpus,
every domain but the one held out as unseen) plus --heal-text. The dense model is the one
the plan names. The result is an ordinary pruned directory (load_pruned, export, eval);
its pruning_plan.json records what healing did. Interrupted runs resume from
OUT.heal-partial/.

example: babel-edge heal --model pruned-en-de-fr --out healed-en-de-fr --budget-minutes 20
"""


def add_heal_options(s, defaults=None) -> None:
    """The options of a healing run (HealOptions), shared by `heal`, `prune --heal`, `build --heal`."""
    from ..heal.options import DISTILL_PARAMS, HealOptions

    d = defaults or HealOptions()
    s.add_argument("--heal-tokens", type=int, default=d.tokens, metavar="N",
                   help=f"training tokens (default {d.tokens:,})")
    s.add_argument("--heal-epochs", type=int, default=d.epochs, metavar="N",
                   help=f"block reconstruction passes over the tokens per layer; 0 skips it "
                        f"(distillation only) (default {d.epochs})")
    s.add_argument("--heal-lr", type=float, default=d.lr,
                   help=f"block reconstruction learning rate (default {d.lr:g})")
    s.add_argument("--distill-lr", type=float, default=d.distill_lr,
                   help=f"distillation learning rate (default {d.distill_lr:g})")
    s.add_argument("--distill-steps", type=int, default=d.distill_steps, metavar="N",
                   help=f"end-to-end distillation steps after the blocks (default {d.distill_steps}"
                        f"{': none' if not d.distill_steps else ''})")
    s.add_argument("--distill-params", choices=DISTILL_PARAMS, default=d.distill_params,
                   help="what distillation trains: the kept FFN weights (ffn) or every decoder "
                        f"weight, attention and norms too (all); never the embedding "
                        f"(default {d.distill_params})")
    s.add_argument("--heal-text", action="append", metavar="FILE",
                   help="your own UTF-8 text in the target languages to heal on too (repeatable)")
    s.add_argument("--budget-minutes", type=float, metavar="MIN",
                   help="stop healing after this many minutes (each layer gets an equal share)")
    s.add_argument("--device", choices=["cpu", "cuda"], default=d.device,
                   help="cpu (default) or cuda (bf16 autocast); cuda fails clearly without a GPU")
    s.add_argument("--heal-threads", type=int, metavar="N", help="torch threads (default: all cores)")


def heal_options(args):
    from ..heal.options import HealOptions

    return HealOptions(tokens=args.heal_tokens, epochs=args.heal_epochs, lr=args.heal_lr,
                       distill_steps=args.distill_steps, distill_lr=args.distill_lr,
                       distill_params=args.distill_params,
                       budget_minutes=args.budget_minutes,
                       device=args.device, threads=args.heal_threads).validate()


def register(sub) -> None:
    from .common import CORPUS_HELP, add_nproc

    s = sub.add_parser("heal", help="recover a pruned model by training its kept FFN weights "
                                    "against the dense model", description=DESCRIPTION,
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    s.add_argument("--model", required=True, metavar="DIR",
                   help="a pruned-model directory written by 'babel-edge prune'")
    s.add_argument("--out", required=True, metavar="DIR", help="where the healed directory goes")
    add_heal_options(s)
    s.add_argument("--corpus", help=CORPUS_HELP + " (training text; default: the built-in corpus)")
    add_nproc(s)
    s.set_defaults(func=run)


class HealBars:
    """One rich bar per healing stage (dense pass, layers, distillation)."""

    def __init__(self):
        self.stage, self.cm, self.advance, self.done = None, None, None, 0

    def __call__(self, stage: str, done: int, total: int, extra: str) -> None:
        from ..progress import count_progress

        if stage != self.stage:
            self.close()
            self.stage, self.done = stage, 0
            self.cm = count_progress(stage, total, "tokens" if "pass" in stage or "top" in stage
                                     else "layers" if "block" in stage else "steps")
            self.advance = self.cm.__enter__()
        self.advance(max(0, done - self.done), extra=extra)
        self.done = done

    def close(self) -> None:
        if self.cm is not None:
            self.cm.__exit__(None, None, None)
        self.stage, self.cm = None, None


def run(args) -> int:
    from ..heal.run import heal, summary_lines
    from .common import out

    bars = HealBars()
    try:
        path, plan = heal(args.model, args.out, corpus=args.corpus, heal_text=args.heal_text or (),
                          options=heal_options(args), progress=bars)
    finally:
        bars.close()
    from .. import distributed as dd

    if not dd.is_main():
        return 0
    for line in summary_lines(plan.healing):
        out.print(line, markup=False, highlight=False)
    out.print(f"saved {path}  (score it with 'babel-edge eval --model {path}')")
    return 0
