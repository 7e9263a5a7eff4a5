"""Command line: ``python -m mmlib {build,run,render,pdf,generate,chapters} ...`` (see ``--help``)."""
from __future__ import annotations

import argparse
import sys

from . import pipeline


def _params(args) -> dict:
    return pipeline.load_profile(args.profile, [(k, pipeline.parse_value(v)) for k, v in args.param or []])


def _terminate(signum, frame):
    """SIGTERM is handled like Ctrl-C: the running chapter's kernel is shut down and its temporary artifact
    folder removed on the way out (papermill and the pipeline clean up on KeyboardInterrupt)."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmlib", description="Build and re-execute the Multimodal Paradox book.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--profile", default="demo", help="parameter profile in params/ (default: demo)")
        p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                       help="override a parameter (VALUE is YAML; dotted NAME sets a nested key)")

    b = sub.add_parser("build", help="execute every chapter (reusing unchanged artifacts) and render the book")
    common(b)
    b.add_argument("--no-render", action="store_true", help="execute only")
    b.add_argument("--renderer", default="auto", choices=["auto", "quarto", "jupyter-book"])
    b.add_argument("-j", "--jobs", type=int, default=None,
                   help="chapters executed at once, each when the chapters it needs are done (default: "
                        "$MMLIB_BUILD_JOBS, else the cores up to 3; 1: one after the other with per-cell progress)")
    r = sub.add_parser("run", help="re-execute one chapter with the given parameters")
    r.add_argument("chapter", help="two-digit chapter id, e.g. 01")
    common(r)
    r.add_argument("--reuse", action="store_true", help="reuse the artifact if it is already complete")
    rd = sub.add_parser("render", help="render the executed chapters of a profile into _book/")
    rd.add_argument("--profile", default="demo")
    rd.add_argument("--renderer", default="auto", choices=["auto", "quarto", "jupyter-book"])
    pd_ = sub.add_parser("pdf", help="the whole book as one PDF, from the executed chapters of a profile "
                                     "(build/<profile>/book.pdf; nothing is re-executed)")
    pd_.add_argument("--profile", default="demo")
    pd_.add_argument("--out", default=None, help="where to write the PDF (default: build/<profile>/book.pdf)")
    g = sub.add_parser("generate", help="generate a synthetic cohort in its real on-disk layout")
    g.add_argument("cohort", choices=["mimic_eye", "mds_ed"])
    g.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="generator parameter (n, seed, bias_knobs.NAME, informativeness.NAME, ...)")
    g.add_argument("--data-dir", default="data/synthetic")
    sub.add_parser("chapters", help="list the chapters and their parameters")
    args = ap.parse_args(argv)

    import signal

    previous = signal.signal(signal.SIGTERM, _terminate)  # put back on return: main() may run inside another program
    try:
        if args.cmd == "build":
            clock = pipeline.BuildClock()
            summaries = pipeline.build(_params(args), render=not args.no_render, renderer=args.renderer, jobs=args.jobs)
            print(clock.report(summaries, "book built" if not args.no_render else "chapters executed"))
        elif args.cmd == "run":
            pipeline.check_run_overrides(args.chapter, [k for k, _ in args.param or []])
            s = pipeline.run(args.chapter, _params(args), force=not args.reuse)
            print(s.line())
        elif args.cmd == "render":
            from .book import render_book

            res = render_book(pipeline.project_root(), pipeline.build_dir() / args.profile / "executed",
                              renderer=args.renderer, pdf=pipeline.current_pdf(args.profile))
            print(f"rendered with {res.renderer} in {res.seconds:.1f} s -> {res.index_html}")
        elif args.cmd == "pdf":
            from pathlib import Path

            from .pdf import build_pdf

            executed = pipeline.build_dir() / args.profile / "executed"
            out = Path(args.out) if args.out else pipeline.build_dir() / args.profile / "book.pdf"
            res = build_pdf(pipeline.project_root(), executed, out)
            for w in res.warnings:
                print(f"warning: {w}", file=sys.stderr)
            print(f"PDF of {res.pages} pages in {res.seconds:.1f} s -> {res.pdf}")
        elif args.cmd == "generate":
            from .data.synth import generate

            params: dict = {}
            for k, v in args.param or []:
                node = params
                *parents, leaf = k.split(".")
                for p in parents:
                    node = node.setdefault(p, {})
                node[leaf] = pipeline.parse_value(v)
            root, reused = generate(args.cohort, params, data_dir=args.data_dir)
            print(f"{'reused' if reused else 'generated'}: {root}")
        elif args.cmd == "chapters":
            for cid, ch in pipeline.chapters().items():
                print(f"{cid}  {ch.path.relative_to(pipeline.project_root())}  needs={ch.needs}")
                for k, v in ch.parameters.items():
                    if k not in pipeline.INFRA:
                        print(f"      {k} = {v}")
    except (ValueError, FileNotFoundError, RuntimeError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the running chapter's kernel was stopped and its unfinished artifact removed; "
              "finished chapters keep their artifacts", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
