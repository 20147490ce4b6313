"""`tinylm project check PATH` and `tinylm project readme RUN`: the course's final project, checked and written up.

    tinylm project check runs/gpt --hub you/tiny-gpt              # one line per requirement: ✓ / ✗ / ?
    tinylm project check abgabe/ --model-class model:DecoderOnlyLM --lang de --json
    tinylm project readme runs/gpt --lang de --hub you/tiny-gpt    # README.md (and val_loss.png) in the run

`check` exits with 0 only when every requirement holds (1 otherwise), so a teacher's script can loop over thirty
submissions; `--json` prints one object per call.
"""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("project", help="check a final-project submission, or write its README",
                       description="The course's final project: `check` tells, requirement by requirement, "
                                   "whether a submission (a tinylm run or a student's folder) meets it; `readme` "
                                   "writes the submission README from a run.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="one line per requirement: ✓ holds, ✗ does not (why), ? not checked",
                               description="Check a final-project submission: decoder-only and causal, under 1M "
                                           "parameters, a transformers tokenizer, 3+ epochs with a falling "
                                           "validation loss, an own training loop (no Trainer), W&B train and "
                                           "eval loss, a Hub repo whose card has a description and tags. Exit 0 "
                                           "only when every requirement holds.")
    check.add_argument("path", metavar="PATH", help="a tinylm run directory or a student's submission folder")
    check.add_argument("--hub", metavar="USER/NAME", help="the submission's Hub repo (default: the huggingface.co "
                                                          "link in its README.md)")
    check.add_argument("--model-class", metavar="MODULE:CLASS",
                       help="the student's model class, imported from PATH to test it (runs the student's code; "
                            "its arguments come from PATH/config.json)")
    check.add_argument("--lang", choices=("en", "de"), default="en", help="language of the lines (en)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    readme = actions.add_parser("readme", help="write the submission README from a run",
                                description="Write the submission README of the course's final project: summary, "
                                            "links, architecture table, training details, the validation-loss "
                                            "plot and a sample generation, every value read from the run.")
    readme.add_argument("run", metavar="RUN", help="a tinylm run directory or a folder of course.project.save")
    readme.add_argument("--lang", choices=("de", "en"), default="de", help="language of the README (de)")
    readme.add_argument("--hub", metavar="USER/NAME", help="the Hub repo to link")
    readme.add_argument("--wandb", metavar="URL", help="the W&B run to link (default: the run's own, if online)")
    readme.add_argument("--out", help="the README's file (default RUN/README.md); val_loss.png goes beside it")
    readme.add_argument("--overwrite", action="store_true", help="replace an existing README")


def run(args: argparse.Namespace) -> int:
    if args.action == "readme":
        from ..course.readme import write_readme

        print(write_readme(args.run, args.out, lang=args.lang, hub=args.hub, wandb=args.wandb,
                           overwrite=args.overwrite))
        return 0
    from ..course.submission import check_submission

    report = check_submission(args.path, hub=args.hub, model_class=args.model_class, lang=args.lang)
    print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) if args.json else report.text())
    return 0 if report.passed else 1
