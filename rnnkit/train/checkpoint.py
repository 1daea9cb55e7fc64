"""Checkpoints: a directory of JSON + ``.npz`` files, written atomically, never pickled.

Layout of a checkpoint directory::

    config.json     the config dict (what rebuilds the model: sizes, vocab, settings)
    <group>.npz     one archive per array group, e.g. params.npz, optim.npz, state.npz
    meta.json       written last: {"format": "rnnkit-checkpoint", "version": 2,
                                   "files": {file name: sha256 hex, ...},   # every file above
                                   "meta": {...},   # the caller's meta: step, rng, best val...
                                   "meta_sha256": sha256 hex of "meta"}   # (new in version 2)

Atomic replacement (why a whole-directory swap): a checkpoint is several files that only
make sense together (parameters of step 1000 with the optimizer moments of step 500 would
resume silently wrong). Replacing the files one by one inside the directory leaves a window
where old and new are mixed; a checksum marker would detect that, but then a crash would
have destroyed the old checkpoint too. So `save_checkpoint`:

1. validates and serialises everything in memory first (bad input touches no file);
2. writes every file into a fresh sibling ``.NAME.tmp-<pid>-<rand>`` (same parent, hence
   same file system, so renames are atomic), fsyncs each file, writes ``meta.json`` last;
3. carries over files the user keeps in the directory that are not checkpoint files (a loss
   plot, notes) as hard links (copies where links are unsupported), so they survive;
4. swaps: ``rename(NAME -> .NAME.old-<pid>-<rand>)``, ``rename(tmp -> NAME)``, fsync the
   parent, delete the backup (and any backup an earlier crashed save left). An exception
   part way (disk full, Ctrl-C) removes the temporary directory and restores the old one.

A crash (power loss, kill -9) can therefore leave: the old checkpoint, the new one, or - in
the instant between the two renames - no ``NAME`` but a complete ``.NAME.old-*`` backup;
`load_checkpoint` falls back to that backup, so a reader always gets one complete checkpoint.
A hard crash's ``.NAME.tmp-*`` leftovers are ignored by loads and are safe to delete by hand
(not removed automatically: another live process might own one). `load_checkpoint` also
verifies every sha256 in ``meta.json``, so a truncated or tampered file is reported, never
loaded. ``NAME`` must be a real directory (not a symlink) or absent.

Every problem - missing file, bad JSON, checksum mismatch, not an npz archive, an object
array (which would need pickle) - is a `ValueError` naming the file ("corrupt checkpoint:
..."), so the CLI can print it as one line.

`rng_state` / `rng_from_state` turn a `np.random.Generator` into a JSON-able dict and back,
so a resumed run draws exactly the numbers an uninterrupted run would.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["checkpoint_format", "load_checkpoint", "rng_from_state", "rng_state", "save_checkpoint", "set_rng_state"]

FORMAT = "rnnkit-checkpoint"
VERSION = 2  # 2: meta.json holds a checksum of its meta; 1 is still read
CONFIG_FILE = "config.json"
META_FILE = "meta.json"
# Group names become file names: keep them to a safe, portable alphabet.
_GROUP_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")

ArrayGroups = Mapping[str, Mapping[str, np.ndarray]]


# ----------------------------------------------------------------------------- serialising

def _json_default(obj: Any) -> Any:
    # NumPy scalars sneak into configs and metas (a loss from .mean(), a step from .item()
    # forgotten); store them as the Python numbers they are. Arrays belong in an npz group.
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _dump_json(obj: Any, what: str) -> bytes:
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint {what} must be a dict, got {type(obj).__name__}")
    try:
        # allow_nan: a best validation loss starts at inf; Python's json reads it back.
        text = json.dumps(dict(obj), indent=2, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {what} is not JSON-serialisable: {e}") from None
    return (text + "\n").encode("utf-8")


def _npz_bytes(group: str, arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise one group as an uncompressed ``.npz`` with pickling disabled."""
    if not isinstance(arrays, Mapping):
        raise ValueError(f"checkpoint group {group!r} must map names to arrays")
    buf = io.BytesIO()
    # zipfile + write_array rather than np.savez(**arrays): savez's own parameter names
    # ("file", "allow_pickle") would collide with array keys, and it pickles object arrays.
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"checkpoint group {group!r}: array names must be non-empty "
                                 f"strings, got {key!r}")
            arr = np.asarray(value)
            if arr.dtype.hasobject:
                raise ValueError(f"checkpoint group {group!r}: array {key!r} has object dtype "
                                 "(it would need pickle); store numbers or strings")
            with zf.open(key + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
    return buf.getvalue()


def _meta_digest(meta: Mapping[str, Any]) -> str:
    """sha256 of the caller's meta (step, history, rng states...) in a canonical JSON form, so
    that an edited meta.json is reported like any other modified file."""
    text = json.dumps(meta, sort_keys=True, default=_json_default, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _serialise(config: Mapping[str, Any], arrays: ArrayGroups,
               meta: Mapping[str, Any]) -> dict[str, bytes]:
    """All checkpoint files as {file name: bytes}, meta.json (with checksums) last."""
    if not isinstance(arrays, Mapping):
        raise ValueError("checkpoint arrays must be a dict of groups: {group: {name: array}}")
    files: dict[str, bytes] = {CONFIG_FILE: _dump_json(config, "config")}
    for group, group_arrays in arrays.items():
        if not isinstance(group, str) or not _GROUP_RE.match(group):
            raise ValueError(f"checkpoint group name {group!r} must match {_GROUP_RE.pattern}")
        files[f"{group}.npz"] = _npz_bytes(group, group_arrays)
    _dump_json(meta, "meta")  # the caller's meta on its own, for a precise error message
    marker = {
        "format": FORMAT,
        "version": VERSION,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "meta": dict(meta),
        "meta_sha256": _meta_digest(dict(meta)),
    }
    files[META_FILE] = _dump_json(marker, "meta")
    return files


# ----------------------------------------------------------------------------- file system

def _fsync_dir(path: Path) -> None:
    # Makes renames and new directory entries durable; not possible on Windows (nor needed).
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    """Write one new file and fsync it ("xb": the temp directory is ours, nothing to clobber)."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _owned_files(directory: Path) -> set[str]:
    """Names of the files that belong to the checkpoint currently in ``directory``."""
    owned = {CONFIG_FILE, META_FILE}
    try:
        marker = json.loads((directory / META_FILE).read_bytes())
        owned.update(marker["files"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no readable marker: only the fixed names are ours
    return owned


def save_checkpoint(
    directory: str | os.PathLike[str],
    *,
    config: Mapping[str, Any],
    arrays: ArrayGroups,
    meta: Mapping[str, Any],
) -> Path:
    """Write a checkpoint directory atomically (see the module docstring); returns its path.

    ``arrays`` maps group name -> {array name: array}, each group stored as
    ``<group>.npz`` (dtypes and shapes preserved exactly; object arrays refused);
    ``config`` -> ``config.json``; ``meta`` (step, rng state, best val loss, ...) goes into
    ``meta.json``. JSON is Python's: NumPy scalars are stored as numbers, tuples come back
    as lists, ``inf``/``nan`` are allowed (a best loss starts at inf), keys become strings.
    Files of a previous checkpoint in ``directory`` are replaced; any other
    files there are kept. Raises `ValueError` on bad input or when the directory cannot be
    written; on any failure the previous checkpoint is left as it was.
    """
    target = Path(directory)
    files = _serialise(config, arrays, meta)  # before touching the disk

    if target.is_symlink():
        raise ValueError(f"refusing to write a checkpoint through the symlink {target}")
    if target.exists() and not target.is_dir():
        raise ValueError(f"checkpoint path {target} exists and is not a directory")
    parent = target.absolute().parent
    name = target.absolute().name
    if not name:
        raise ValueError(f"invalid checkpoint directory {target}")
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = parent / f".{name}.tmp-{tag}"
    backup = parent / f".{name}.old-{tag}"
    moved_old = False
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        for fname, data in files.items():  # dict order: meta.json last
            _write_file(tmp / fname, data)
        if target.is_dir():
            owned = _owned_files(target) | set(files)
            for entry in sorted(os.listdir(target)):
                if entry in owned:
                    continue
                src = target / entry
                if src.is_dir() and not src.is_symlink():
                    shutil.copytree(src, tmp / entry, symlinks=True,
                                    copy_function=_link_or_copy)
                elif src.is_symlink():
                    os.symlink(os.readlink(src), tmp / entry)
                else:
                    _link_or_copy(str(src), str(tmp / entry))
        _fsync_dir(tmp)
        if target.is_dir():
            os.rename(target, backup)
            moved_old = True
        os.rename(tmp, target)
        moved_old = False  # the new checkpoint is in place: the backup is now disposable
        _fsync_dir(parent)
    except BaseException as e:
        # Roll back so that an exception (disk full, Ctrl-C) leaves the old checkpoint
        # exactly where it was; a hard crash here is covered by load's backup fallback.
        if moved_old and not target.exists():
            try:
                os.rename(backup, target)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise ValueError(f"cannot write checkpoint {target}: {e}") from e
        raise
    shutil.rmtree(backup, ignore_errors=True)
    # Backups of earlier crashed saves are older than what is now in place: drop them.
    for stale in _backups(target):
        shutil.rmtree(stale, ignore_errors=True)
    return target


def _glob_escape(name: str) -> str:
    """Escape glob metacharacters in a literal file name."""
    return re.sub(r"([*?[])", r"[\1]", name)


# ----------------------------------------------------------------------------- loading

class _Vanished(Exception):
    """A file disappeared while reading: a concurrent save swapped the directory away."""


def _corrupt(path: Path, why: str) -> ValueError:
    return ValueError(f"corrupt checkpoint: {path}: {why}")


class _DirReader:
    """Reads files of one directory *inode*, so a concurrent save's rename cannot mix files.

    Where the OS supports ``dir_fd`` (Linux, macOS) the directory is opened once and every
    file is opened relative to it: all files come from the same checkpoint even if the path
    is swapped meanwhile; if that checkpoint is deleted under us, `_Vanished` asks for a
    retry. Elsewhere it falls back to plain paths.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fd: int | None = None
        if os.open in os.supports_dir_fd and os.name != "nt":
            try:
                self.fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except FileNotFoundError:
                raise _Vanished(str(directory)) from None
            except OSError as e:
                raise ValueError(f"cannot open checkpoint {directory}: {e.strerror or e}") from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def exists(self, name: str) -> bool:
        try:
            os.stat(name if self.fd is not None else self.directory / name, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        return True

    def read(self, name: str) -> bytes:
        path = self.directory / name
        try:
            fd = os.open(name if self.fd is not None else path, os.O_RDONLY, dir_fd=self.fd)
        except FileNotFoundError:
            raise _Vanished(str(path)) from None
        except OSError as e:
            raise _corrupt(path, f"cannot read ({e.strerror or e})") from None
        with os.fdopen(fd, "rb") as f:
            return f.read()


def _load_json(path: Path, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _corrupt(path, f"invalid JSON ({e})") from None


def _load_npz(path: Path, data: bytes) -> dict[str, np.ndarray]:
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        # np.load sniffs the magic bytes; anything that is neither npy nor zip is "pickled".
        raise _corrupt(path, f"not an .npz archive ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise _corrupt(path, f"not a valid .npz archive ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _corrupt(path, "not an .npz archive (a single .npy array)")
    out: dict[str, np.ndarray] = {}
    with archive:
        for key in archive.files:
            try:
                value = archive[key]
            except ValueError as e:
                if "pickle" in str(e):
                    raise _corrupt(path, f"array {key!r} is an object array (needs pickle; "
                                         "refused)") from None
                raise _corrupt(path, f"array {key!r} is unreadable ({e})") from None
            except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
                raise _corrupt(path, f"array {key!r} is unreadable ({e})") from None
            if not isinstance(value, np.ndarray):
                # a zip member without the .npy suffix: np.load hands back raw bytes
                raise _corrupt(path, f"member {key!r} is not a .npy array")
            out[key] = value
    return out


def _load_once(directory: Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]],
                                         dict[str, Any]]:
    reader = _DirReader(directory)
    try:
        return _parse(directory, reader)
    finally:
        reader.close()


def _parse(directory: Path, reader: _DirReader) -> tuple[
        dict[str, Any], dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    meta_path = directory / META_FILE
    try:
        meta_bytes = reader.read(META_FILE)
    except _Vanished:
        raise _corrupt(meta_path, "missing (an incomplete or foreign directory)") from None
    marker = _load_json(meta_path, meta_bytes)
    if (not isinstance(marker, dict) or marker.get("format") != FORMAT
            or not isinstance(marker.get("files"), dict)
            or not isinstance(marker.get("meta"), dict)):
        raise _corrupt(meta_path, f"not an {FORMAT} marker (needs format, files, meta)")
    version = marker.get("version")
    if version not in (1, VERSION):
        raise _corrupt(meta_path, f"unsupported format version {version!r} (this rnnkit reads "
                                  f"1 to {VERSION}; a newer rnnkit wrote it?)")
    # version 1 (rnnkit before the shared training engine) had no checksum of the meta
    if (version > 1 or "meta_sha256" in marker) and \
            marker.get("meta_sha256") != _meta_digest(marker["meta"]):
        raise _corrupt(meta_path, "checksum mismatch of its meta (the step, history or random "
                                  "state was modified after saving)")
    checksums: dict[str, Any] = marker["files"]
    if CONFIG_FILE not in checksums:
        raise _corrupt(meta_path, f"lists no {CONFIG_FILE}")

    config: dict[str, Any] = {}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for fname, digest in checksums.items():
        path = directory / fname
        group = fname[:-4] if fname.endswith(".npz") else None
        if fname != CONFIG_FILE and (group is None or not _GROUP_RE.match(group)):
            raise _corrupt(meta_path, f"lists an unexpected file {fname!r}")
        try:
            data = reader.read(fname)
        except _Vanished:
            if reader.exists(META_FILE):
                raise _corrupt(path, "missing") from None
            raise  # the whole checkpoint went away mid-read: retry on the new one
        if hashlib.sha256(data).hexdigest() != digest:
            raise _corrupt(path, "checksum mismatch (truncated or modified after saving)")
        if group is None:
            loaded = _load_json(path, data)
            if not isinstance(loaded, dict):
                raise _corrupt(path, "config must be a JSON object")
            config = loaded
        else:
            arrays[group] = _load_npz(path, data)
    return config, arrays, marker["meta"]


def checkpoint_format(directory: str | os.PathLike[str]) -> int:
    """The format version of the checkpoint in ``directory`` (1: written by rnnkit before the
    shared training engine, whose settings and meta differ); `load_checkpoint` checks the rest."""
    path = Path(directory) / META_FILE
    try:
        version = json.loads(path.read_bytes()).get("version")
    except (OSError, ValueError, AttributeError):
        raise _corrupt(path, "missing or not JSON") from None
    return version if isinstance(version, int) else 0


def load_checkpoint(
    directory: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Read a checkpoint written by `save_checkpoint`: ``(config, arrays, meta)``.

    ``arrays`` is {group: {name: array}} with the saved dtypes and shapes. Every file is
    checked against its sha256 in ``meta.json``; arrays load with ``allow_pickle=False``.
    If ``directory`` is missing because a save crashed between its two renames, the complete
    backup that save left beside it is loaded instead. Raises `ValueError` naming the file.
    """
    target = Path(directory)
    for _attempt in range(3):
        source = target
        if not target.exists():
            backups = _backups(target)
            if not backups:
                raise ValueError(f"no checkpoint at {target}")
            source = backups[0]
        elif not target.is_dir():
            raise ValueError(f"checkpoint path {target} is not a directory")
        try:
            return _load_once(source)
        except _Vanished:
            continue  # swapped and deleted under us by a concurrent save: read the new one
    raise ValueError(f"checkpoint {target} kept changing while being read")


def _backups(target: Path) -> list[Path]:
    """Backups left by interrupted saves of ``target``, newest first."""
    name = target.absolute().name
    found = []
    for p in target.absolute().parent.glob(f".{_glob_escape(name)}.old-*"):
        try:
            found.append((p.stat().st_mtime, p))
        except FileNotFoundError:
            continue
    return [p for _, p in sorted(found, reverse=True)]


# ----------------------------------------------------------------------------- rng state

def _encode_state(obj: Any) -> Any:
    # Bit-generator states are nested dicts of ints (PCG64: 128-bit ints, kept exact by
    # Python's json) and, for MT19937 / Philox / SFC64, small uint arrays.
    if isinstance(obj, dict):
        return {k: _encode_state(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": obj.dtype.str}
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _decode_state(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__", "dtype"}:
            return np.array(obj["__ndarray__"], dtype=np.dtype(obj["dtype"]))
        return {k: _decode_state(v) for k, v in obj.items()}
    return obj


def rng_state(gen: np.random.Generator) -> dict[str, Any]:
    """The complete state of a Generator as a JSON-able dict (for a checkpoint's meta)."""
    if not isinstance(gen, np.random.Generator):
        raise ValueError(f"rng_state expects a np.random.Generator, got {type(gen).__name__}")
    return _encode_state(gen.bit_generator.state)


def set_rng_state(gen: np.random.Generator, state: Mapping[str, Any]) -> None:
    """Put ``gen`` (in place) in the state `rng_state` saved: it continues exactly from there."""
    restored = rng_from_state(state)
    if type(restored.bit_generator) is not type(gen.bit_generator):
        raise ValueError(f"rng state is of {type(restored.bit_generator).__name__}, the generator "
                         f"uses {type(gen.bit_generator).__name__}")
    gen.bit_generator.state = restored.bit_generator.state


def rng_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """A Generator that continues exactly where the one given to `rng_state` was."""
    name = state.get("bit_generator") if isinstance(state, Mapping) else None
    if name not in _BIT_GENERATORS:
        raise ValueError(f"rng state names an unknown bit generator {name!r}; "
                         f"expected one of {_BIT_GENERATORS}")
    bit_gen = getattr(np.random, name)()
    try:
        bit_gen.state = _decode_state(dict(state))
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise ValueError(f"invalid {name} rng state: {e}") from None
    return np.random.Generator(bit_gen)
