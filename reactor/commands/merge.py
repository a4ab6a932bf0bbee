"""`reactor merge SAMPLE`: a sample's reads in one file per barcode, across its runs.

Runs of the sample are found under `--root` (MinKNOW's data root, as `watch_root`) or
`--output-root` (host mode's `output_root`, when set) and merged per group into
`{group}/{SAMPLE}/reactor_merged/` (`reactor.disk.merged`). Only
complete runs, unless `--all`. Exit codes: 0 merged, 1 a merge failed, 2 nothing to merge
(one line on stderr each).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "merge a sample's reads into one file per barcode, across all its runs"
_PROG = "reactor merge"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sample", metavar="SAMPLE", help="the sample id (MinKNOW's sample folder)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--root", type=Path, action="append", metavar="DIR",
                       help="MinKNOW's data root (repeatable), as watch_root")  # fmt: skip
    where.add_argument("--output-root", type=Path, metavar="DIR",
                       help="host mode's output_root, where the runs' outputs are")  # fmt: skip
    parser.add_argument("--group", help="only the sample of this protocol group")
    parser.add_argument("--all", action="store_true",
                        help="merge runs that are not complete yet too")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from reactor.disk.merged import MERGED, MERGED_SAMPLE, MergeError, merge_into, sample_runs

    bases = [args.output_root] if args.output_root else list(args.root)
    try:
        found = sample_runs(bases, args.sample, args.group)
    except (MergeError, OSError) as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    failed = False
    for runs in found:
        chosen = runs.complete + (runs.running if args.all else [])
        target = runs.sample_folder / MERGED_SAMPLE
        for skipped in [] if args.all else runs.running:
            print(f"{runs.group}/{args.sample}: {skipped} is not complete: left out (--all)")
        if not chosen:
            print(f"{runs.group}/{args.sample}: no complete run yet; nothing merged")
            continue
        try:
            merged = merge_into(target, chosen)
        except Exception as exc:  # pysam raises SamtoolsError; the disk, OSError
            print(f"{_PROG}: {target}: {' '.join(str(exc).split())}", file=sys.stderr)
            failed = True
            continue
        print(f"{runs.group}/{args.sample}: {len(chosen)} run(s) into {target}")
        for name, count in sorted(merged.written.items()):
            print(f"  {name}  from {count} file(s)")
        if not merged.written:
            print(f"  no reads in MinKNOW's layout (fastq_pass/, bam_pass/, …; not {MERGED}/)")
    return 1 if failed else 0
