"""The seed service's JSON run description, read and checked: `read_seed` -> `SeedRun`.

The seed (the Flask "Basecalling Manager") took one JSON file and a node index for the
whole cluster run: a launch script on every node read it, started the node's basecall
server, the manager on node ``index_host`` and the node's engine. Its layout, and what
the seed's code did with each field:

- ``Basecalling``: ``input_dir``, ``output_dir``, ``model`` (required; the same paths
  on every node), ``logs_dir`` (the launch script's and basecall server's logs),
  ``supervisor_script_path`` (the engine's script, run for each batch as
  ``script INPUT OUTPUT MODEL`` and, once the file had a ``port``, ``... MODEL PORT``),
  and in the seed's later versions ``port``: the manager's port (before that the port
  was fixed in the seed's code, 40765 in its first versions);
- ``ComputingResources`` (``Resources`` in the seed's first layout, accepted too):
  ``index_host`` (which node runs the manager; engines reach it at that node's
  ``nodes_ip`` entry, the manager's own node at 127.0.0.1), one list entry per node in
  ``nodes_list`` (host names, also the engine ids; "" lets Slurm pick),
  ``nodes_ip``, ``batch_size_list`` (each engine's batch size), optionally ``port``:
  the port of the basecall server (dorado_basecall_server) the launch script started
  on every node, given to the supervisor script; and the Slurm lists ``nodes_queue``,
  ``nodes_cpus``, ``nodes_mem``, ``nodes_gpus`` and ``gpus`` (the basecall server's
  ``--device``);
- ``General`` and ``Slurm``: run name, time limit, Slurm log paths and launch script.

The seed wrote numbers as strings (``"index_host": "0"``, ``"batch_size_list": ["3"]``);
both forms are accepted. Every field is accounted for: `SeedRun.unmapped` lists the ones
reactor has no setting for, with a note, so the importer can say so instead of dropping
them. Every problem found is reported at once (`SeedError.problems`, one line each).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reactor.settings.parsing import DEFAULT_PORT, is_decimal, toml_type

RESOURCE_SECTIONS = ("ComputingResources", "Resources")
NODE_LISTS_USED = ("nodes_list", "nodes_ip", "batch_size_list")

# What the seed's code fixed rather than read from the file (its manager's defaults).
SEED_MANAGER_BATCH_SIZE = 3  # for an engine asking batchsize 0 or less
SEED_MANAGER_PORTS = (40765, 57967)  # first versions, then June to November 2024

# Per-node lists reactor has no setting for, and where their meaning goes now.
NODE_LIST_NOTES: dict[str, str] = {
    "nodes_queue": "Slurm partition: #SBATCH --partition in the engine's Slurm script",
    "nodes_cpus": "#SBATCH --cpus-per-task in the engine's Slurm script",
    "nodes_mem": "#SBATCH --mem in the engine's Slurm script",
    "nodes_gpus": "#SBATCH --gpus (or --gres=gpu:N) in the engine's Slurm script",
    "gpus": "the --device of the basecall server the seed started on this node: give it "
    "to that server, or to dorado with --device in command (or CUDA_VISIBLE_DEVICES)",
}

# Other seed fields reactor has no setting for.
_RUN_NAME = "the Slurm job name: reactor has no run name, the run folders name the run"
_LAUNCH_SCRIPT = (
    "the seed's per-node launch script (basecall server, manager, engine): `reactor "
    "serve` on the manager's node and `reactor engine --config engine.toml` on each node "
    "replace it (README, Engines, Under Slurm); start the basecall server yourself"
)
FIELD_NOTES: dict[str, str] = {
    "General.name": _RUN_NAME,
    "General.run_name": _RUN_NAME,
    "General.run_time": "the Slurm time limit: #SBATCH --time in the engine's Slurm script",
    "General.version": "the version of the seed's JSON layout",
    "Slurm.output_path": "Slurm's log file: #SBATCH --output; reactor logs JSON lines on stdout",
    "Slurm.output": "Slurm's log file: #SBATCH --output; reactor logs JSON lines on stdout",
    "Slurm.error_path": "Slurm's error file: #SBATCH --error",
    "Slurm.error": "Slurm's error file: #SBATCH --error",
    "Slurm.main_script": _LAUNCH_SCRIPT,
    "Slurm.instructions": _LAUNCH_SCRIPT,
    "Basecalling.logs_dir": "the seed's logs (basecall server, manager, engine): reactor "
    "logs JSON lines on stdout, and reactor engine keeps each command's output in "
    "engine.log, in the job's LOGOUTPUT_ folder",
}
_UNKNOWN_NOTE = "not a field this importer knows: no reactor setting takes it"


class SeedError(Exception):
    """The seed file cannot be imported; `problems` says why, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class SeedNode:
    """One entry of the seed's per-node lists."""

    index: int
    name: str  # "" when the seed let Slurm pick the node
    ip: str  # "" when the seed did not know it
    batch_size: int
    others: tuple[tuple[str, object], ...]  # (list name, this node's entry) of unmapped lists

    def label(self) -> str:
        """Such as "1 dgx002 (10.128.2.162)", for messages and comments."""
        name = self.name or "(any node Slurm picks)"
        return f"{self.index} {name}" + (f" ({self.ip})" if self.ip else "")


@dataclass(frozen=True, slots=True)
class SeedRun:
    """What the seed file says, checked and typed."""

    path: Path
    input_dir: str
    output_dir: str
    model: str
    supervisor_script: str | None
    resources_section: str
    index_host: int
    manager_port: int  # Basecalling.port, else the seed's first fixed port
    manager_port_given: bool
    basecall_port: int | None  # <resources>.port: each node's basecall server
    nodes: tuple[SeedNode, ...]
    unmapped: tuple[tuple[str, object, str], ...]  # (dotted field, value, note)

    @property
    def host(self) -> SeedNode:
        return self.nodes[self.index_host]

    def node(self, index: int) -> SeedNode:
        """Node `index`; a SeedError naming the valid range and the nodes otherwise."""
        if 0 <= index < len(self.nodes):
            return self.nodes[index]
        listed = ", ".join(node.label() for node in self.nodes)
        msg = (
            f"--node-index {index} is out of range: {self.path} lists {len(self.nodes)} "
            f"node(s), give 0 to {len(self.nodes) - 1}: {listed}"
        )
        raise SeedError([msg])


def read_seed(path: Path) -> SeedRun:
    """Read and check the seed's JSON file; a SeedError lists every problem found."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"{path} does not exist: give the seed's JSON configuration file"
        raise SeedError([msg]) from None
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "it is not UTF-8 text"
        msg = f"{path} cannot be read ({reason}): check the path and its permissions"
        raise SeedError([msg]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        msg = f"{path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        raise SeedError([msg]) from None
    if not isinstance(data, dict):
        msg = f"{path} holds {toml_type(data)}, not the seed's JSON object with sections"
        raise SeedError([msg])
    return _SeedReader(path, data).read()


class _SeedReader:
    """Collects every problem of one seed file, so a person fixes them in one go."""

    def __init__(self, path: Path, data: Mapping[str, object]) -> None:
        self.path = path
        self.data = data
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(f"{self.path}: {text}")

    def read(self) -> SeedRun:
        basecalling = self.section("Basecalling")
        resources_name, resources = self.resources()
        input_dir = self.text(basecalling, "Basecalling", "input_dir")
        output_dir = self.text(basecalling, "Basecalling", "output_dir")
        model = self.text(basecalling, "Basecalling", "model")
        script = self.script(basecalling, resources, resources_name)
        index_host = self.number(resources, resources_name, "index_host", minimum=0)
        manager_port = self.number(basecalling, "Basecalling", "port", minimum=1, maximum=65535)
        basecall_port = self.number(resources, resources_name, "port", minimum=1, maximum=65535)
        nodes = self.nodes(resources, resources_name)
        if input_dir and input_dir == output_dir:
            self.problem(
                f"Basecalling.input_dir and output_dir are the same folder ({input_dir}): "
                "reactor needs a separate output folder; change output_dir"
            )
        if index_host is not None and nodes and index_host >= len(nodes):
            listed = ", ".join(node.label() for node in nodes)
            self.problem(
                f"{resources_name}.index_host {index_host} is out of range: it must name "
                f"one of the {len(nodes)} node(s), 0 to {len(nodes) - 1}: {listed}"
            )
        elif (
            index_host is not None
            and nodes
            and not (nodes[index_host].ip or nodes[index_host].name)
        ):
            self.problem(
                f"{resources_name}.index_host {index_host} names a node with neither a name "
                "in nodes_list nor an address in nodes_ip, so engines cannot find the "
                f"manager: fill in nodes_ip[{index_host}]"
            )
        if self.problems or index_host is None:  # a None index_host came with a problem
            raise SeedError(self.problems)
        return SeedRun(
            path=self.path,
            input_dir=input_dir,
            output_dir=output_dir,
            model=model,
            supervisor_script=script,
            resources_section=resources_name,
            index_host=index_host,
            manager_port=manager_port if manager_port is not None else DEFAULT_PORT,
            manager_port_given=manager_port is not None,
            basecall_port=basecall_port,
            nodes=tuple(nodes),
            unmapped=tuple(self.unmapped(resources_name)),
        )

    # ----------------------------------------------------------------- sections

    def section(self, name: str) -> Mapping[str, object] | None:
        value = self.data.get(name)
        if value is None:
            self.problem(f'has no "{name}" section: add it (see the seed\'s documented layout)')
            return None
        if not isinstance(value, dict):
            self.problem(f'"{name}" must be an object with keys, got {toml_type(value)}')
            return None
        return value

    def resources(self) -> tuple[str, Mapping[str, object] | None]:
        present = [name for name in RESOURCE_SECTIONS if name in self.data]
        if len(present) > 1:
            self.problem('has both "ComputingResources" and "Resources" sections: keep one of them')
            return RESOURCE_SECTIONS[0], None
        name = present[0] if present else RESOURCE_SECTIONS[0]
        return name, self.section(name)

    # ----------------------------------------------------------------- values

    def text(self, section: Mapping[str, object] | None, where: str, key: str) -> str:
        if section is None:
            return ""
        value = section.get(key)
        if value is None:
            self.problem(f"{where}.{key} is missing: add it")
            return ""
        if not isinstance(value, str):
            self.problem(f"{where}.{key} must be a string, got {toml_type(value)}")
            return ""
        if not value.strip():
            self.problem(f"{where}.{key} is empty: set it")
            return ""
        if "\x00" in value:
            self.problem(f"{where}.{key} contains a NUL character: fix the value")
            return ""
        return value

    def script(
        self,
        basecalling: Mapping[str, object] | None,
        resources: Mapping[str, object] | None,
        resources_name: str,
    ) -> str | None:
        """supervisor_script_path, found in either section (the seed moved it)."""
        for section, where in ((basecalling, "Basecalling"), (resources, resources_name)):
            if section is None or section.get("supervisor_script_path") in (None, ""):
                continue
            value = section["supervisor_script_path"]
            if not isinstance(value, str):
                self.problem(
                    f"{where}.supervisor_script_path must be a string, got {toml_type(value)}"
                )
                return None
            return value
        return None

    def number(
        self,
        section: Mapping[str, object] | None,
        where: str,
        key: str,
        *,
        minimum: int,
        maximum: int | None = None,
    ) -> int | None:
        """A whole number, given as a number or a string of digits; None if absent."""
        if section is None:
            return None
        if key not in section:
            if key == "index_host":
                self.problem(f"{where}.index_host is missing: add the index of the manager's node")
            return None
        return self.whole(section[key], f"{where}.{key}", minimum, maximum)

    def whole(self, value: object, label: str, minimum: int, maximum: int | None) -> int | None:
        if isinstance(value, str) and is_decimal(value.strip()):
            number = int(value.strip())
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            shown = repr(value) if isinstance(value, str) else toml_type(value)
            self.problem(f"{label} must be a whole number (or a string of digits), got {shown}")
            return None
        if number < minimum or (maximum is not None and number > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            self.problem(f"{label} must be at least {minimum}{upper}, got {number}")
            return None
        return number

    # ----------------------------------------------------------------- nodes

    def nodes(self, resources: Mapping[str, object] | None, where: str) -> list[SeedNode]:
        if resources is None:
            return []
        lists: dict[str, list[object]] = {}
        for key in (*NODE_LISTS_USED, *NODE_LIST_NOTES):
            value = resources.get(key)
            if isinstance(value, list):
                lists[key] = value
            elif key in resources:
                self.problem(f"{where}.{key} must be a list, got {toml_type(value)}")
            elif key in NODE_LISTS_USED:
                self.problem(f"{where}.{key} is missing: add one entry per node")
        lengths = {key: len(values) for key, values in lists.items()}
        if len(set(lengths.values())) > 1:
            # Measured against nodes_list, the list that says which nodes there are.
            base = (
                "nodes_list" if "nodes_list" in lengths else max(lengths, key=lengths.__getitem__)
            )
            odd = [key for key, count in lengths.items() if count != lengths[base]]
            shown = ", ".join(f"{key} has {lengths[key]}" for key in odd)
            self.problem(
                f"{where} lists have different lengths: {base} has {lengths[base]} "
                f"entries but {shown}; each list needs one entry per node, in the same order"
            )
            return []
        if any(key not in lists for key in NODE_LISTS_USED):
            return []
        if not lists["nodes_list"]:
            self.problem(f"{where}.nodes_list is empty: list at least the manager's node")
            return []
        return [self.node(index, lists, where) for index in range(len(lists["nodes_list"]))]

    def node(self, index: int, lists: Mapping[str, list[object]], where: str) -> SeedNode:
        name = self.entry_text(lists["nodes_list"][index], f"{where}.nodes_list[{index}]")
        ip = self.entry_text(lists["nodes_ip"][index], f"{where}.nodes_ip[{index}]")
        if ip:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                self.problem(
                    f"{where}.nodes_ip[{index}] {ip!r} is not an IP address such as "
                    '10.128.2.161: fix it, or make it "" if unknown'
                )
        label = f"{where}.batch_size_list[{index}]"
        batch_size = self.whole(lists["batch_size_list"][index], label, 1, None) or 1
        others = tuple((key, lists[key][index]) for key in NODE_LIST_NOTES if key in lists)
        return SeedNode(index, name, ip, batch_size, others)

    def entry_text(self, value: object, label: str) -> str:
        if isinstance(value, str):
            return value.strip()
        self.problem(f'{label} must be a string ("" if unknown), got {toml_type(value)}')
        return ""

    # ----------------------------------------------------------------- the rest

    def unmapped(self, resources_name: str) -> list[tuple[str, object, str]]:
        """Every field no reactor setting takes, with why; per-node lists excepted
        (each node's entries travel with `SeedNode.others`)."""
        used = {
            "Basecalling": {"input_dir", "output_dir", "model", "supervisor_script_path", "port"},
            resources_name: {
                *NODE_LISTS_USED,
                *NODE_LIST_NOTES,
                "index_host",
                "port",
                "supervisor_script_path",
            },
        }
        found = []
        for section, content in self.data.items():
            if not isinstance(content, dict):
                found.append((section, content, _UNKNOWN_NOTE))
                continue
            for key, value in content.items():
                if key in used.get(section, ()):
                    continue
                field = f"{section}.{key}"
                found.append((field, value, FIELD_NOTES.get(field, _UNKNOWN_NOTE)))
        return found
