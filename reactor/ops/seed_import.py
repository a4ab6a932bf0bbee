"""From the seed's JSON run description to reactor's two settings files.

The seed described a whole cluster run in one JSON file; reactor splits it the way it
runs: `reactor.toml` for `reactor serve` on the manager's node (``index_host``) and
`engine.toml` for `reactor engine` on one node (``--node-index``). Both are flat TOML
files, the ones `--config` reads; neither may hold the other's keys, so they are two
files, never one text. `render_serve` and `render_engine` build them with comments
saying where each value came from, which seed fields have no equivalent, and how to use
the file. `import_serve` and `import_engine` load each back through reactor's own
loaders, so what is written or printed is known to be accepted.

The mapping (docs/operations.md, "Moving from the seed service"), each field to what the
seed's code did with it:

- ``Basecalling.input_dir``/``output_dir`` -> both files' ``input_dir``/``output_dir``
  (the seed used the same paths on every node);
- ``Basecalling.port``, the manager's port -> ``listen = "0.0.0.0:PORT"``, as the seed
  listened, and the port of the engine's ``manager``; without it (the seed's code fixed
  the port by version) 40765, marked as a guess. ``allow`` = the nodes' ``nodes_ip``
  (reactor needs an access rule beyond loopback; the seed had none: a guess too);
- ``index_host`` -> the engine's ``manager`` host: that node's ``nodes_ip`` entry, or
  127.0.0.1 in the engine file of the manager's own node, as the seed's engines did;
- ``ComputingResources.port``, the port of the basecall server the seed started on every
  node -> the last argument of the engine's ``command``; serve has no use for it;
- ``batch_size_list[N]`` -> the engine's ``batch_size``; serve's ``batch_size`` is 3,
  the seed manager's own (fixed in its code);
- ``nodes_list[N]`` -> ``engine_id``;
- ``supervisor_script_path`` -> ``command = "SCRIPT {input_dir} {output_dir} {model}
  PORT"``, the seed engine's own call (``PORT`` left out when the file has none, as the
  seed's first versions called it); without a script, ``preset`` ``seed-supervisor`` for
  a ``.cfg`` model (a Guppy/dorado-server config), else ``dorado-fastq``, marked as a
  guess; ``model`` -> ``model``.

Each file opens with a list of its guesses (what the seed's code does not pin down),
each marked GUESS where its value is.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shlex
import textwrap
import tomllib
from collections.abc import Callable
from pathlib import Path

from reactor.ops.seed_run import (
    NODE_LIST_NOTES,
    SEED_MANAGER_BATCH_SIZE,
    SEED_MANAGER_PORTS,
    SeedError,
    SeedNode,
    SeedRun,
)
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
    guesses = _port_guesses(run)
    if any(node.ip for node in run.nodes):
        guesses.append(
            "allow: the seed had no access rule; the nodes' addresses (nodes_ip) are taken "
            "as where engines connect from"
        )
    lines = [
        *toml_comment(
            f"{file_name}: `reactor serve` settings imported from the seed's {run.path}\n"
            "by `reactor config import-seed`.\n"
            f"Use: on the manager's node, {host.label()}, run\n"
            f"    reactor check --config {file_name}     (checks that machine)\n"
            f"    reactor serve --config {file_name}"
        ),
        *_guess_lines(guesses),
        "",
        *_path_lines("input_dir", run.input_dir, "Basecalling.input_dir"),
        *_path_lines("output_dir", run.output_dir, "Basecalling.output_dir"),
        "",
        *_manager_port_lines(run),
        *toml_comment(
            "Every address, as the seed's manager listened; narrow it to the host's "
            f'address\n("{host.ip or host.name}:{run.manager_port}") if you like.'
        ),
        toml_line("listen", f"0.0.0.0:{run.manager_port}"),
        *_allow_lines(run),
        "",
        *toml_comment(
            f"The seed's manager gave {SEED_MANAGER_BATCH_SIZE} files (fixed in its code) to "
            "an engine that asks for\nbatchsize 0 or less; each engine asks for its own "
            f"node's entry of\n{res}.batch_size_list."
        ),
        toml_line("batch_size", SEED_MANAGER_BATCH_SIZE),
        *toml_comment(
            "report_back_interval and shutdown_interval keep reactor's defaults, 90 s and "
            "100 s:\nthe values the seed hard-coded."
        ),
        *_basecall_port_note(run),
        "",
        *toml_comment(f"The seed run's nodes ({res} lists), one `reactor engine` each:"),
        *[line for node in run.nodes for line in toml_comment("    " + _node_summary(node))],
        *_unmapped_lines(run),
    ]
    return toml_document(lines)


def render_engine(run: SeedRun, node: SeedNode, file_name: str = ENGINE_FILE) -> str:
    """The `reactor engine` settings file for one node of the seed run."""
    res = run.resources_section
    command_lines, command_guesses = _command_lines(run)
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
        *_guess_lines([*_port_guesses(run), *_manager_host_guesses(run, node), *command_guesses]),
        "",
        *_manager_lines(run, node),
        *_engine_id_lines(node, res),
        *toml_comment(
            "This host's paths of the run folders; the seed used the same paths on every node."
        ),
        *_path_lines("input_dir", run.input_dir, "Basecalling.input_dir"),
        *_path_lines("output_dir", run.output_dir, "Basecalling.output_dir"),
        *toml_comment(f"{res}.batch_size_list[{node.index}]"),
        toml_line("batch_size", node.batch_size),
        "",
        *command_lines,
        *toml_comment(
            "The seed's engine stopped at its first empty answer; reactor's keeps asking "
            "until it is\nstopped, as a live run needs. For the seed's way: until_empty = true"
        ),
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


def _manager_url(run: SeedRun, node: SeedNode) -> str:
    if node.index == run.index_host:  # the seed's engine beside its manager used loopback
        return f"http://127.0.0.1:{run.manager_port}"
    return _manager_address(run)


def _manager_address(run: SeedRun) -> str:
    """The manager's URL from other nodes: its node's address, else its name."""
    host = run.host.ip or run.host.name
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"http://{host}:{run.manager_port}"


def _manager_lines(run: SeedRun, node: SeedNode) -> list[str]:
    res = run.resources_section
    if node.index == run.index_host:
        where = (
            f"This node runs the manager too ({res}.index_host = {run.index_host}): the "
            "seed's engine here reached it\non 127.0.0.1. If this engine runs on another "
            f"machine, use {_manager_address(run)}."
        )
    elif run.host.ip:
        where = (
            f"The manager's node, {res}.index_host = {run.index_host}, at its entry of "
            f"{res}.nodes_ip,\nas the seed's engines reached it."
        )
    else:
        where = (
            f"GUESS: the manager's node, {res}.index_host = {run.index_host}, has no "
            f"{res}.nodes_ip entry (the seed's\nengines needed one): its name in nodes_list "
            "is used; put its address here if the name does not resolve."
        )
    port = (
        "Its port: Basecalling.port."
        if run.manager_port_given
        else "Its port: GUESS, see the top of this file."
    )
    return [*toml_comment(f"{where}\n{port}"), toml_line("manager", _manager_url(run, node))]


def _manager_port_lines(run: SeedRun) -> list[str]:
    if run.manager_port_given:
        return toml_comment(
            "Basecalling.port: the seed's manager listened at this port (its later versions)."
        )
    fixed = " and ".join(str(port) for port in SEED_MANAGER_PORTS)
    return toml_comment(
        "GUESS: the seed file has no Basecalling.port. The seed fixed its manager's port "
        f"in its code\n({fixed}, by version; later versions read Basecalling.port). "
        f"{run.manager_port} is kept:\nengine.toml's manager uses the same port, so the "
        "two agree; a seed-era engine still in use\nneeds the port it was built with."
    )


def _port_guesses(run: SeedRun) -> list[str]:
    if run.manager_port_given:
        return []
    return [
        f"the manager's port, {run.manager_port}: the seed file has no Basecalling.port, and "
        "the seed's code fixed it by version"
    ]


def _manager_host_guesses(run: SeedRun, node: SeedNode) -> list[str]:
    if node.index == run.index_host or run.host.ip:
        return []
    return ["manager: the manager's node has no nodes_ip entry; its name is used"]


def _basecall_port_note(run: SeedRun) -> list[str]:
    if run.basecall_port is None:
        return []
    return toml_comment(
        f"{run.resources_section}.port = {run.basecall_port}: the port of the basecall "
        "server (dorado_basecall_server) the\nseed started on every node for its supervisor "
        "script, not the manager's: it goes to the\nengines' command (engine.toml)."
    )


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


def _command_lines(run: SeedRun) -> tuple[list[str], list[str]]:
    """The command's lines, and what in them is a guess."""
    model = [
        *toml_comment("Basecalling.model: the value of {model}"),
        toml_line("model", run.model),
    ]
    res = run.resources_section
    if run.supervisor_script is not None:
        script = shlex.quote(run.supervisor_script).replace("{", "{{").replace("}", "}}")
        if run.basecall_port is not None:
            about = (
                "Basecalling.supervisor_script_path: the seed's engine ran it for each batch "
                "as\n`SCRIPT INPUT OUTPUT MODEL PORT`: the job's folders, Basecalling.model "
                f"and {res}.port,\nthe port of the basecall server (dorado_basecall_server) "
                "the seed started on each node.\nSo does this command, with the port written "
                "in as it is (no placeholder holds it):\nchange it here if the server listens "
                "elsewhere. reactor engine does not start that server:\nstart it on this node "
                "first, as the seed's launch script did. To run dorado instead:\n"
                'preset = "dorado-fastq" with a dorado model (README, Engines).'
            )
            command = f"{script} {{input_dir}} {{output_dir}} {{model}} {run.basecall_port}"
            guesses = []
        else:
            about = (
                "Basecalling.supervisor_script_path: the seed's engine ran it for each batch "
                "as\n`SCRIPT INPUT OUTPUT MODEL`: the job's folders and Basecalling.model. "
                f"GUESS: given a {res}.port,\nlater seed versions passed it (the port of "
                "each node's basecall server) as a fourth\nargument: if this script reads "
                "one, write the port after {model}. To run dorado instead:\n"
                'preset = "dorado-fastq" with a dorado model (README, Engines).'
            )
            command = f"{script} {{input_dir}} {{output_dir}} {{model}}"
            guesses = [
                f"command: the seed file has no {res}.port, so the script gets no port, as "
                "in the seed's first versions"
            ]
        return [*toml_comment(about), toml_line("command", command), *model], guesses
    if run.model.endswith(".cfg"):
        about = (
            "no supervisor_script_path in the seed file. The model is a .cfg, a\n"
            "Guppy/dorado-server configuration, which the seed's engine gave to "
            "ont_basecaller_supervisor:\nthe seed-supervisor preset does the same. To run "
            'dorado instead: preset = "dorado-fastq"\nand a dorado model name or path.'
        )
        preset = "seed-supervisor"
        if run.basecall_port is not None:
            about += (
                f"\nThe seed's basecall server listened on port {run.basecall_port} on each "
                "node; the preset passes\n--port auto: to use a server on that port, write "
                "the preset's line as command with\n"
                f"--port {run.basecall_port} (README, Engines)."
            )
    else:
        about = (
            "no supervisor_script_path in the seed file: dorado basecaller writing FASTQ, "
            "with the seed's\nmodel (README, Engines)."
        )
        preset = "dorado-fastq"
    guess = (
        "preset: the seed file has no supervisor_script_path (the seed's engine always ran "
        "one); the preset is reactor's choice"
    )
    return [*toml_comment(f"GUESS: {about}"), toml_line("preset", preset), *model], [guess]


def _guess_lines(guesses: list[str]) -> list[str]:
    """The head of a file: which of its values are a guess, or that none is."""
    if not guesses:
        return toml_comment("\nGuesses: none; every value below is what the seed's code did.")
    bullets = [
        line
        for guess in guesses
        for line in textwrap.wrap(guess, 88, initial_indent="  - ", subsequent_indent="    ")
    ]
    return toml_comment(
        "\nGuesses: the seed's code does not pin these down (marked GUESS below); check "
        "them:\n" + "\n".join(bullets)
    )


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
