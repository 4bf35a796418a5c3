"""Start and stop the real local services the STAC tests use (127.0.0.1 only).

- nginx (Debian): static files with HTTP range requests; its access log is the request log.
- moto_server (PyPI moto[server]): an S3-compatible endpoint.
- rustac serve (PyPI rustac): a real STAC API (in-memory backend).

A missing program is a test failure naming the install step, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = "run `bash scripts/services/install.sh` (as root, from the repository root) before pytest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _venv_bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} not found next to {sys.executable}: {INSTALL_HINT}", pytrace=False)
    return str(path)


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    stop(proc)
    tail = log.read_text()[-2000:] if log.exists() else ""
    pytest.fail(f"service behind {url} did not start (exit code {proc.poll()}): {tail}\n{INSTALL_HINT}", pytrace=False)


def stop(proc: subprocess.Popen) -> None:
    """Stop a service this module started (by its own process handle)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Service:
    url: str
    proc: subprocess.Popen
    log: Path


def start_nginx(root: Path, workdir: Path) -> Service:
    """Serve ``root`` over HTTP with range requests; the access log has one line per request."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        pytest.fail(f"nginx is not installed (Debian package nginx-light): {INSTALL_HINT}", pytrace=False)
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""{user}
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format ranges '$request_method $uri $status "$http_range" $body_bytes_sent';
    access_log {workdir}/access.log ranges;
    client_body_temp_path {workdir}/tmp_body;
    proxy_temp_path {workdir}/tmp_proxy;
    fastcgi_temp_path {workdir}/tmp_fcgi;
    uwsgi_temp_path {workdir}/tmp_uwsgi;
    scgi_temp_path {workdir}/tmp_scgi;
    types {{ image/tiff tif; application/json json; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""
    )
    log = workdir / "error.log"
    proc = subprocess.Popen([exe, "-c", str(conf), "-p", str(workdir)], stdout=subprocess.DEVNULL, stderr=open(log, "a"))
    url = f"http://127.0.0.1:{port}"
    _wait(url + "/", proc, log)
    return Service(url, proc, workdir / "access.log")


def start_moto(workdir: Path) -> Service:
    """An S3 endpoint (moto's server) on 127.0.0.1."""
    exe = _venv_bin("moto_server")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "moto.log"
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=open(log, "a"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    _wait(url + "/", proc, log)
    return Service(url, proc, log)


def start_stac_api(hrefs: list[Path], workdir: Path) -> Service:
    """A STAC API (``rustac serve``, in-memory backend) loaded with collections and items."""
    exe = _venv_bin("rustac")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "rustac.log"
    proc = subprocess.Popen(
        [exe, "serve", "--addr", f"127.0.0.1:{port}", *map(str, hrefs)],
        stdout=open(log, "a"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    _wait(url + "/", proc, log, timeout=60)
    return Service(url, proc, log)
