"""Cluster settings: defaults in ``eocube.yaml``, merged into ``dask.config``, checked in one place.

Settings resolve, lowest to highest priority, from

1. the defaults shipped in ``eocube/cluster/eocube.yaml`` (key ``eocube.cluster``);
2. dask's own configuration: YAML files in ``~/.config/dask`` or ``$DASK_CONFIG`` and
   environment variables such as ``DASK_EOCUBE__CLUSTER__SLURM__QUEUE=gpu``;
3. a YAML file of the same layout given as ``config_file`` (CLI ``--cluster-config``);
4. keyword arguments of :func:`eocube.cluster.connect` (CLI flags) that are not None.

Everything here is pure: no cluster is started and no Slurm command is run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask
import dask.config
import yaml
from dask.utils import parse_bytes

from ..errors import ClusterError

CONFIG_KEY = "eocube.cluster"
"""Where eocube's cluster settings live in ``dask.config``."""

DEFAULTS_FILE = Path(__file__).with_name("eocube.yaml")
"""The YAML file of defaults shipped with eocube."""

KINDS = ("local", "slurm")
"""Cluster kinds made by eocube (besides joining a scheduler address)."""

AUTO = "auto"
"""Default kind: the command line runs a small job on dask's threads in its own process and a larger
one on a local cluster (:func:`eocube.cli._common.compute_on`); :func:`resolve` reads it as ``"local"``."""

# Python keyword -> (CLI flag or None, key in the "local"/"slurm" section). Used to name a
# setting in error messages the way the user wrote it.
LOCAL_KEYS = {
    "n_workers": "--workers",
    "threads_per_worker": "--threads",
    "memory_limit": "--memory-limit",
    "processes": None,
}
SLURM_KEYS = {
    "queue": "--partition",
    "account": "--account",
    "walltime": "--walltime",
    "cores": "--cores",
    "memory": "--memory",
    "processes": "--processes",
    "gpus": "--gpus",
    "gpu_type": "--gpu-type",
    "cores_per_gpu": None,
    "memory_per_gpu": None,
    "qos": "--qos",
    "constraint": "--constraint",
    "jobs": "--jobs",
    "adapt_min": "--adapt-min",
    "adapt_max": "--adapt-max",
    "prologue": "--prologue",
    "local_directory": "--scratch",
    "interface": "--interface",
    "scheduler_host": "--scheduler-host",
    "log_directory": None,
    "job_name": None,
    "job_extra_directives": "--job-directive",
    "worker_extra_args": None,
    "death_timeout": None,
    "python": None,
    "tls": "--tls/--no-tls",
    "tls_directory": "--tls-directory",
}

class DefaultAddress(str):
    """An address used because the caller gave none (a ``str`` that says it is a default)."""


DEFAULT_DASHBOARD = DefaultAddress("127.0.0.1:8787")
"""Dashboard address when none is given: loopback only (reach it remotely with ``ssh -L 8787:localhost:8787``).

For Slurm, ``dashboard_address`` in dask-jobqueue's ``jobqueue.slurm.scheduler-options``
replaces it; an address given to :func:`eocube.cluster.connect` replaces both.
"""


def is_default(address: str | None) -> bool:
    """Whether ``address`` is a default (:data:`DEFAULT_DASHBOARD`) rather than given by the caller."""
    return isinstance(address, DefaultAddress)


def loopback_address(address: str | None) -> str | None:
    """``address`` bound to 127.0.0.1 when it names no host (``":8787"``, ``"8787"``); otherwise as given.

    Parameters
    ----------
    address
        ``"host:port"``, ``":port"``, ``"port"`` or None (no server).

    Returns
    -------
    str or None
        The address to listen on.
    """
    if address is None:
        return None
    text = str(address)
    if text.startswith(":") or text.isdigit():
        return f"127.0.0.1:{text.lstrip(':')}"
    return text


_WALLTIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


class ClusterConfigError(ClusterError, ValueError):
    """A cluster setting is missing, unknown or not valid; the message names the setting."""


def load_defaults() -> None:
    """Merge ``eocube.yaml`` into dask's defaults (idempotent; done on import)."""
    with open(DEFAULTS_FILE) as fh:
        defaults = yaml.safe_load(fh)
    dask.config.update_defaults(defaults)


load_defaults()


def setting_name(kind: str, key: str) -> str:
    """How a user sets ``key``: ``"--partition / eocube.cluster.slurm.queue"``."""
    flags = SLURM_KEYS if kind == "slurm" else LOCAL_KEYS
    dotted = f"{CONFIG_KEY}.{kind}.{key.replace('_', '-')}"
    flag = flags.get(key)
    return f"{flag} / {dotted}" if flag else dotted


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a cluster configuration file (the layout of ``eocube.yaml``).

    Parameters
    ----------
    path
        YAML file with an ``eocube: cluster:`` section.

    Returns
    -------
    dict
        The ``eocube.cluster`` section, keys as in the file (kebab-case).

    Raises
    ------
    ClusterConfigError
        The file is missing, not YAML, or has no ``eocube: cluster:`` section.
    """
    path = Path(path)
    if not path.is_file():
        raise ClusterConfigError(f"cluster config file {path} does not exist (--cluster-config): give the path of a YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ClusterConfigError(f"cluster config file {path} is not valid YAML: {exc}") from exc
    section = (data or {}).get("eocube", {}) if isinstance(data, dict) else None
    section = section.get("cluster") if isinstance(section, dict) else None
    if not isinstance(section, dict):
        raise ClusterConfigError(
            f"cluster config file {path} has no 'eocube: cluster:' section: "
            f"copy the layout of {DEFAULTS_FILE}"
        )
    return section


def resolve(
    cluster: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
) -> tuple[str, dict[str, Any]]:
    """The cluster kind and its checked settings, from all sources in priority order.

    Parameters
    ----------
    cluster
        ``"local"``, ``"slurm"`` or a scheduler address; None: the configured kind.
    overrides
        Keyword settings (snake_case); None values are ignored.
    config_file
        Optional YAML file (see :func:`read_config_file`).

    Returns
    -------
    kind : str
        ``"local"``, ``"slurm"`` or ``"address"``.
    settings : dict
        snake_case settings of that kind; for ``"address"``: ``address`` and ``timeout``.

    Raises
    ------
    ClusterConfigError
        Unknown kind or setting, or a value that is not valid (the setting is named).
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    base = dask.config.get(CONFIG_KEY)
    if config_file is not None:
        base = dask.config.merge(base, read_config_file(config_file))
    cluster = cluster or str(base.get("kind") or AUTO)
    if cluster == AUTO:
        cluster = "local"
    if cluster in KINDS:
        kind = cluster
    elif "://" in cluster or cluster.count(":") == 1:
        kind = "address"
    else:
        raise ClusterConfigError(
            f"unknown cluster {cluster!r} (--cluster / {CONFIG_KEY}.kind): use 'local', 'slurm' "
            f"or a scheduler address such as tcp://127.0.0.1:8786 ({CONFIG_KEY}.kind also takes '{AUTO}')"
        )
    if kind == "address":
        unused = sorted(overrides)
        if unused:
            raise ClusterConfigError(
                f"settings {', '.join(unused)} do not apply when joining the scheduler at {cluster}: "
                "drop them, or use --cluster local / slurm"
            )
        return kind, {"address": cluster, "timeout": float(base.get("timeout", 30))}

    known = SLURM_KEYS if kind == "slurm" else LOCAL_KEYS
    section = {str(k).replace("-", "_"): v for k, v in (base.get(kind) or {}).items()}
    for key in section:
        if key not in known:
            raise ClusterConfigError(
                f"unknown setting {CONFIG_KEY}.{kind}.{key.replace('_', '-')}: "
                f"known are {', '.join(k.replace('_', '-') for k in known)}"
            )
    for key in overrides:
        if key not in known:
            other = "local" if kind == "slurm" else "slurm"
            if key in (LOCAL_KEYS if kind == "slurm" else SLURM_KEYS):
                raise ClusterConfigError(
                    f"setting {key!r} ({setting_name(other, key)}) does not apply to a {kind} cluster: "
                    f"drop it, or use --cluster {other}"
                )
            raise ClusterConfigError(f"unknown setting {key!r} for a {kind} cluster: known are {', '.join(known)}")
    if kind == "local" and "processes" in overrides and not isinstance(overrides["processes"], bool):
        raise ClusterConfigError(
            f"processes={overrides['processes']!r}: for a local cluster it is True/False (workers as processes "
            "or threads); --processes is for Slurm jobs, use --workers for local worker processes"
        )
    settings = {key: section.get(key) for key in known}
    settings.update(overrides)
    checker = _check_slurm if kind == "slurm" else _check_local
    return kind, checker(settings)


def _check_local(s: dict[str, Any]) -> dict[str, Any]:
    for key in ("n_workers", "threads_per_worker"):
        s[key] = _positive_int(s[key], "local", key, allow_none=True)
    if s["memory_limit"] is not None:
        _bytes(s["memory_limit"], "local", "memory_limit")
    s["processes"] = None if s["processes"] is None else bool(s["processes"])  # None: local_cluster decides
    return s


def _check_slurm(s: dict[str, Any]) -> dict[str, Any]:
    s["gpus"] = _positive_int(s["gpus"] or 0, "slurm", "gpus", minimum=0)
    s["derived"] = _gpu_defaults(s)
    s["cores"] = _positive_int(s["cores"], "slurm", "cores")
    s["jobs"] = _positive_int(s["jobs"], "slurm", "jobs", minimum=0)
    s["death_timeout"] = _positive_int(s["death_timeout"], "slurm", "death_timeout", allow_none=True)
    if s["processes"] is not None and isinstance(s["processes"], bool):
        raise ClusterConfigError(
            f"{setting_name('slurm', 'processes')} is a number of worker processes per job, not {s['processes']}")
    s["processes"] = _positive_int(s["processes"], "slurm", "processes", allow_none=True)
    if s["gpus"]:
        if s["processes"] not in (None, 1, s["gpus"]):
            raise ClusterConfigError(
                f"{setting_name('slurm', 'processes')}={s['processes']} conflicts with "
                f"{setting_name('slurm', 'gpus')}={s['gpus']}: a GPU job runs one worker per GPU, "
                f"so leave processes unset or set it to {s['gpus']}"
            )
        s["processes"] = s["gpus"]
    s["processes"] = s["processes"] or 1
    if s["processes"] > s["cores"]:
        raise ClusterConfigError(
            f"{setting_name('slurm', 'processes')}={s['processes']} is more than "
            f"{setting_name('slurm', 'cores')}={s['cores']}: each worker process needs at least one core; "
            "raise cores or lower processes/gpus"
        )
    if s["memory"] is None:
        raise ClusterConfigError(f"{setting_name('slurm', 'memory')} is not set: give the memory per job, e.g. 4GB")
    memory = _bytes(s["memory"], "slurm", "memory")
    if memory < 2**20 * s["processes"]:
        raise ClusterConfigError(
            f"{setting_name('slurm', 'memory')}={s['memory']!r} is too small for {s['processes']} worker(s): give e.g. 4GB")
    if s["walltime"] is not None:
        s["walltime"] = str(s["walltime"])
        if not _WALLTIME.match(s["walltime"]):
            raise ClusterConfigError(
                f"{setting_name('slurm', 'walltime')}={s['walltime']!r} is not a Slurm time: "
                "use HH:MM:SS, MM, or D-HH:MM:SS (e.g. 02:00:00)"
            )
    lo = s["jobs"] if s["adapt_min"] is None else _positive_int(s["adapt_min"], "slurm", "adapt_min", minimum=0)
    hi = max(lo, s["jobs"]) if s["adapt_max"] is None else _positive_int(s["adapt_max"], "slurm", "adapt_max")
    if lo > hi:
        raise ClusterConfigError(
            f"{setting_name('slurm', 'adapt_min')}={lo} is more than {setting_name('slurm', 'adapt_max')}={hi}"
        )
    s["adapt_min"], s["adapt_max"] = lo, hi
    s["tls"] = _bool(s["tls"], "slurm", "tls")
    for key in ("prologue", "job_extra_directives", "worker_extra_args"):
        s[key] = _str_list(s[key], key)
    s["job_extra_directives"] = [_directive(d) for d in s["job_extra_directives"]]
    for key in ("queue", "account", "gpu_type", "qos", "constraint", "interface", "scheduler_host", "local_directory",
                "log_directory", "job_name", "python", "tls_directory"):
        if s[key] is not None:
            s[key] = str(s[key])
            if not s[key].strip():
                raise ClusterConfigError(f"{setting_name('slurm', key)} is empty: give a value or leave it unset")
    return s


SLURM_FALLBACKS = {"cores": 1, "memory": "4GB"}
"""Cores and memory of a job without GPUs when neither is set."""


def _gpu_defaults(s: dict[str, Any]) -> list[str]:
    """Fill ``cores`` and ``memory`` left unset: per GPU for a GPU job, else :data:`SLURM_FALLBACKS`.

    Returns
    -------
    list of str
        One line per value chosen here, for the dry run (empty when nothing was derived from the GPUs).
    """
    derived = []
    for key, per in (("cores", "cores_per_gpu"), ("memory", "memory_per_gpu")):
        if s[key] is not None:
            continue
        if not s["gpus"]:
            s[key] = SLURM_FALLBACKS[key]
            continue
        if per == "cores_per_gpu":
            unit = _positive_int(s[per] if s[per] is not None else 8, "slurm", per)
            s[key] = s["gpus"] * unit
            shown = str(unit)
        else:
            unit = s[per] if s[per] is not None else "16GB"
            _bytes(unit, "slurm", per)
            m = re.match(r"^\s*(\d+)\s*([A-Za-z]*)\s*$", str(unit))
            s[key] = f"{int(m.group(1)) * s['gpus']}{m.group(2)}" if m else _bytes(unit, "slurm", per) * s["gpus"]
            shown = str(unit)
        derived.append(f"{key} {s[key]} = {s['gpus']} GPUs x {shown} ({setting_name('slurm', per)}; "
                       f"{setting_name('slurm', key)} sets it)")
    return derived


def _directive(text: str) -> str:
    """An ``#SBATCH`` option as dask-jobqueue wants it: ``--qos=x`` (a leading ``#SBATCH`` is dropped)."""
    option = text.strip()
    if option.upper().startswith("#SBATCH"):
        option = option[len("#SBATCH"):].strip()
    if not option.startswith("-"):
        raise ClusterConfigError(
            f"{setting_name('slurm', 'job_extra_directives')}={text!r} is not an sbatch option: give it as "
            "'--name=value' or '-C feature', e.g. --job-directive=--hint=nomultithread"
        )
    return option


def _positive_int(value: Any, kind: str, key: str, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    try:
        number = int(value)
        if isinstance(value, bool) or number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise ClusterConfigError(f"{setting_name(kind, key)}={value!r} is not a whole number") from None
    if number < minimum:
        raise ClusterConfigError(f"{setting_name(kind, key)}={value!r} must be at least {minimum}")
    return number


def _bool(value: Any, kind: str, key: str) -> bool:
    """A yes/no setting: a bool, or one of the words true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
    word = str(value).strip().lower()
    if value is None or word not in words:
        raise ClusterConfigError(f"{setting_name(kind, key)}={value!r} is not true or false: give true or false")
    return words[word]


def _bytes(value: Any, kind: str, key: str) -> int:
    try:
        return int(parse_bytes(value)) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ClusterConfigError(
            f"{setting_name(kind, key)}={value!r} is not a memory size: use e.g. 4GB, 1500MB or 2GiB"
        ) from None


def _str_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ClusterConfigError(f"{setting_name('slurm', key)} must be a list of strings, got {value!r}")
    return list(value)
