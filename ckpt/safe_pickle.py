"""Read the structure of a `torch.save` file without reading its tensor bytes.

`torch.save` writes a zip archive: `<name>/data.pkl` is a pickle of the object
structure whose tensors point (pickle "persistent ids") at separate records
`<name>/data/<key>` holding the raw bytes. `read_structure` unpickles only
data.pkl with an allow-list unpickler: tensors become `TensorRef` placeholders,
nothing from the file is ever executed, and torch is not even imported. The cost
is that of data.pkl and the zip directory, whatever the size of the tensors.
Files of torch < 1.6 (a chain of pickles, not a zip) are read the same way.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass
from typing import IO, Any

from ckpt.errors import CheckpointError, UnsafeCheckpointError

__all__ = ["StorageRef", "TensorRef", "read_structure", "read_scalar"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# Bytes per element and struct format of the legacy storage classes torch pickles.
_STORAGES = {
    "DoubleStorage": (8, "d"), "FloatStorage": (4, "f"), "HalfStorage": (2, "e"),
    "BFloat16Storage": (2, None), "LongStorage": (8, "q"), "IntStorage": (4, "i"),
    "ShortStorage": (2, "h"), "CharStorage": (1, "b"), "ByteStorage": (1, "B"),
    "BoolStorage": (1, "?"), "ComplexFloatStorage": (8, None),
    "ComplexDoubleStorage": (16, None), "UntypedStorage": (1, None),
}  # fmt: skip
_DTYPE_NAME = re.compile(
    r"(u?int\d*|float\d*(_\w+)?|bfloat16|half|double|long|short|bool|complex\d*|"
    r"cfloat|cdouble|q(u)?int\w*|bits\w*|per_\w+)"
)
_MAX_STRUCTURE = 256 * 2**20  # a data.pkl beyond this is not a checkpoint we wrote


@dataclass(frozen=True)
class StorageRef:
    """Where a tensor's bytes live: record `data/<key>` of `numel` elements."""

    key: str
    kind: str
    numel: int

    @property
    def nbytes(self) -> int | None:
        size = _STORAGES.get(self.kind, (None, None))[0]
        return None if size is None else size * self.numel


@dataclass(frozen=True)
class TensorRef:
    """A tensor seen in the structure; its values are not read."""

    storage: StorageRef | None
    offset: int
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


def _tensor(storage: Any = None, offset: Any = 0, size: Any = (), *_: Any, **__: Any) -> TensorRef:
    ref = storage if isinstance(storage, StorageRef) else None
    return TensorRef(ref, int(offset) if isinstance(offset, int) else 0, tuple(size or ()))


def _first(data: Any = None, *_: Any, **__: Any) -> Any:
    return data


def _from_type(func: Any, _new_type: Any, args: Any, _state: Any) -> Any:
    return func(*args)


def _encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_REBUILDERS = {
    "_rebuild_tensor": _tensor, "_rebuild_tensor_v2": _tensor, "_rebuild_tensor_v3": _tensor,
    "_rebuild_parameter": _first, "_rebuild_parameter_with_state": _first,
    "_rebuild_sparse_tensor": _tensor, "_rebuild_sparse_csr_tensor": _tensor,
    "_rebuild_meta_tensor_no_storage": _tensor, "_rebuild_qtensor": _tensor,
    "_rebuild_nested_tensor": _tensor, "_rebuild_wrapper_subclass": _tensor,
    "_rebuild_device_tensor_from_numpy": _tensor, "_rebuild_xla_tensor": _tensor,
    "_rebuild_mtia_tensor": _tensor,
}  # fmt: skip
_GLOBALS: dict[str, Any] = {
    "collections.OrderedDict": collections.OrderedDict,
    "collections.Counter": collections.Counter,
    "builtins.set": set, "builtins.frozenset": frozenset,
    "builtins.bytearray": bytearray, "builtins.complex": complex,
    "_codecs.encode": _encode,
    "torch.Size": lambda dims=(): tuple(dims),
    "torch.device": lambda *args: ":".join(str(a) for a in args),
    "torch.Tensor": "torch.Tensor", "torch.nn.parameter.Parameter": "torch.nn.Parameter",
    "torch.serialization._get_layout": lambda name: name,
    "torch._tensor._rebuild_from_type_v2": _from_type,
}  # fmt: skip


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module
        full = f"{module}.{name}"
        if full in _GLOBALS:
            return _GLOBALS[full]
        if module == "torch._utils" and name in _REBUILDERS:
            return _REBUILDERS[name]
        if module in ("torch", "torch.storage", "torch.cuda") and name.endswith("Storage"):
            return name  # storage kind, used by persistent_load
        if module == "torch" and _DTYPE_NAME.fullmatch(name):
            return f"torch.{name}"
        raise UnsafeCheckpointError(
            f"it pickles {full}, which is not a tensor, a plain container or a number"
        )

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            kind = pid[1] if isinstance(pid[1], str) else type(pid[1]).__name__
            return StorageRef(str(pid[2]), kind, int(pid[4]))
        return None  # legacy `module` source records and the like


def _unpickle(stream: IO[bytes]) -> Any:
    try:
        return _Unpickler(stream).load()
    except CheckpointError:
        raise
    except Exception as exc:  # any damage to the pickle stream
        raise CheckpointError(
            f"its structure cannot be read ({type(exc).__name__}: {exc})"
        ) from exc


def _refs(obj: Any, found: list[TensorRef]) -> list[TensorRef]:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, TensorRef):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
    return found


def _archive_prefix(archive: zipfile.ZipFile) -> str:
    for name in archive.namelist():
        if name.endswith("/data.pkl") and name.count("/") == 1:
            return name[: -len("data.pkl")]
    raise CheckpointError("it is a zip archive without a data.pkl record (not a torch.save file)")


def _check_records(archive: zipfile.ZipFile, prefix: str, obj: Any) -> None:
    sizes = {info.filename: info.file_size for info in archive.infolist()}
    for ref in _refs(obj, []):
        if ref.storage is None:
            continue
        record = f"{prefix}data/{ref.storage.key}"
        need = ref.storage.nbytes
        if record not in sizes or (need is not None and sizes[record] < need):
            raise CheckpointError(f"tensor record {record} is missing or short (damaged file)")


def _read_zip(file: IO[bytes]) -> Any:
    with zipfile.ZipFile(file) as archive:
        prefix = _archive_prefix(archive)
        info = archive.getinfo(prefix + "data.pkl")
        if info.file_size > _MAX_STRUCTURE:
            raise CheckpointError(f"its data.pkl is {info.file_size} bytes (not a checkpoint)")
        obj = _unpickle(io.BytesIO(archive.read(info)))
        _check_records(archive, prefix, obj)
        return obj


def _read_legacy(file: IO[bytes]) -> Any:
    if _unpickle(file) != _LEGACY_MAGIC:
        raise CheckpointError("it is neither a zip archive nor a legacy torch.save file")
    _unpickle(file)  # protocol version
    _unpickle(file)  # system info
    return _unpickle(file)


def read_structure(path: str) -> Any:
    """The unpickled object of a torch.save file, tensors as `TensorRef`.

    Raises UnsafeCheckpointError for disallowed globals, CheckpointError for damage.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(4)
            is_zip = zipfile.is_zipfile(file)
            file.seek(0)
            if is_zip:
                return _read_zip(file)
            if head.startswith(b"PK"):
                raise CheckpointError("its zip archive is truncated or damaged")
            return _read_legacy(file)
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"its zip archive is damaged ({exc})") from exc
    except OSError as exc:
        raise CheckpointError(f"it cannot be read ({exc.strerror or exc})") from exc


def read_scalar(path: str, ref: TensorRef) -> float | None:
    """The value of a one-element tensor (reads a few bytes), None when not possible."""
    storage = ref.storage
    fmt = None if storage is None else _STORAGES.get(storage.kind, (None, None))[1]
    if storage is None or fmt is None or ref.numel != 1:
        return None
    size = struct.calcsize(fmt)
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive)
            with archive.open(f"{prefix}data/{storage.key}") as record:
                record.seek(ref.offset * size)
                (value,) = struct.unpack("<" + fmt, record.read(size))
    except (OSError, KeyError, ValueError, struct.error, zipfile.BadZipFile, CheckpointError):
        return None
    return float(value)
