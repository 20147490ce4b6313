"""`tinylm push RUN --repo USER/NAME`: publish a run on the Hugging Face Hub (--dry-run DIR: locally)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "push", help="publish a run on the Hugging Face Hub",
        description="Upload a run (weights, config, tokenizer, loss curve and a model card) to a Hub model "
                    "repo. Load it back with `tinylm sample USER/NAME` or tinylm.load('USER/NAME').")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--repo", required=True, metavar="USER/NAME", help="model repo to create or update")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps "
                                                          "its visibility)")
    p.add_argument("--token", help="Hugging Face token with write access (default: HF_TOKEN, or the token "
                                   "saved by `hf auth login`)")
    p.add_argument("--dry-run", metavar="DIR", help="write the exact folder that would be uploaded to DIR "
                                                    "and upload nothing (DIR loads like the repo)")
    p.add_argument("--license", default="mit", help="license of the weights in the model card (mit)")
    p.add_argument("--language", help="language code(s) of the training text for the model card, comma "
                                      "separated, e.g. en or en,fr (default: en for the built-in corpora)")
    p.add_argument("--dataset", help="Hub dataset id(s) of the training text for the model card, comma "
                                     "separated (default: the built-in corpus' own dataset)")
    p.add_argument("--description", help="a description of the model, first in the model card (under the title)")
    p.add_argument("--tags", help="tags for the model card, comma separated (added to tinylm's own), e.g. "
                                  "shakespeare,course-project")


def run(args: argparse.Namespace) -> int:
    from ..publishing.hub import push

    where = push(args.run, args.repo, private=args.private, token=args.token, dry_run=args.dry_run,
                 license=args.license, language=args.language.split(",") if args.language else None,
                 datasets=args.dataset.split(",") if args.dataset else None, description=args.description,
                 tags=args.tags.split(",") if args.tags is not None else None)
    if args.dry_run:
        print(f"wrote the folder that `tinylm push {args.run} --repo {args.repo}` would upload: {where}")
    else:
        print(f"pushed {args.run} to {where}")
    return 0
