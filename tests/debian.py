"""Debian tools the tests drive (prometheus, promtool, chromium, tmux), installed when missing (the
test machines run as root with Debian's apt)."""

from __future__ import annotations

import shutil
import subprocess


def debian_binary(binary: str, package: str) -> str:
    """The path of ``binary``, from Debian's ``package``, which is installed when ``binary`` is missing."""
    found = shutil.which(binary)
    if found:
        return found
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"could not install Debian's {package} ({' '.join(command)}): {result.stderr[-500:]}")
    found = shutil.which(binary)
    if not found:
        raise RuntimeError(f"apt-get installed {package} but no {binary} binary is on PATH")
    return found


def debian_prometheus(binary: str = "prometheus") -> str:
    """``prometheus`` or ``promtool`` (both from Debian's prometheus package)."""
    return debian_binary(binary, "prometheus")
