"""Options and helpers shared by the CLI commands.

Imports here are light on purpose (click, the standard library, :mod:`eocube.errors`,
:mod:`eocube.datasets`' table of samples): a command checks its arguments, outputs and
source before anything heavy is imported, a cluster started or a kernel compiled (see
:mod:`eocube.cli`). The heavy helpers (:func:`open_source`, :func:`compute_on`) import what
they need when they run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._redact import env_secrets, redact, redact_exception, redact_text
from ..errors import EOCubeError, StoreNotFoundError

if TYPE_CHECKING:
    import xarray as xr


class InputError(EOCubeError, ValueError):
    """A command-line input that cannot work (an output that cannot be written, a band that
    does not fit its mask kind): printed as one line on stderr, exit status 2, nothing written."""


class OneLineUsageError(click.UsageError):
    """A click usage error printed as one line (``error: ...``) instead of usage + hint + error."""

    def show(self, file: Any = None) -> None:
        """Print ``error: <message>`` on stderr."""
        click.echo(f"error: {self.format_message()}", err=True)


class OneLineCommand(click.Command):
    """A click command whose bad options (``--tile 0``, an unknown choice) are one line on stderr, exit 2.

    ``old_spellings={"--plot": "--quicklook"}`` keeps an old spelling of an option working: it is read
    as the new one, with a one-line ``warning:`` on stderr (README, Command line: what each option means).
    """

    def __init__(self, *args: Any, old_spellings: dict[str, str] | None = None, **kwargs: Any) -> None:
        self.old_spellings = dict(old_spellings or {})
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse the arguments, old spellings of options read as the new ones (with a warning)."""
        return super().parse_args(ctx, respell(args, self.old_spellings, f"eocube {self.name}"))

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        """Parse the arguments; a usage error becomes a :class:`OneLineUsageError`."""
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a usage error it raises becomes a :class:`OneLineUsageError`."""
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if isinstance(exc, OneLineUsageError):
                raise
            raise _one_line(exc) from None


def respell(args: list[str], old_spellings: dict[str, str], command: str) -> list[str]:
    """``args`` with old option spellings (``--plot``, ``--plot=x``) replaced by the new ones.

    Each old spelling used prints one line on stderr: ``warning: <command> --plot is deprecated:
    use --quicklook (same meaning)``. Arguments after ``--`` are left alone.
    """
    out, warned = [], set()
    for i, arg in enumerate(args):
        if arg == "--":
            return out + list(args[i:])
        old = next((o for o in old_spellings if arg == o or arg.startswith(o + "=")), None)
        if old is None:
            out.append(arg)
            continue
        new = old_spellings[old]
        if old not in warned:
            click.echo(f"warning: {command} {old} is deprecated: use {new} (same meaning)", err=True)
            warned.add(old)
        out.append(new + arg[len(old):])
    return out


def _one_line(exc: click.UsageError) -> OneLineUsageError:
    where = f"eocube {exc.ctx.command.name}" if exc.ctx is not None else "eocube"
    return OneLineUsageError(f"{exc.format_message()} (see '{where} --help')")


def is_url(store: str | os.PathLike[str]) -> bool:
    """Whether an input or output is a URL (``s3://...``): such a location never goes through ``pathlib``."""
    return "://" in os.fspath(store)


def shown_location(store: str | os.PathLike[str]) -> str:
    """How to print a store: a URL with its query values and user info redacted (a signed URL's
    token never reaches the output or the provenance), a local path made absolute."""
    text = os.fspath(store)
    return redact(text) if is_url(text) else str(Path(text).expanduser().resolve())


def same_location(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two stores are the same place (URLs compared as text, paths resolved)."""
    return shown_location(a).rstrip("/") == shown_location(b).rstrip("/")


def overlap(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> str | None:
    """How location ``a`` lies relative to ``b``: ``"same"``, ``"inside"``, ``"contains"``, or None.

    Local paths are resolved (symlinks, ``..``); URLs are compared by their path components.
    """
    def parts(text: str) -> tuple[str, ...]:
        if is_url(text):
            scheme, rest = text.split("://", 1)
            return (scheme.lower().replace("s3a", "s3"), *[p for p in rest.split("?", 1)[0].split("/") if p])
        return ("file", *Path(text).expanduser().resolve().parts)

    x, y = parts(os.fspath(a)), parts(os.fspath(b))
    if x == y:
        return "same"
    if len(x) > len(y) and x[:len(y)] == y:
        return "inside"
    if len(y) > len(x) and y[:len(x)] == x:
        return "contains"
    return None


def check_out_not_source(out: str | os.PathLike[str], source: str | os.PathLike[str], shown: str,
                         what: str = "--out") -> None:
    """Refuse an output that is, lies inside or contains an input (before anything is read or written).

    Raises
    ------
    InputError
        One line: the output would delete or overwrite the input (``--overwrite`` deleted it before it was read).
    """
    how = overlap(out, source)
    if how is None:
        return
    text = {"same": "is also the", "inside": "lies inside the", "contains": "contains the"}[how]
    raise InputError(f"{what} {os.fspath(out)} {text} --source {shown}: writing it would delete or overwrite the "
                     f"input; give {what} a path outside the source")


def store_is_complete(store: str | os.PathLike[str]) -> bool:
    """Whether ``store`` (a path or a URL) holds a cube eocube marked complete.

    Its fingerprint is checked separately (``eocube.io.check_target``); this only says whether a
    rerun has anything left to compute.
    """
    text = os.fspath(store)
    if not is_url(text) and not Path(text).expanduser().is_dir():
        return False
    from ..io import open_zarr

    try:
        open_zarr(text if is_url(text) else Path(text).expanduser())
    except (EOCubeError, OSError, ValueError, KeyError):
        return False
    return True


def source_stamp(spec: str) -> list[Any] | None:
    """A stamp of what a bundled sample, a scene group or a Zarr store (path or URL) holds (None: none can be made).

    See :func:`eocube.io.complete.store_stamp`: one listing of the store's objects, nothing opened.
    """
    from ..datasets import SAMPLES, SCENES
    from ..io.complete import path_stamp, store_stamp

    scene, _, group = spec.partition(":")
    if spec in SAMPLES:
        return store_stamp(SAMPLES[spec].path)
    if group and scene in SCENES:
        return path_stamp(SCENES[scene].path)
    return store_stamp(spec if is_url(spec) else Path(spec).expanduser())


def complete_outputs(outputs: list[tuple[str, str | None]]) -> list[str] | None:
    """The report lines when every ``(store, request key)`` is complete and made by that request, else None.

    Asked before any cube is built (see :mod:`eocube.io.complete`); a key of None (no key could be
    made) or any store not known complete gives None: the command then takes its full path, which
    checks the fingerprint and resumes or refuses.
    """
    from ..io.complete import already_complete

    lines = []
    for store, key in outputs:
        report = already_complete(store, key) if key is not None else None
        if report is None:
            return None
        lines.append(str(report))
    return lines


def default_quicklook(out: str | os.PathLike[str]) -> Path:
    """The quicklook's default path: ``<out>.png`` beside a local store, ``./<name>.png`` for a store at a URL."""
    name = os.fspath(out).rstrip("/" + os.sep)
    return Path(name.rsplit("/", 1)[-1] + ".png") if is_url(name) else Path(name + ".png")


ZARR_FORMAT_HELP = (
    "Zarr format. auto: sharded format 3 for object stores (s3://, gs://) and large outputs (over 4 GiB or "
    "10,000 chunks), else format 2, which GDAL up to 3.12 and QGIS read (GDAL reads sharded format 3 from "
    "3.13 on). A store being resumed keeps its format."
)


def zarr_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--zarr-format auto|2|3`` and ``--gdal-compatible``; the command receives them as one
    ``zarr`` dict of :func:`eocube.to_zarr` keywords (``zarr_format``, ``gdal_compatible``)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        fmt = kwargs.pop("zarr_format")
        gdal = kwargs.pop("gdal_compatible")
        kwargs["zarr"] = {"zarr_format": None if fmt == "auto" else int(fmt), "gdal_compatible": gdal or None}
        return func(*args, **kwargs)

    wrapper = click.option("--gdal-compatible", is_flag=True,
                           help="Write Zarr format 2 whatever the size or location (for GDAL <= 3.12, QGIS).")(wrapper)
    return click.option("--zarr-format", type=click.Choice(["auto", "2", "3"]), default="auto", show_default=True,
                        help=ZARR_FORMAT_HELP)(wrapper)


def check_output_writable(path: str | os.PathLike[str], *, what: str = "--out", folder: bool = True) -> None:
    """Raise :class:`InputError` when a local output cannot be created or written; write nothing.

    Walks up to the nearest existing folder and checks that it is a folder that
    accepts new entries (a temporary folder is made and removed there: permissions
    alone do not tell, e.g. for root, read-only mounts or ``/proc``). URLs
    (``s3://...``) are not checked here.

    Parameters
    ----------
    path
        The output: a Zarr store (``folder=True``) or a file such as a PNG.
    what
        How to call the output in the message (the option that names it).
    folder
        True for a store (an existing path must be a folder), False for a file
        (an existing path must not be a folder).

    Raises
    ------
    InputError
        The path, or a folder above it, is a file; or the folder does not accept new files.
    """
    text = os.fspath(path)
    if is_url(text):
        return
    target = Path(text).expanduser()
    if target.exists() and target.is_dir() != folder:
        kind = "a folder" if target.is_dir() else "a file"
        raise InputError(f"cannot write {what} {text}: it is {kind}, not {'a Zarr store' if folder else 'a file'}; "
                         "choose another path")
    here = target if target.is_dir() else target.parent
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise InputError(f"cannot write {what} {text}: {here} is a file, not a folder; choose a path in a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".eocube-write-check-", dir=here))
    except OSError as exc:
        raise InputError(f"cannot write {what} {text}: the folder {here} does not accept new files "
                         f"({exc.strerror or exc}); choose a writable folder") from None


CLUSTER_OPTIONS = {
    # CLI parameter -> keyword of eocube.cluster.connect
    "cluster": "cluster",
    "workers": "n_workers",
    "threads": "threads_per_worker",
    "memory_limit": "memory_limit",
    "partition": "queue",
    "account": "account",
    "walltime": "walltime",
    "cores": "cores",
    "memory": "memory",
    "processes": "processes",
    "gpus": "gpus",
    "gpu_type": "gpu_type",
    "jobs": "jobs",
    "adapt_min": "adapt_min",
    "adapt_max": "adapt_max",
    "prologue": "prologue",
    "scratch": "local_directory",
    "interface": "interface",
    "scheduler_host": "scheduler_host",
    "tls": "tls",
    "tls_directory": "tls_directory",
    "qos": "qos",
    "constraint": "constraint",
    "job_directive": "job_extra_directives",
    "cluster_config": "config_file",
}
"""The cluster options every long command gets, and the connect() keyword each becomes."""


def cluster_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the cluster options to a command; it receives them as one ``cluster`` dict.

    The dict holds the keyword arguments of :func:`eocube.cluster.connect` (None
    for an option not given, so configuration files and ``DASK_EOCUBE__CLUSTER__*``
    environment variables apply). A command checks it early with :func:`check_cluster`
    (nothing started) and runs its work in ``with compute_on(cluster, nbytes):``, which
    picks threads or a cluster and says which (or ``client = connect(**cluster)``
    to always start one).
    With ``--dry-run`` the command prints what would run (for Slurm: the job script)
    and exits before doing any work.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in CLUSTER_OPTIONS}
        dry = kwargs.pop("dry_run")
        values["prologue"] = list(values["prologue"]) or None
        values["job_directive"] = list(values["job_directive"]) or None
        kwargs["cluster"] = {key: values[name] for name, key in CLUSTER_OPTIONS.items()}
        if dry:
            _print_dry_run(kwargs["cluster"])
            click.get_current_context().exit(0)
        return func(*args, **kwargs)

    slurm = "Slurm: "
    options = [
        click.option("--cluster", default=None,
                     help="Where to compute: 'local' (a Dask cluster on this machine), 'slurm' (workers in "
                          "Slurm jobs) or a scheduler address (tcp://host:8786). Default: a job whose arrays "
                          "are under 1 GiB (eocube.cluster.threads-below) runs on dask's threads in this "
                          "process, a larger one (or one given --workers/--memory-limit) on a local cluster; "
                          "DASK_EOCUBE__CLUSTER__KIND sets another default."),
        click.option("--cluster-config", type=click.Path(dir_okay=False), default=None,
                     help="YAML file of cluster settings (layout of eocube/cluster/eocube.yaml)."),
        click.option("--dry-run", is_flag=True,
                     help="Print what would run (for Slurm: the worker job script) and exit before any work."),
        click.option("--workers", type=int, default=None, help="Local: worker processes (default: cores/2)."),
        click.option("--threads", type=int, default=None, help="Local: threads per worker."),
        click.option("--memory-limit", default=None, help="Local: memory per worker, e.g. 4GB."),
        click.option("--partition", default=None, help=slurm + "partition (queue) of the worker jobs."),
        click.option("--account", default=None, help=slurm + "account charged for the jobs."),
        click.option("--walltime", default=None, help=slurm + "time limit of each worker job, HH:MM:SS (default 01:00:00)."),
        click.option("--cores", type=int, default=None,
                     help=slurm + "cores per job (default 1; with --gpus N: N x cores-per-gpu, 8 unless configured)."),
        click.option("--memory", default=None,
                     help=slurm + "memory per job, e.g. 16GB (default 4GB; with --gpus N: N x memory-per-gpu, 16GB "
                          "unless configured)."),
        click.option("--processes", type=int, default=None, help=slurm + "Dask worker processes per job (default 1)."),
        click.option("--gpus", type=int, default=None,
                     help=slurm + "GPUs per job (--gres=gpu:N): one worker per GPU, each with its own "
                          "CUDA_VISIBLE_DEVICES and a GPU=1 resource."),
        click.option("--gpu-type", default=None, help=slurm + "GPU type in the GRES request (--gres=gpu:TYPE:N)."),
        click.option("--qos", default=None, help=slurm + "quality of service of the jobs (#SBATCH --qos=...), e.g. qos_gpu-t3."),
        click.option("--constraint", default=None,
                     help=slurm + "node features the jobs need (#SBATCH --constraint=...), e.g. v100-32g."),
        click.option("--job-directive", multiple=True,
                     help=slurm + "any other #SBATCH option, repeatable, e.g. --job-directive=--hint=nomultithread."),
        click.option("--jobs", type=int, default=None, help=slurm + "worker jobs kept running (default 1)."),
        click.option("--adapt-min", type=int, default=None, help=slurm + "adaptive scaling: fewest jobs."),
        click.option("--adapt-max", type=int, default=None, help=slurm + "adaptive scaling: most jobs."),
        click.option("--prologue", multiple=True,
                     help=slurm + "shell line run before the workers (repeatable), e.g. 'module load cuda'."),
        click.option("--scratch", default=None, help=slurm + "node-local scratch folder of the workers, e.g. '$TMPDIR'."),
        click.option("--interface", default=None, help=slurm + "network interface of scheduler and workers (ib0, lo)."),
        click.option("--scheduler-host", default=None, help=slurm + "address the scheduler listens on."),
        click.option("--tls/--no-tls", default=None,
                     help=slurm + "TLS between scheduler, workers and client, with certificates made for the run "
                          "(default on); --no-tls: plain TCP, anyone reaching the scheduler can run code as you."),
        click.option("--tls-directory", default=None,
                     help=slurm + "folder for each run's worker certificates, private and seen by the compute "
                          "nodes (default ~/.eocube/tls)."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _print_dry_run(cluster: dict[str, Any]) -> None:
    from ..cluster import dry_run

    try:
        text = dry_run(**cluster)
        if configured_kind(cluster) == "auto" and not _wants_local_cluster(cluster):
            threads, limit = _threads(cluster), threads_below()
            text = (f"eocube dry run: a job whose arrays are under {_size(limit)} runs on {threads} dask threads "
                    f"in this process; a larger one starts: {text.removeprefix('eocube dry run: ')}")
        click.echo(text)
    except EOCubeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


LOCAL_CLUSTER_SIZING = ("n_workers", "memory_limit")
"""connect() keywords that only a local cluster takes: giving one asks for the cluster."""


def configured_kind(cluster: dict[str, Any]) -> str:
    """The kind of cluster the options and configuration ask for: ``auto``, ``local``, ``slurm`` or an address.

    Parameters
    ----------
    cluster
        The ``cluster`` dict a command gets from :func:`cluster_options`.
    """
    if cluster.get("cluster"):
        return str(cluster["cluster"])
    import dask.config

    from ..cluster.config import AUTO, CONFIG_KEY, read_config_file

    kind = read_config_file(cluster["config_file"]).get("kind") if cluster.get("config_file") else None
    return str(kind or dask.config.get(f"{CONFIG_KEY}.kind", AUTO) or AUTO)


def threads_below() -> int:
    """Bytes under which ``auto`` runs a job on threads (``eocube.cluster.threads-below``, default 1 GiB)."""
    import dask.config
    from dask.utils import parse_bytes

    from ..cluster.config import CONFIG_KEY

    value = dask.config.get(f"{CONFIG_KEY}.threads-below", "1GiB")
    return int(parse_bytes(value)) if isinstance(value, str) else int(value)


def check_cluster(cluster: dict[str, Any]) -> None:
    """Check the cluster settings now (unknown kind, bad values, Slurm commands missing), starting nothing.

    Raises
    ------
    ClusterConfigError
        The setting at fault is named.
    """
    from ..cluster.config import resolve

    settings = {k: v for k, v in cluster.items() if k not in ("cluster", "config_file")}
    if settings.get("processes") is True and cluster.get("cluster") not in (None, "local"):
        settings["processes"] = None
    kind, _ = resolve(cluster.get("cluster"), settings, cluster.get("config_file"))
    if kind == "slurm":
        from ..cluster.slurm import check_commands

        check_commands()


def _wants_local_cluster(cluster: dict[str, Any]) -> bool:
    return any(cluster.get(key) is not None for key in LOCAL_CLUSTER_SIZING)


def _threads(cluster: dict[str, Any]) -> int:
    from ..cluster.local import machine_size

    return int(cluster.get("threads_per_worker") or machine_size()[0])


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TiB"


def choose_compute(cluster: dict[str, Any], nbytes: int) -> tuple[str, str]:
    """Where a job of ``nbytes`` runs: ``("threads", why)`` or ``("cluster", why)``.

    Threads (dask's threaded scheduler in this process: no cluster to start, no worker to
    import eocube again) when no cluster is asked for (``--cluster`` not given, the configured
    kind is ``auto``, no ``--workers``/``--memory-limit``) and the job's arrays are under
    :func:`threads_below`; otherwise the cluster.

    Parameters
    ----------
    cluster
        The ``cluster`` dict of :func:`cluster_options`.
    nbytes
        Bytes the job reads and writes (its input bands and its result).
    """
    kind = configured_kind(cluster)
    size = _size(nbytes)
    if kind != "auto":
        how = "--cluster" if cluster.get("cluster") else "the configured eocube.cluster.kind"
        return "cluster", f"compute: {kind} cluster ({how} {kind}; the job's arrays: {size})"
    if _wants_local_cluster(cluster):
        return "cluster", f"compute: local Dask cluster (asked for by --workers/--memory-limit; the job's arrays: {size})"
    limit = threads_below()
    if nbytes >= limit:
        return "cluster", (f"compute: local Dask cluster: the job's arrays ({size}) are over {_size(limit)} "
                           "(eocube.cluster.threads-below)")
    return "threads", (f"compute: {_threads(cluster)} dask threads in this process: the job's arrays ({size}) are "
                       f"under {_size(limit)} (eocube.cluster.threads-below); --cluster local starts a Dask cluster")


@contextlib.contextmanager
def local_checks() -> Iterator[None]:
    """Run the computes of a command's checks (a sample of the mask band) on dask's threads.

    No cluster exists before :func:`compute_on` starts one, and dask, given no scheduler or a
    scheduler's name, imports ``distributed`` to look for a client (0.2-0.3 s); given the threaded
    scheduler's function it does not, so a rerun whose output is already complete ends without it.
    """
    import dask
    import dask.threaded

    with dask.config.set(scheduler=dask.threaded.get):
        yield


@contextlib.contextmanager
def compute_on(cluster: dict[str, Any], nbytes: int) -> Iterator[str]:
    """Run the block on dask's threads or on a cluster, as :func:`choose_compute` says; print the choice.

    Yields
    ------
    str
        ``"threads"`` or ``"cluster"``.
    """
    where, line = choose_compute(cluster, nbytes)
    click.echo(line)
    if where == "threads":
        import dask

        with dask.config.set(scheduler="threads", num_workers=_threads(cluster)):
            yield where
        return
    from ..cluster import close, connect, describe

    client = connect(**cluster)
    try:
        click.echo(describe(client))
        yield where
    finally:
        close(client)


def check_source(source: str) -> str | None:
    """The sample name ``source`` names, or None for a store path; nothing heavy is imported.

    Raises
    ------
    StoreNotFoundError
        Neither a sample nor an existing path; the message lists the bundled samples.
    """
    from ..datasets import SAMPLES

    if source in SAMPLES:
        return source
    if not is_url(source) and not Path(source).exists():
        samples = "; ".join(f"{name} ({spec.description})" for name, spec in SAMPLES.items())
        raise StoreNotFoundError(f"no Zarr store at {source} and no bundled sample of that name: "
                                 f"the bundled samples are {samples}; or give the path of a Zarr cube")
    return None


def open_source(source: str, chunks: dict[str, int] | None) -> tuple[xr.DataArray, str | None]:
    """Open ``source`` (a bundled sample name or a Zarr path); also return the sample name or None.

    Raises
    ------
    StoreNotFoundError
        Neither a sample nor an existing path; the message lists the bundled samples.
    """
    sample = check_source(source)
    if sample is not None:
        from ..datasets import open_sample

        return open_sample(source, chunks=chunks), source
    from ..io import open_zarr

    cube = open_zarr(source if is_url(source) else Path(source), chunks=chunks)
    check_has_dates(cube, f"--source {shown_location(source)}")
    return cube, None


def check_has_dates(cube: xr.DataArray, what: str) -> None:
    """Refuse a source cube without dates in one line (nothing to compute; its summary has no date range).

    Raises
    ------
    InputError
        The cube has 0 dates.
    """
    if cube.sizes.get("time", 1) == 0:
        raise InputError(f"{what} has no dates (0 along time): there is nothing to compute; give a source that "
                         "holds dates")


def sample_names() -> str:
    """The bundled samples' names, comma-separated (for option help)."""
    from ..datasets import SAMPLES

    return ", ".join(SAMPLES)


class SampleHelpOption(click.Option):
    """``--source``: its help lists the bundled samples, read when help is shown (not at import).

    ``note=`` adds a sentence after the list (what the command does with it).
    """

    def __init__(self, *args: Any, note: str = "", **kwargs: Any) -> None:
        self.note = note
        super().__init__(*args, **kwargs)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        """The help line, with the sample names filled in."""
        self.help = f"A bundled sample ({sample_names()}) or the path of a Zarr cube." + (
            f" {self.note}" if self.note else "")
        return super().get_help_record(ctx)


CONVENTIONAL_MASK_BANDS = {"scl": "SCL", "qa_pixel": "QA_PIXEL", "probability": "CLP"}
"""Band taken for ``--mask KIND`` without ``--cloud-band`` when a Zarr cube has a band of this name."""


def resolve_mask_band(cube: xr.DataArray, sample: str | None, kind: str,
                      cloud_band: str | None) -> tuple[str | None, str]:
    """The band ``--mask kind`` reads, and a line saying how it was chosen.

    ``--cloud-band`` wins; else a sample's band for that kind (its cloud mask for
    ``boolean``, its probability band for ``probability``); else, in a Zarr cube, the
    conventional name (``SCL``, ``QA_PIXEL``, ``CLP``) when the cube has it. A Zarr cube
    with ``--mask boolean`` and no ``--cloud-band`` has no mask (only NaN values are gaps).

    Raises
    ------
    InputError
        ``--mask scl|qa_pixel|probability`` without a band to read.
    """
    from ..datasets import SAMPLES

    if cloud_band:
        return cloud_band, f"mask: {kind} on band {cloud_band}"
    bands = [str(b) for b in cube["band"].values]
    if sample is not None:
        spec = SAMPLES[sample]
        chosen = {"probability": spec.probability_band, "boolean": spec.cloud_band,
                  "qa_pixel": spec.qa_band}.get(kind)
        where = f"the sample {sample}"
    else:
        name = CONVENTIONAL_MASK_BANDS.get(kind)
        chosen = name if name in bands else None
        where = "the cube"
        if kind == "boolean":
            from ..nodata import cube_nodata

            nodata = cube_nodata(cube)
            also = "" if nodata is None else f", and values equal to the cube's nodata value {nodata}"
            return None, f"mask: none (no --cloud-band): only missing (NaN) values are filled{also}"
    if chosen is None:
        raise InputError(f"--mask {kind} needs --cloud-band: {where} has no "
                         f"{CONVENTIONAL_MASK_BANDS.get(kind, 'cloud mask')} band (bands: {', '.join(bands)})")
    return chosen, (f"mask: {kind} on band {chosen} (the default of {where} for --mask {kind}; "
                    "choose another with --cloud-band)")


def resolve_bands(
    cube: xr.DataArray, sample: str | None, bands: str | None, cloud_band: str | None, data_band: str | None
) -> tuple[list[str], str | None, str | None]:
    """The bands to process and the mask bands: the sample's defaults, or all but the mask bands.

    Returns
    -------
    tuple
        ``(bands, cloud_band, data_band)``.
    """
    from ..datasets import SAMPLES

    if sample is not None:
        spec = SAMPLES[sample]
        cloud_band = cloud_band or spec.cloud_band
        data_band = data_band or spec.data_band
        return (bands.split(",") if bands else list(spec.data_bands)), cloud_band, data_band
    mask_bands = {b for b in (cloud_band, data_band) if b}
    band_list = bands.split(",") if bands else [str(b) for b in cube.band.values if str(b) not in mask_bands]
    return band_list, cloud_band, data_band


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Print eocube errors as one clear line and exit with status 2 (no traceback).

    No secret reaches stderr: the line is redacted (signed-URL query values, the credential
    variables' values), and any other exception leaves through
    :func:`eocube._redact.redact_exception`, so the traceback Python prints for it, chained
    causes and contexts included, shows no token either. Click's own exceptions (usage errors,
    ``ctx.exit``) keep their type; their message is redacted.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EOCubeError as exc:
            click.echo(f"error: {redact_text(str(exc), env_secrets())}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            exc.message = redact_text(exc.message, env_secrets())
            raise
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - redacted, then raised again below
            error = redact_exception(exc)
        raise error  # outside the except block: the unredacted original is not chained as context

    return wrapper
