"""`tinylm space RUN [RUN ...] --repo USER/NAME`: a Hugging Face Space serving the playground (docs/space.md)."""

from __future__ import annotations

import argparse
import shlex


def add_parser(sub) -> None:
    p = sub.add_parser(
        "space", help="publish the web playground for runs as a Hugging Face Space",
        description="Write a Gradio Space (app.py, pinned requirements.txt, README.md with the Space's metadata, "
                    "and the runs' weights) and upload it to the Hub; --dry-run writes the folder only.")
    # Not nargs="+": no run is a one-line error like the others, not argparse's usage text.
    p.add_argument("runs", nargs="*", metavar="RUN", help="run directories (or Hub ids), one playground column each")
    p.add_argument("--repo", required=True, metavar="USER/NAME", help="the Space to create or update")
    p.add_argument("--private", action="store_true", help="create the Space private (an existing one keeps its "
                                                          "visibility)")
    p.add_argument("--dry-run", action="store_true", help="write the folder only (to --out, default "
                                                          "space-NAME) and upload nothing")
    p.add_argument("--out", metavar="FOLDER", help="where the folder is written (and kept, when pushing)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier Space folder at --out")
    p.add_argument("--token", help="Hugging Face token with write access (default: HF_TOKEN, or the token "
                                   "saved by `hf auth login`)")
    p.add_argument("--license", default="mit", help="license in the Space's metadata (mit)")


def run(args: argparse.Namespace) -> int:
    from ..publishing.space import build_space, check_repo_id, push_space

    check_repo_id(args.repo)  # before the default folder's name is taken from it
    if args.dry_run:
        out = args.out or f"space-{args.repo.split('/')[1]}"
        folder = build_space(args.runs, out, repo_id=args.repo, overwrite=args.overwrite, license=args.license)
        print(f"wrote the Space folder for {args.repo}: {folder}")
        print(f"try it locally: cd {shlex.quote(str(folder))} && python app.py")
        return 0
    url = push_space(args.runs, args.repo, private=args.private, token=args.token, out=args.out,
                     overwrite=args.overwrite, license=args.license)
    print(f"pushed the Space: {url} (the Hub builds it in a few minutes)")
    return 0
