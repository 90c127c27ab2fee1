"""The binding declares every function, enum value, constant and struct of the header,
with the right types: parsed from include/jobrunner.h, compared with jobrunner._native."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path
from typing import Any

import pytest

from jobrunner import _native

HEADER = Path(__file__).resolve().parents[3] / "include" / "jobrunner.h"


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    # Preprocessor lines other than #define (guards, includes, extern "C" wrappers).
    return re.sub(r"^#(?!define).*$", "", text, flags=re.M)


@pytest.fixture(scope="module")
def header() -> str:
    if not HEADER.exists():
        pytest.skip(f"{HEADER} not found (run from the repository)")
    return _strip_comments(HEADER.read_text())


_SCALARS: dict[str, Any] = {
    "int": ctypes.c_int,
    "int32_t": ctypes.c_int32,
    "uint32_t": ctypes.c_uint32,
    "int64_t": ctypes.c_int64,
    "uint64_t": ctypes.c_uint64,
    "size_t": ctypes.c_size_t,
    "bool": ctypes.c_bool,
}


def _ctype(decl: str) -> Any:
    """The ctypes type a C type (as written in the header) must map to."""
    decl = re.sub(r"\bconst\b", "", decl).strip()
    decl = re.sub(r"\s+", " ", decl).replace(" *", "*")
    if decl == "char*":
        return ctypes.c_char_p
    if decl == "void":
        return None
    stars = decl.count("*")
    base = decl.rstrip("*").strip()
    if base.startswith("enum "):
        inner: Any = ctypes.c_int
    elif base.startswith("struct "):
        name = base.split()[1]
        inner = _native.STRUCTS.get(name) or _native.OPAQUE[name]
    elif base in _native.CALLBACKS:
        inner = _native.CALLBACKS[base]
    elif base == "void":
        assert stars >= 1, decl
        inner, stars = ctypes.c_void_p, stars - 1
    else:
        inner = _SCALARS[base]
    for _ in range(stars):
        inner = ctypes.POINTER(inner)
    return inner


def _split_params(params: str) -> list[tuple[str, str]]:
    """[(type, name)] of a C parameter list."""
    params = params.strip()
    if params in ("", "void"):
        return []
    out = []
    for p in params.split(","):
        m = re.match(r"(.*?)(\w+)\s*$", p.strip(), flags=re.S)
        assert m, p
        out.append((m.group(1), m.group(2)))
    return out


def _prototypes(header: str) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    body = header.split('extern "C" {', 1)[1] if 'extern "C" {' in header else header
    found = {}
    for m in re.finditer(r"([\w\s\*]+?)\b(jr_\w+)\s*\(([^)]*)\)\s*;", body):
        ret = m.group(1).strip()
        ret = ret.split("}")[-1].strip()
        found[m.group(2)] = (ret, _split_params(m.group(3)))
    return found


def test_every_function_declared_with_its_types(header: str) -> None:
    protos = _prototypes(header)
    assert len(protos) > 30, "the prototype regex found too little: fix the test"
    assert set(protos) == set(_native.FUNCTIONS), (
        f"missing in _native: {sorted(set(protos) - set(_native.FUNCTIONS))}; "
        f"not in the header: {sorted(set(_native.FUNCTIONS) - set(protos))}"
    )
    for name, (ret, params) in protos.items():
        restype, argtypes = _native.FUNCTIONS[name]
        assert restype is _ctype(ret) or restype == _ctype(ret), f"{name}: restype {restype}"
        want = [_ctype(t) for t, _ in params]
        assert list(argtypes) == want, f"{name}: argtypes {argtypes} != {want}"
        # ... and actually set on the loaded library.
        func = getattr(_native.lib, name)
        assert func.restype == restype and list(func.argtypes) == want, name
        if name in _native.NONBLOCKING:
            assert list(getattr(_native.fast, name).argtypes) == want, name


def test_address_versions_match_the_typed_declarations() -> None:
    """The job path's second declarations (handles as addresses) differ from the typed
    table only where a parameter is a pointer, which becomes c_void_p."""
    for attr, name in _native.ADDRESS_FUNCTIONS.items():
        restype, argtypes = _native.FUNCTIONS[name]
        func = getattr(_native, attr)
        assert func.__name__ == name and func.restype == restype, attr
        assert len(func.argtypes) == len(argtypes), attr
        for typed, plain in zip(argtypes, func.argtypes):
            is_pointer = typed is ctypes.c_void_p or issubclass(
                typed, (ctypes._Pointer, ctypes._CFuncPtr)
            )
            assert plain is (ctypes.c_void_p if is_pointer else typed), f"{attr}: {plain}"


def test_every_enum_value_declared(header: str) -> None:
    enums = re.findall(r"typedef enum (\w+) \{(.*?)\}\s*\w+;", header, flags=re.S)
    assert {name for name, _ in enums} == set(_native.ENUMS)
    for name, body in enums:
        values = dict(re.findall(r"(\w+)\s*=\s*(-?\d+)", body))
        py = _native.ENUMS[name]
        assert {m.name: m.value for m in py} == {k: int(v) for k, v in values.items()}, name


def test_every_define_declared(header: str) -> None:
    defines = dict(re.findall(r"#define (JR_\w+) (\d+)", header))
    major = int(defines.pop("JR_VERSION_MAJOR"))
    defines.pop("JR_VERSION_MINOR")
    defines.pop("JR_VERSION_PATCH")
    assert major == _native.EXPECTED_MAJOR
    assert {k: int(v) for k, v in defines.items()} == _native.DEFINES
    for k, v in _native.DEFINES.items():
        assert getattr(_native, k) == v


def test_every_struct_field_declared(header: str) -> None:
    structs = re.findall(r"typedef struct (\w+) \{(.*?)\}\s*\w+;", header, flags=re.S)
    assert {name for name, _ in structs} == set(_native.STRUCTS)
    for name, body in structs:
        fields = [
            (m.group(2), _ctype(m.group(1)))
            for m in re.finditer(r"([\w\s\*]+?)\b(\w+)\s*;", body)
        ]
        declared = list(_native.STRUCTS[name]._fields_)
        assert [f for f, _ in declared] == [f for f, _ in fields], name
        for (fname, ftype), (_, want) in zip(declared, fields):
            assert ftype is want or ftype == want, f"{name}.{fname}: {ftype} != {want}"


def test_opaque_and_callback_types(header: str) -> None:
    opaque = set(re.findall(r"typedef struct (\w+) \1;", header))
    assert opaque == set(_native.OPAQUE)
    callbacks = re.findall(r"typedef ([\w\s\*]+?)\(\*(\w+)\)\(([^)]*)\);", header)
    assert {name for _, name, _ in callbacks} == set(_native.CALLBACKS)
    for ret, name, params in callbacks:
        proto = _native.CALLBACKS[name]
        assert proto._restype_ == _ctype(ret), name
        # Pointers given to Python callbacks are plain addresses (c_void_p) for speed.
        want = [
            ctypes.c_void_p if "*" in t or t.strip().startswith("struct") else _ctype(t)
            for t, _ in _split_params(params)
        ]
        assert list(proto._argtypes_) == want, name


def test_library_version_matches() -> None:
    assert _native.LIBRARY_VERSION.split(".")[0] == str(_native.EXPECTED_MAJOR)
