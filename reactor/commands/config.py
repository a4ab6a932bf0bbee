"""`reactor config SUBCOMMAND`: tools for settings files. Today: `import-seed`.

``reactor config import-seed SEED.json`` prints `reactor.toml`, the settings of
`reactor serve` on the manager's node, made from the seed service's JSON run
description (`reactor.ops.seed_import`); ``--print engine --node-index N`` prints
`engine.toml`, the settings of `reactor engine` on node N, instead. Standard output is
always one settings file, so ``> reactor.toml`` saves one `serve` accepts; a line on
stderr says how to get the other file. With ``-o FILE`` (and ``--node-index N``) it
writes both: the serve file to FILE and the engine file next to it (or to
``--engine-output``), refusing to replace existing files unless ``--force``.

Exit codes: 0 done; 2 the seed file cannot be imported, an option is missing or
conflicts, or a file would be replaced (one line each on stderr saying what and how to
fix it); 1 a file could not be written. More subcommands (showing the merged settings,
say) go in `_SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from reactor.ops.seed_import import (
    ENGINE_FILE,
    SERVE_FILE,
    import_engine,
    import_seed,
    import_serve,
)
from reactor.ops.seed_run import SeedError, SeedRun, read_seed

HELP = "settings files: import-seed makes them from the seed service's JSON"
_PROG = "reactor config import-seed"
_PRINTABLE = ("serve", "engine")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subcommands = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    for name, (help_text, add, _run) in _SUBCOMMANDS.items():
        add(subcommands.add_parser(name, help=help_text, description=help_text))


def run(args: argparse.Namespace) -> int:
    name = getattr(args, "config_command", None)
    if name not in _SUBCOMMANDS:
        print(
            f"reactor config: give a subcommand: {', '.join(_SUBCOMMANDS)} (reactor config --help)",
            file=sys.stderr,
        )
        return 2
    return _SUBCOMMANDS[name][2](args)


# --------------------------------------------------------------------------- import-seed


def _add_import_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("seed", metavar="SEED.json", type=Path, help="the seed's JSON file")
    parser.add_argument(
        "--node-index",
        metavar="N",
        type=int,
        default=None,
        help="which node of the seed's nodes_list the engine file is for (0 is the first); "
        "needed for --print engine and -o",
    )
    parser.add_argument(
        "--print",
        dest="print_file",
        choices=_PRINTABLE,
        default=None,
        help=f"which file to print: serve ({SERVE_FILE}, the default) or engine ({ENGINE_FILE})",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        type=Path,
        default=None,
        help="write the serve settings to FILE and the engine's next to it, instead of "
        "printing one of them",
    )
    parser.add_argument(
        "--engine-output",
        metavar="FILE",
        type=Path,
        default=None,
        help=f"with -o: where the engine settings go (default: {ENGINE_FILE} next to FILE)",
    )
    parser.add_argument("--force", action="store_true", help="with -o: replace existing files")


def _run_import_seed(args: argparse.Namespace) -> int:
    problem = _option_problem(args)
    if problem is not None:
        print(f"{_PROG}: {problem}", file=sys.stderr)
        return 2
    try:
        seed = read_seed(args.seed)
        if args.node_index is None and (args.output is not None or args.print_file == "engine"):
            needs = "-o" if args.output is not None else "--print engine"
            msg = f"{needs} needs --node-index N, the engine's node: {_node_choices(seed)}"
            raise SeedError([msg])
        if args.output is None:
            return _print_one(seed, args.print_file or "serve", args.node_index)
        serve_text, engine_text = import_seed(seed, args.node_index)
    except SeedError as err:
        for problem in err.problems:
            print(f"{_PROG}: {problem}", file=sys.stderr)
        return 2
    serve_path: Path = args.output
    engine_path: Path = args.engine_output or serve_path.with_name(ENGINE_FILE)
    return _write_files(
        [(serve_path, serve_text), (engine_path, engine_text)],
        force=args.force,
        uses=[
            f"on the manager's node: reactor serve --config {serve_path}",
            f"on node {seed.node(args.node_index).label()}: reactor engine --config {engine_path}",
        ],
    )


def _option_problem(args: argparse.Namespace) -> str | None:
    """Options that do not go together, found before the seed file is read."""
    if args.output is not None and args.print_file is not None:
        return "-o writes both files and --print prints one: give one of them"
    if args.output is None and args.engine_output is not None:
        return "--engine-output needs -o FILE as well"
    return None


def _print_one(seed: SeedRun, which: str, node_index: int | None) -> int:
    """One settings file on stdout, and on stderr how to get the other one."""
    if node_index is not None:
        seed.node(node_index)  # an index out of range is a mistake, even if unused here
    if which == "engine" and node_index is not None:  # the caller saw that it is given
        text = import_engine(seed, node_index)
        hint = (
            f"printed {ENGINE_FILE} for node {seed.node(node_index).label()}; for "
            f"{SERVE_FILE}, run this again without --print engine (or give -o FILE for both)"
        )
    else:
        text = import_serve(seed)
        engine = "--print engine" if node_index is not None else "--print engine --node-index N"
        hint = (
            f"printed {SERVE_FILE}, for reactor serve; for the engine's {ENGINE_FILE}, add "
            f"{engine} (or give -o FILE for both)"
        )
    sys.stdout.write(text)
    sys.stdout.flush()
    print(f"{_PROG}: {hint}", file=sys.stderr)
    return 0


def _node_choices(seed: SeedRun) -> str:
    listed = ", ".join(node.label() for node in seed.nodes)
    return f"0 to {len(seed.nodes) - 1} ({listed})"


def _write_files(files: list[tuple[Path, str]], *, force: bool, uses: list[str]) -> int:
    """Write the files; existing ones are refused before anything is written, unless `force`."""
    paths = [path for path, _ in files]
    if len({path.absolute() for path in paths}) < len(paths):
        print(
            f"{_PROG}: the serve and engine files would both be {paths[0]}: "
            "give --engine-output another name",
            file=sys.stderr,
        )
        return 2
    existing = [path for path in paths if path.exists() or path.is_symlink()]
    if existing and not force:
        for path in existing:
            print(
                f"{_PROG}: {path} already exists: pass --force to replace it, or choose "
                "another name",
                file=sys.stderr,
            )
        return 2
    for (path, text), use in zip(files, uses, strict=True):
        try:
            _write_text(path, text, replace=force)
        except OSError as err:
            print(
                f"{_PROG}: cannot write {path} ({err.strerror}): check the folder", file=sys.stderr
            )
            return 1
        print(f"wrote {path}; use it {use}")
    return 0


def _write_text(path: Path, text: str, *, replace: bool) -> None:
    """Write through a temporary name then rename, so a reader never sees half a file;
    without `replace`, the final name is claimed with O_EXCL first (no race)."""
    if not replace:
        with open(path, "x", encoding="utf-8") as file:
            file.write(text)
        return
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


# name -> (help, add_arguments, run)
_SUBCOMMANDS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {
    "import-seed": (
        "make reactor.toml and engine.toml from the seed service's JSON configuration",
        _add_import_seed,
        _run_import_seed,
    ),
}
