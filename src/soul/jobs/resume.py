"""Crash-safe progress of a long generation: chunk latents and a progress file next to the output.

A long video is hours of sampling on a large model; a crash (OOM killer, pre-empted machine,
SIGKILL) must cost at most the chunk in flight. Each finished chunk's new latents are written to
``OUT.mp4.soul-partial/chunk-NNNNN.safetensors`` (temporary name, then ``os.replace``), and only
then ``progress.json`` (also written atomically) counts it as done, so whatever a kill interrupts,
the directory always describes a consistent prefix of the run. The fingerprint of the request
(every setting and the bytes of every input file) is stored with it: a different command never
continues someone else's run, it starts over.

Why latents and not decoded frames: a chunk's latents are ~1/50 of its uint8 frames at 5B sizes,
the decoder is deterministic, and re-decoding the finished chunks on resume also rebuilds the
decoder's causal cache exactly, so the resumed video is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from soul.errors import InputError

STATE_SUFFIX = ".soul-partial"
PROGRESS_FILE = "progress.json"
FORMAT_VERSION = 1


def state_dir_for(output: Path) -> Path:
    """Where the resume state of ``output`` lives: a sibling directory ``OUT.mp4.soul-partial``."""
    return output.with_name(output.name + STATE_SUFFIX)


def lock_path_for(output: Path) -> Path:
    """The lock file of ``output``: a hidden sibling ``.OUT.mp4.lock``."""
    return output.with_name(f".{output.name}.lock")


@contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Hold ``output`` for one run; a second run on the same file stops at once with a one-line error.

    Why: two runs writing one output share its resume state (``OUT.mp4.soul-partial``), and the
    second would discard or overwrite the first's finished chunks, then die on a half-written file.
    ``flock`` is released by the kernel when a process dies, so a killed run never blocks the next;
    the file is removed while still held, and a lock taken on a file another run just removed is
    taken again on the new one (compared by inode).
    """
    path = lock_path_for(output)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise InputError(output, f"is being written by another run{who}", "wait for it to finish, or write to another file") from None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (inputs are part of the fingerprint: same name, new take, new run)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(settings: dict[str, Any], files: list[Path]) -> str:
    """One hash of every setting that changes the frames and the content of every input file."""
    payload = {"version": FORMAT_VERSION, "settings": settings, "files": [file_digest(p) for p in files]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class ResumeState:
    """The on-disk record of finished chunks for one output file and one request fingerprint."""

    directory: Path
    fingerprint: str
    chunks: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, output: Path, fingerprint: str, *, resume: bool = True) -> ResumeState:
        """Load the state for ``output`` if it belongs to the same request, else start afresh.

        ``resume=False`` (``--no-resume``) discards any previous state. A state whose fingerprint
        differs, or whose progress file is unreadable, is discarded too: reusing latents made under
        other settings would silently mix two videos. Chunk files not counted in the progress file
        (written just before a crash) are ignored and later overwritten.
        """
        directory = state_dir_for(output)
        state = cls(directory, fingerprint)
        progress = directory / PROGRESS_FILE
        if resume and progress.is_file():
            try:
                data = json.loads(progress.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                data = {}
            if data.get("fingerprint") == fingerprint and data.get("version") == FORMAT_VERSION:
                chunks = list(data.get("chunks", []))
                # Trust only a contiguous run of chunks whose files are present.
                for n, rec in enumerate(chunks):
                    if rec.get("index") != n or not state.chunk_path(n).is_file():
                        chunks = chunks[:n]
                        break
                state.chunks = chunks
                return state
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state._write_progress()
        return state

    @property
    def num_done(self) -> int:
        return len(self.chunks)

    def chunk_path(self, index: int) -> Path:
        return self.directory / f"chunk-{index:05d}.safetensors"

    def save_chunk(self, index: int, latents: torch.Tensor, record: dict[str, Any]) -> None:
        """Persist chunk ``index`` (its new latents ``[C, n, h, w]``) and count it as done."""
        if index != self.num_done:
            raise ValueError(f"chunk {index} saved out of order ({self.num_done} done)")
        path = self.chunk_path(index)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        save_file({"latents": latents.detach().float().contiguous().cpu()}, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self.chunks.append(dict(record, index=index))
        self._write_progress()

    def load_chunk(self, index: int) -> torch.Tensor:
        """The saved new latents of a finished chunk, ``[C, n, h, w]`` float32."""
        return load_file(str(self.chunk_path(index)))["latents"]

    def _write_progress(self) -> None:
        payload = {"version": FORMAT_VERSION, "fingerprint": self.fingerprint, "chunks": self.chunks}
        _atomic_write_text(self.directory / PROGRESS_FILE, json.dumps(payload, indent=1))

    def remove(self) -> None:
        """Delete the state once the finished output is in place."""
        shutil.rmtree(self.directory, ignore_errors=True)


def remove_stale_writer_files(output: Path) -> list[Path]:
    """Delete temporary MP4s that killed writers left beside ``output`` (``.NAME.partial-PID.mp4``).

    ``VideoWriter`` renames its temporary file only on success; after SIGKILL the temporary file
    stays. Files of processes that are still alive are kept (another run may be writing).
    """
    removed = []
    for tmp in output.parent.glob(f".{output.stem}.partial-*{output.suffix}"):
        pid_text = tmp.name[len(f".{output.stem}.partial-") : -len(output.suffix) or None]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid != os.getpid() and _alive(pid):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def remove_stale_work_dirs(output: Path) -> list[Path]:
    """Delete scratch directories (``.NAME.audio-PID-*``) that killed runs left beside ``output``."""
    removed = []
    prefix = f".{output.name}.audio-"
    for path in output.parent.glob(prefix + "*"):
        pid_text = path.name[len(prefix) :].split("-", 1)[0]
        if not path.is_dir() or not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
