"""Where a run's `.pod5` files are: the folders, and the one each known name is in.

Reactor knows a file by its base name (its records, the links in a job's folder and the
seed's output-stem rule all use it). A single run (`input_dir`) has one flat folder. A
MinKNOW run folder in host mode has several: `pod5/` (or `pod5_pass/` and `pod5_fail/`),
`pod5_skip/`, each with optional barcode folders one level down; MinKNOW's names are
unique within a run across all of them (they carry pass/fail/skip and the barcode
alias). A pooled run shares its folders with other runs and takes only the names of its
own flow cell and protocol run (`accept`).

A file MinKNOW moves from one of these folders to another ("Stop basecalling" moves
files to `pod5_skip/`) keeps its name: the folder recorded for it is the last one it was
seen in, and it is gone only when it leaves that one.

With one folder nothing is kept per file (a million files in INPUTDIR cost nothing
here); with several, one dictionary entry per file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from reactor.core.minknow import is_barcode_folder
from reactor.core.names import is_pod5_name

# The links in a job's folder are one level below the folder that holds job folders.
_LINK_DEPTH = "x"


class InputFolders:
    """A run's folders of `.pod5` files (see the module docstring)."""

    def __init__(
        self,
        folders: Sequence[Path],
        *,
        barcodes: bool = False,
        accept: Callable[[str], bool] = is_pod5_name,
        within: Path | None = None,
    ) -> None:
        if not folders:
            msg = "a run needs at least one folder of .pod5 files"
            raise ValueError(msg)
        self.folders = tuple(folder.absolute() for folder in folders)
        self.barcodes = barcodes
        self._accept = accept
        # A link to a `.pod5` that leads outside this folder is refused (`contains`).
        self.within = (within or self.folders[0]).absolute()
        self._single = len(self.folders) == 1 and not barcodes
        self._where: dict[str, Path] = {}  # name -> folder, when there are several

    def use(self, folders: Sequence[Path]) -> None:
        """The run's folders now (a POD5 folder appeared); where known names are stays."""
        self.folders = tuple(folder.absolute() for folder in folders)

    @classmethod
    def flat(cls, folder: Path) -> InputFolders:
        """One folder, no barcode folders: single-run mode's INPUTDIR."""
        return cls([folder])

    @property
    def main(self) -> Path:
        """The first folder: INPUTDIR in single-run mode."""
        return self.folders[0]

    def accepts(self, name: str) -> bool:
        return self._accept(name)

    def watched(self) -> tuple[Path, ...]:
        """The folders to watch (recursively when `barcodes`)."""
        return self.folders

    # ----------------------------------------------------------- locations

    def path(self, name: str) -> Path:
        """Where `name` is (or would be, if it is not known: in the first folder)."""
        if self._single:
            return self.folders[0] / name
        return self._where.get(name, self.folders[0]) / name

    def seen(self, name: str, folder: Path) -> None:
        """`name` was seen in `folder` (an event or a scan): that is where it is now."""
        if not self._single:
            self._where[name] = folder

    def gone(self, name: str, folder: Path | None) -> bool:
        """`name` left `folder`: True when that was where it was (so it is gone)."""
        if self._single or folder is None:
            return True
        where = self._where.get(name)
        if where is not None and where != folder:
            return False  # moved: it is in another of the run's folders now
        self._where.pop(name, None)
        return True

    def link_target(self, jobs_dir: Path) -> Callable[[str], str]:
        """The relative target of a link to each file, from a job folder in `jobs_dir`
        (relative links work wherever engines mount the run's tree)."""
        if self._single and self.folders[0] == jobs_dir.absolute():
            return lambda name: f"../{name}"
        base = jobs_dir.absolute() / _LINK_DEPTH
        prefixes: dict[Path, str] = {}

        def target(name: str) -> str:
            folder = self.path(name).parent
            prefix = prefixes.get(folder)
            if prefix is None:
                prefix = prefixes[folder] = os.path.relpath(folder, base)
            return f"{prefix}/{name}"

        return target

    def lists(self, folder: Path) -> bool:
        """Whether `scan()` passes every entry of `folder` by (`others`): the one folder
        of a single run (INPUTDIR, where job folders are made too)."""
        return self._single and self.folders[0] == folder.absolute()

    @property
    def plain(self) -> Path | None:
        """The one folder, when the scan lists it by `is_pod5_name` alone (a single
        run's INPUTDIR): what `reactor.disk.input_lister` can list in a child process."""
        return self.folders[0] if self._single and self._accept is is_pod5_name else None

    def contains(self, target: Path) -> bool:
        """Whether a resolved path lies inside the run's folders."""
        return target.is_relative_to(self.within.resolve())

    # ------------------------------------------------------------- listing

    def scan(self, others: Callable[[str, bool], None] | None = None) -> Iterator[os.DirEntry[str]]:
        """Every accepted `.pod5` entry in the folders (and barcode folders), each one's
        folder recorded; `others` is given every other entry of a single run's folder:
        its name, and whether it is a folder (not following a symlink).
        A folder that is missing is skipped (a run may not have made it yet); the first
        folder must be readable (OSError otherwise)."""
        if self._single:
            yield from self._flat(self.folders[0], others)
            return
        for folder in self.folders:
            try:
                yield from self._entries(folder, nested=self.barcodes)
            except FileNotFoundError:
                continue

    def _flat(
        self, folder: Path, others: Callable[[str, bool], None] | None
    ) -> Iterator[os.DirEntry[str]]:
        """A single run's folder: once per file at start (10^6), so nothing is done for
        an accepted entry but to yield it."""
        accept = self._accept
        with os.scandir(folder) as entries:
            for entry in entries:
                if accept(entry.name):
                    yield entry
                elif others is not None:
                    others(entry.name, entry.is_dir(follow_symlinks=False))

    def _entries(self, folder: Path, *, nested: bool) -> Iterator[os.DirEntry[str]]:
        subfolders: list[Path] = []
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if self._accept(name):
                    self.seen(name, folder)
                    yield entry
                elif nested and is_barcode_folder(name) and entry.is_dir(follow_symlinks=False):
                    subfolders.append(Path(entry.path))
        for subfolder in subfolders:
            try:
                yield from self._entries(subfolder, nested=False)
            except (FileNotFoundError, NotADirectoryError):
                continue

    def names(self) -> set[str]:
        """The accepted names in the folders now (a reconcile)."""
        return {entry.name for entry in self.scan()}
