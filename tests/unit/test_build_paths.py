"""The layer's interpreter build keeps the cache's location out of the bytes it ships: the
compile command OpenSSL quotes (mkbuildinf.pl's character array) and sysconfig's data get fixed
names instead of the paths (two cold builds in different cache folders gave identical trees)."""

from __future__ import annotations

import re
from pathlib import Path

from scripts import build_python


def _buildinf(flags: str) -> str:
    """What OpenSSL's util/mkbuildinf.pl writes for `flags` (backslashes doubled first)."""
    text = "compiler: " + flags.replace("\\", "\\\\")
    chars = "".join("'\\" + c + "'," if c in "\\'" else f"'{c}'," for c in text)
    return ("#define PLATFORM \"platform: linux-x86_64\"\n"
            f"static const char compiler_flags[] = {{\n    {chars}'\\0'\n}};\n")


def _decoded(header: str) -> str:
    body = header[header.index("{") + 1:header.index("'\\0'")]
    return "".join(c[-1] for c in re.findall(r"'(\\.|[^\\'])',", body))


def test_the_compile_command_quoted_by_openssl_names_no_cache_path(tmp_path: Path) -> None:
    root = "/home/someone/.cache/splunk-layer-build"
    src = f"{root}/work-x86_64-0123/openssl/openssl-3.0.20"
    header = tmp_path / "buildinf.h"
    header.write_text(_buildinf(f"{root}/work-x86_64-0123/toolchain/cc -O2 "
                                f"-ffile-prefix-map={src}=/src -DX='a\\b'"))
    build_python._scrub_compiler_flags(header, {src: "/src", root: "/splunk-layer-build"})
    text = header.read_text()
    assert _decoded(text) == ("compiler: /splunk-layer-build/work-x86_64-0123/toolchain/cc -O2 "
                              "-ffile-prefix-map=/src=/src -DX='a\\\\b'")
    assert text.startswith('#define PLATFORM "platform: linux-x86_64"')
    assert text.rstrip().endswith("'\\0'\n};")


def test_sysconfig_data_names_no_cache_path(tmp_path: Path) -> None:
    data = tmp_path / "lib" / "python3.13" / "_sysconfigdata__linux_x86_64-linux-gnu.py"
    data.parent.mkdir(parents=True)
    data.write_text("build_time_vars = {'CONFIG_ARGS': \"'--with-openssl=/c/deps-x' "
                    "'CC=/c/work-x/toolchain/cc'\", 'srcdir': '/c/work-x/python/Python-3.13'}\n")
    build_python._scrub_build_paths(tmp_path, {"/c/work-x/python/Python-3.13": "/src",
                                               "/c/deps-x": "/splunk-layer-deps",
                                               "/c": "/splunk-layer-build"})
    text = data.read_text()
    assert "/c/" not in text
    assert "'--with-openssl=/splunk-layer-deps'" in text
    assert "'srcdir': '/src'" in text  # the longest path is named first
