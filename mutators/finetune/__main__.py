"""``python -m mutators.finetune export|train``: see :mod:`mutators.finetune`. Mistakes exit with status 2."""

from __future__ import annotations

import argparse
import sys

from elm.finetune import FinetuneError, export_examples


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mutators.finetune",
                                     description="Fine-tune a mutator's model on a run's successful children.")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write a run's successful children as prompt/completion pairs (JSON Lines)")
    ex.add_argument("run_dir", help="the run directory (holding run.db)")
    ex.add_argument("out", help="the JSON Lines file to write")
    ex.add_argument("--reexpress", action="append", default=[], metavar="OPERATOR",
                    help="also write the other operators' successes in this operator's format (repeatable)")
    ex.add_argument("--operator", action="append", default=None, metavar="OPERATOR",
                    help="only the children of this operator (repeatable; default: all)")
    ex.add_argument("--min-gain", type=float, default=None,
                    help="only children beating their best parent by more than this")
    tr = sub.add_parser("train", help="fine-tune a model on exported pairs (LoRA, or full weights)")
    tr.add_argument("--data", required=True, help="the JSON Lines file written by export")
    tr.add_argument("--model", required=True, help="hub id, local checkpoint directory, or smollm2")
    tr.add_argument("--out", required=True, help="a new directory for the adapter (or checkpoint)")
    tr.add_argument("--method", choices=("lora", "full"), default="lora")
    tr.add_argument("--max-steps", type=int, default=100)
    tr.add_argument("--max-seconds", type=float, default=600.0)
    tr.add_argument("--batch-size", type=int, default=8)
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--rank", type=int, default=16)
    tr.add_argument("--alpha", type=int, default=32)
    tr.add_argument("--max-length", type=int, default=1024)
    tr.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core)")
    tr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--eval-fraction", type=float, default=0.1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "export":
            summary = export_examples(args.run_dir, args.out, reexpress=args.reexpress, operators=args.operator,
                                      min_gain=args.min_gain)
            print(f"wrote {summary.rows} pairs to {summary.path} from {summary.successes} successful children "
                  f"({', '.join(f'{k}: {v}' for k, v in sorted(summary.by_operator.items()))}; "
                  f"{summary.unexpressed} not expressible, {summary.repeated} repeated)")
            return 0
        from mutators.finetune.train import TrainConfig, train

        config = TrainConfig(method=args.method, max_steps=args.max_steps, max_seconds=args.max_seconds,
                             batch_size=args.batch_size, lr=args.lr, rank=args.rank, alpha=args.alpha,
                             max_length=args.max_length, threads=args.threads, device=args.device, seed=args.seed,
                             eval_fraction=args.eval_fraction)
        result = train(data=args.data, model=args.model, out=args.out, config=config)
        loss = "" if result.eval_loss_before is None else \
            f"; held-out loss {result.eval_loss_before:.4f} -> {result.eval_loss_after:.4f}"
        print(f"saved {result.version} to {result.out}: {result.steps} steps ({result.stopped_by}), "
              f"{result.examples_seen} examples in {result.seconds:.1f} s ({result.seconds_per_step:.2f} s/step, "
              f"{result.seconds_per_example:.3f} s/example), loss {result.loss_first:.4f} -> "
              f"{result.loss_last:.4f}{loss}")
        return 0
    except (FinetuneError, ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
