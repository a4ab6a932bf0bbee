"""From the seed's JSON run description to reactor's two settings files.

The seed described a whole cluster run in one JSON file; reactor splits it the way it
runs: `reactor.toml` for `reactor serve` on the manager's node (``index_host``) and
`engine.toml` for `reactor engine` on one node (``--node-index``). Both are flat TOML
files, the ones `--config` reads; neither may hold the other's keys, so they are two
files, never one text. `render_serve` and `render_engine` build them with comments
saying where each value came from, which seed fields have no equivalent, and how to use
the file. `import_serve` and `import_engine` load each back through reactor's own
loaders, so what is written or printed is known to be accepted.

The mapping (README, "Moving from the seed service"):

- ``Basecalling.input_dir``/``output_dir`` -> both files' ``input_dir``/``output_dir``
  (the seed used the same paths on every node);
- ``port`` (else the seed's fixed 40765) -> ``listen = "0.0.0.0:PORT"``, as the seed
  listened, with ``allow`` = the nodes' ``nodes_ip`` (reactor needs an access rule
  beyond loopback); the engine's ``manager`` is the ``index_host`` node's address;
- ``batch_size_list[N]`` -> the engine's ``batch_size``; the host's entry is also
  serve's default ``batch_size``;
- ``nodes_list[N]`` -> ``engine_id``;
- ``supervisor_script_path`` -> ``command = "SCRIPT {input_dir} {output_dir}"``, the
  seed engine's own call; without it, ``preset`` ``seed-supervisor`` for a ``.cfg``
  model (a Guppy/dorado-server config), else ``dorado-fastq``; ``model`` -> ``model``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shlex
import tomllib
from collections.abc import Callable
from pathlib import Path

from reactor.ops.seed_run import NODE_LIST_NOTES, SeedError, SeedNode, SeedRun
from reactor.ops.toml_text import NotTomlText, toml_comment, toml_document, toml_line
from reactor.settings.engine import parse_engine_config, sanitise_engine_id
from reactor.settings.parsing import ConfigError, ConfigFile
from reactor.settings.serve import parse_config

SERVE_FILE = "reactor.toml"
ENGINE_FILE = "engine.toml"
# Only used to load a generated serve file that has no allow list back: such a file
# needs REACTOR_TOKEN set, and says so.
_CHECK_TOKEN = "check-" + "0" * 32


def render_serve(run: SeedRun, file_name: str = SERVE_FILE) -> str:
    """The `reactor serve` settings file for the seed run."""
    res = run.resources_section
    host = run.host
    port_from = f"{res}.port" if run.port_given else "the seed's fixed port"
    lines = [
        *toml_comment(
            f"{file_name}: `reactor serve` settings imported from the seed's {run.path}\n"
            "by `reactor config import-seed`.\n"
            f"Use: on the manager's node, {host.label()}, run\n"
            f"    reactor check --config {file_name}     (checks that machine)\n"
            f"    reactor serve --config {file_name}"
        ),
        "",
        *_path_lines("input_dir", run.input_dir, "Basecalling.input_dir"),
        *_path_lines("output_dir", run.output_dir, "Basecalling.output_dir"),
        "",
        *toml_comment(
            f"Every address, at {port_from}, as the seed listened; narrow it to the "
            f'host\'s address ("{host.ip or host.name}:{run.port}") if you like.'
        ),
        toml_line("listen", f"0.0.0.0:{run.port}"),
        *_allow_lines(run),
        "",
        *toml_comment(
            f"{res}.batch_size_list[{run.index_host}] (the manager's node): used only for "
            "an engine\nthat asks for batchsize 0 or less; each engine asks for its own "
            "node's entry."
        ),
        toml_line("batch_size", host.batch_size),
        *toml_comment(
            "report_back_interval and shutdown_interval keep reactor's defaults, 90 s and "
            "100 s:\nthe values the seed hard-coded."
        ),
        "",
        *toml_comment(f"The seed run's nodes ({res} lists), one `reactor engine` each:"),
        *[line for node in run.nodes for line in toml_comment("    " + _node_summary(node))],
        *_unmapped_lines(run),
    ]
    return toml_document(lines)


def render_engine(run: SeedRun, node: SeedNode, file_name: str = ENGINE_FILE) -> str:
    """The `reactor engine` settings file for one node of the seed run."""
    res = run.resources_section
    lines = [
        *toml_comment(
            f"{file_name}: `reactor engine` settings for node {node.label()}, imported from\n"
            f"the seed's {run.path} by `reactor config import-seed`.\n"
            f"Use: on {node.name or 'that node'}, run\n"
            f"    reactor engine --config {file_name}\n"
            "(under systemd, as /etc/pod5-reactor/engine.toml: README, Engines). If the "
            "manager has a token,\nset REACTOR_ENGINE_TOKEN to it in the engine's "
            "environment, not here."
        ),
        "",
        *toml_comment(f"The manager's node, {res}.index_host = {run.index_host}."),
        toml_line("manager", _manager_url(run)),
        *_engine_id_lines(node, res),
        *toml_comment(
            "This host's paths of the run folders; the seed used the same paths on every node."
        ),
        *_path_lines("input_dir", run.input_dir, "Basecalling.input_dir"),
        *_path_lines("output_dir", run.output_dir, "Basecalling.output_dir"),
        *toml_comment(f"{res}.batch_size_list[{node.index}]"),
        toml_line("batch_size", node.batch_size),
        "",
        *_command_lines(run),
        *_node_unmapped_lines(node, res),
    ]
    return toml_document(lines)


def check_serve(text: str, path: Path) -> None:
    """Load a serve file through serve's own loader; a ConfigError if it refuses."""
    values = tomllib.loads(text)
    env = {} if "allow" in values else {"REACTOR_TOKEN": _CHECK_TOKEN}
    parse_config(argparse.Namespace(), env, ConfigFile(path, values))


def check_engine(text: str, path: Path) -> None:
    """Load an engine file through the engine's own loader; a ConfigError if it refuses."""
    parse_engine_config(argparse.Namespace(), {}, tomllib.loads(text), path)


def import_serve(run: SeedRun) -> str:
    """The serve file, loaded back to be sure; a SeedError if it cannot be made."""
    return _checked(run, lambda: render_serve(run), check_serve, SERVE_FILE)


def import_engine(run: SeedRun, node_index: int) -> str:
    """The engine file for `node_index`, loaded back to be sure; a SeedError if it cannot
    be made (an index out of range included)."""
    node = run.node(node_index)
    return _checked(run, lambda: render_engine(run, node), check_engine, ENGINE_FILE)


def import_seed(run: SeedRun, node_index: int) -> tuple[str, str]:
    """(serve file, engine file) for `node_index`; a SeedError if they cannot be made."""
    run.node(node_index)  # an index out of range is the first thing to say
    return import_serve(run), import_engine(run, node_index)


def _checked(
    run: SeedRun,
    render: Callable[[], str],
    check: Callable[[str, Path], None],
    file_name: str,
) -> str:
    try:
        text = render()
        check(text, run.path.with_name(file_name))
    except NotTomlText as err:
        msg = f"{run.path}: a value {err}: fix it in the seed file"
        raise SeedError([msg]) from None
    except ConfigError as err:
        msg = f"{run.path}: its values make a setting reactor refuses: {err}"
        raise SeedError([msg]) from None
    return text


# --------------------------------------------------------------------------- parts


def _path_lines(key: str, value: str, source: str) -> list[str]:
    lines = toml_comment(source)
    if not Path(value).is_absolute():
        lines += toml_comment(
            "Relative in the seed (to the folder the seed ran in); here it is relative to "
            "this file's folder: make it absolute."
        )
    return [*lines, toml_line(key, value)]


def _allow_lines(run: SeedRun) -> list[str]:
    res = run.resources_section
    addresses = {ipaddress.ip_address(node.ip) for node in run.nodes if node.ip}
    ordered = sorted(addresses, key=lambda address: (address.version, int(address)))
    networks = [str(ipaddress.ip_network(address)) for address in ordered]
    missing = [node for node in run.nodes if not node.ip]
    example = next(
        (ipaddress.ip_network(f"{a}/24", strict=False) for a in ordered if a.version == 4),
        ipaddress.ip_network("10.0.0.0/24"),
    )
    lines = []
    for node in missing:
        lines += toml_comment(
            f"Node {node.label()} has no address in {res}.nodes_ip, so it is not allowed: "
            f'add its network\n(such as "{example}") to allow, or rely on a token.'
        )
    advice = (
        "Recommended as well: a token. Set REACTOR_TOKEN=$(openssl rand -hex 32) in serve's "
        "environment\nand the same value as REACTOR_ENGINE_TOKEN in every engine's."
    )
    if not networks:
        return [
            *lines,
            *toml_comment(
                "No node has an address, so there is no allow list: `reactor serve` refuses "
                "to listen beyond\nloopback until REACTOR_TOKEN is set in its environment "
                "(openssl rand -hex 32), with the same\nvalue as REACTOR_ENGINE_TOKEN in "
                "every engine's."
            ),
        ]
    return [
        *toml_comment(
            f"Only the nodes' addresses ({res}.nodes_ip) may connect; loopback always may."
        ),
        *lines,
        toml_line("allow", networks),
        *toml_comment(advice),
    ]


def _manager_url(run: SeedRun) -> str:
    host = run.host.ip or run.host.name
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"http://{host}:{run.port}"


def _engine_id_lines(node: SeedNode, res: str) -> list[str]:
    if not node.name:
        return toml_comment(
            f"{res}.nodes_list[{node.index}] is empty (Slurm picks the node): engine_id is "
            "left to its\ndefault, the host name."
        )
    engine_id = sanitise_engine_id(node.name)
    source = f"{res}.nodes_list[{node.index}]"
    if engine_id != node.name:
        source += f" ({node.name!r}, with characters an engine id cannot hold made '-')"
    return [*toml_comment(source), toml_line("engine_id", engine_id)]


def _command_lines(run: SeedRun) -> list[str]:
    model = [
        *toml_comment("Basecalling.model: the value of {model}"),
        toml_line("model", run.model),
    ]
    if run.supervisor_script is not None:
        script = shlex.quote(run.supervisor_script).replace("{", "{{").replace("}", "}}")
        return [
            *toml_comment(
                "Basecalling.supervisor_script_path: the seed's engine ran it as "
                "`SCRIPT INPUT OUTPUT` for\neach batch; so does this command. To run "
                'dorado directly instead: preset = "dorado-fastq"\nwith a dorado model '
                "(README, Engines)."
            ),
            toml_line("command", f"{script} {{input_dir}} {{output_dir}}"),
            *model,
        ]
    if run.model.endswith(".cfg"):
        about = (
            "The model is a .cfg, a Guppy/dorado-server configuration, which the seed's "
            "engine gave to\nont_basecaller_supervisor: the seed-supervisor preset does the "
            'same. To run dorado\ninstead: preset = "dorado-fastq" and a dorado model '
            "name or path."
        )
        preset = "seed-supervisor"
    else:
        about = "dorado basecaller writing FASTQ, with the seed's model (README, Engines)."
        preset = "dorado-fastq"
    return [*toml_comment(about), toml_line("preset", preset), *model]


def _node_summary(node: SeedNode) -> str:
    others = "".join(f", {key} {_shown(value)}" for key, value in node.others)
    return f"{node.label()}: batch_size_list {node.batch_size}{others}"


def _node_unmapped_lines(node: SeedNode, res: str) -> list[str]:
    if not node.others:
        return []
    lines = ["", *toml_comment(f"This node's entries of {res} lists no reactor setting takes:")]
    for key, value in node.others:
        lines += toml_comment(f"    {key}[{node.index}] = {_shown(value)}: {NODE_LIST_NOTES[key]}")
    return lines


def _unmapped_lines(run: SeedRun) -> list[str]:
    if not run.unmapped:
        return []
    lines = ["", *toml_comment("Seed fields no reactor setting takes:")]
    for field, value, note in run.unmapped:
        lines += toml_comment(f"    {field} = {_shown(value)}: {note}")
    return lines


def _shown(value: object) -> str:
    """A seed value as it looked in the JSON file."""
    return json.dumps(value, ensure_ascii=False)
