"""The symbol versions an ELF file needs from its shared libraries (what `objdump -T` shows).

Read from the version-needs section (SHT_GNU_verneed) through the section headers, which
stripping keeps: {"libc.so.6": {"GLIBC_2.2.5", "GLIBC_2.17"}, ...}. 64-bit little-endian only,
the two Lambda architectures.
"""

from __future__ import annotations

import re
import struct

ELF_MAGIC = b"\x7fELF"
SHT_GNU_VERNEED = 0x6FFFFFFE
GLIBC_VERSION = re.compile(r"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?$")


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def machine(data: bytes) -> int:
    """e_machine: 62 x86-64, 183 AArch64."""
    return int(struct.unpack_from("<H", data, 18)[0])


def version_needs(data: bytes) -> dict[str, set[str]]:
    """Library file name -> version names needed from it; {} for a file with no needs."""
    if not is_elf(data) or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]  # fmt: skip
    needs: dict[str, set[str]] = {}
    for _name, sh_type, _flags, _addr, offset, _size, link, info, _align, _entsize in sections:
        if sh_type != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][4]
        entry = offset
        for _ in range(info):  # sh_info: number of Verneed entries
            _version, count, file_off, aux, next_off = struct.unpack_from("<HHIII", data, entry)
            names = needs.setdefault(_string(data, strtab + file_off), set())
            aux_at = entry + aux
            for _ in range(count):
                _hash, _aflags, _other, name_off, aux_next = struct.unpack_from(
                    "<IHHII", data, aux_at
                )
                names.add(_string(data, strtab + name_off))
                aux_at += aux_next
            entry += next_off
    return needs


def max_glibc(needs: dict[str, set[str]]) -> tuple[int, ...]:
    """The newest GLIBC_x.y version named anywhere in `needs`, (0,) when none."""
    found: list[tuple[int, ...]] = [(0,)]
    for names in needs.values():
        for name in names:
            match = GLIBC_VERSION.match(name)
            if match:
                found.append(tuple(int(part) for part in match.groups() if part is not None))
    return max(found)


def _string(data: bytes, at: int) -> str:
    return data[at : data.index(b"\0", at)].decode("ascii")
