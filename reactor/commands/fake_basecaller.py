"""`reactor fake-basecaller IN OUT` or `--dorado IN`: the stand-in for dorado, without a GPU.

Two modes. With OUT, `reactor.sim.fake_basecaller` writes one FASTQ per input into
`OUT/pass/` and `OUT/fail/` (what it writes, its exit codes); the engine's `fake` preset
runs it. With `--dorado` and no OUT, `reactor.sim.dorado_stream` writes like `dorado
basecaller MODEL IN`: one unaligned BAM (or, with `--emit-fastq`, FASTQ) stream on
stdout, reads dropped, split and barcoded as dorado does; the `fake-dorado-bam` and
`fake-dorado-fastq` presets run it. Both need the pod5 library, imported only when the
command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reactor.commands import arguments

HELP = (
    "stand-in for dorado: FASTQ per .pod5 into OUT/pass and OUT/fail, or with --dorado "
    "one BAM or FASTQ stream on stdout, as dorado basecaller writes"
)
# The dorado mode's model, as reactor.sim.dorado_reads.DEFAULT_MODEL (not imported: the
# parser stays light).
DORADO_DEFAULT_MODEL = "dna_r10.4.1_e8.2_400bps_hac@v5.0.0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="IN", help="folder of .pod5 files")
    parser.add_argument(
        "output",
        type=Path,
        nargs="?",
        metavar="OUT",
        help="folder for pass/ and fail/ (not with --dorado)",
    )
    parser.add_argument(
        "--dorado",
        action="store_true",
        help="write like `dorado basecaller MODEL IN`: one unaligned BAM stream on stdout, "
        "very short reads dropped, about 1 in 16 split in two; no OUT",
    )
    parser.add_argument(
        "--emit-fastq", action="store_true", help="with --dorado: FASTQ text instead of BAM"
    )
    parser.add_argument(
        "--kit-name",
        metavar="KIT",
        default=None,
        help="with --dorado: classify reads as KIT_barcode01 to 12 (about 1 in 10 unclassified)",
    )
    parser.add_argument(
        "--model",
        metavar="NAME",
        default=None,
        help=f"with --dorado: the model the read groups name ({DORADO_DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--delay-per-read",
        type=arguments.seconds,
        default=0.0,
        metavar="SECONDS",
        help="sleep this long per read, to look like a GPU (0)",
    )
    parser.add_argument(
        "--fail-rate",
        type=arguments.probability,
        default=0.0,
        metavar="P",
        help="probability that the whole run fails (exit 1) before writing anything (0)",
    )
    parser.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="NAME",
        help="exit 1 if this .pod5 name is in IN (a poison file); repeatable",
    )
    parser.add_argument(
        "--crash-after-reads",
        type=arguments.whole_number(0),
        default=None,
        metavar="N",
        help="write N reads, then die at once with exit code 137, leaving partial outputs",
    )
    parser.add_argument("--seed", type=int, default=None, help="makes --fail-rate repeatable")


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with this combination of arguments, or None."""
    if args.dorado:
        if args.output is not None:
            return (
                f"OUT ({args.output}) is not used with --dorado: the reads go to stdout, "
                "as dorado's do"
            )
        return None
    if args.output is None:
        return "give OUT, the folder for pass/ and fail/, or --dorado to write on stdout"
    given = {"--emit-fastq": args.emit_fastq, "--kit-name": args.kit_name, "--model": args.model}
    dorado_only = [flag for flag, value in given.items() if value not in (None, False)]
    if dorado_only:
        return f"{', '.join(dorado_only)} only work with --dorado"
    return None


def run(args: argparse.Namespace) -> int:
    problem = usage_problem(args)
    if problem is not None:
        print(f"reactor fake-basecaller: {problem}", file=sys.stderr)
        return 2
    if args.dorado:
        from reactor.sim.dorado_stream import basecall_dorado

        return basecall_dorado(args)
    from reactor.sim.fake_basecaller import basecall

    return basecall(args)
