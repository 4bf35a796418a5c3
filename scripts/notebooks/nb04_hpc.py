"""Cells of notebooks/04_hpc.ipynb (see scripts/build_notebooks.py)."""

NAME = "04_hpc.ipynb"

CELLS = [
    ("md", """# From the notebook to a Slurm GPU cluster

The pipeline of the quickstart, written as a script, runs unchanged on a national HPC cluster: the only
switch is where the Dask workers live. eocube makes the cluster from one setting (`local`, `slurm` or
a scheduler address), configured in dask's configuration system (a YAML file, environment variables)
or by CLI flags. Before spending allocation, a **dry run** prints the job script that would be submitted.

This notebook runs everywhere: it shows the configuration and the job script, then runs the pipeline on
the local cluster. The cell that submits real jobs runs only where Slurm is available and you ask for it."""),
    ("md", "## 1. The configuration file\n\nThe same layout as eocube's defaults (`eocube/cluster/eocube.yaml`); anything left out keeps its default."),
    ("code", """import pathlib, tempfile, textwrap

workdir = pathlib.Path(tempfile.mkdtemp())
config = workdir / "cluster.yaml"
config.write_text(textwrap.dedent('''
    eocube:
      cluster:
        kind: slurm
        slurm:
          queue: gpu
          account: my-project
          walltime: "02:00:00"
          cores: 16
          memory: 64GB
          gpus: 4                # one Dask worker per GPU, each with its own CUDA_VISIBLE_DEVICES
          adapt-min: 1
          adapt-max: 8           # up to 8 jobs = 32 GPUs
          local-directory: $TMPDIR
          prologue:
            - module load cuda/12.4
            - source $HOME/venvs/eocube/bin/activate
'''))
print(config.read_text())"""),
    ("md", "## 2. The dry run: what would be submitted"),
    ("code", """from eocube.cluster import dry_run

print(dry_run(config_file=config))"""),
    ("md", "The same from the command line (every long command takes these options):"),
    ("code", """import subprocess, sys
cmd = [sys.executable, "-m", "eocube", "gapfill", "--cluster", "slurm", "--cluster-config", str(config),
       "--walltime", "00:30:00", "--dry-run"]
print("$ eocube " + " ".join(cmd[3:]))
print(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)"""),
    ("md", """## 3. The pipeline as a script

The script below is what you would submit (or run on a login node: the Dask scheduler lives in this
process and the workers in Slurm jobs). Because `eocube.to_zarr` is resumable, a run killed by the walltime
or by `scancel` is finished by running the same script again: only the missing chunks are computed."""),
    ("code", """script = workdir / "gapfill_job.py"
script.write_text(textwrap.dedent('''
    import sys
    import eocube
    from eocube.cluster import close, connect, describe
    from eocube.datasets import sentinel2_sample
    from eocube.fill import fill_gaps
    from eocube.masks import clear_from_cloud_band

    def main(kind: str = "local", out: str = "filled.zarr") -> None:
        client = connect(kind, dashboard_address=":0")       # "slurm" on the cluster
        try:
            print(describe(client))
            cube = sentinel2_sample(chunks={"time": -1, "band": 1, "y": 32, "x": 32})
            clear = clear_from_cloud_band(cube, "CLM", data_band="IS_DATA")
            filled = fill_gaps(cube, clear, method="linear", bands="NDVI")
            print(eocube.to_zarr(filled, out, provenance={"job": "gapfill", "method": "linear"}, progress=False))
        finally:
            close(client)


    if __name__ == "__main__":   # required: Dask starts worker processes that re-import this file
        main(*sys.argv[1:])
'''))
print(script.read_text())"""),
    ("md", "Run it here, on the local cluster:"),
    ("code", """run = subprocess.run([sys.executable, str(script), "local", str(workdir / "filled.zarr")],
                     capture_output=True, text=True, check=True)
print(run.stdout)
import eocube
print(eocube.open_zarr(workdir / "filled.zarr").eocube)"""),
    ("md", """## 4. On Slurm

Where `sbatch` is on the PATH and `EOCUBE_NOTEBOOK_SLURM=1` is set, the next cell runs the same script with
workers in Slurm jobs (for this repository's single-node test Slurm: `bash scripts/slurm/install.sh &&
bash scripts/slurm/start.sh`). Elsewhere it only says what it would do."""),
    ("code", """import os, shutil
if shutil.which("sbatch") and os.environ.get("EOCUBE_NOTEBOOK_SLURM") == "1":
    run = subprocess.run([sys.executable, str(script), "slurm", str(workdir / "filled_slurm.zarr")],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "DASK_EOCUBE__CLUSTER__SLURM__INTERFACE": "lo"})
    print(run.stdout)
else:
    print("not submitting: run `python gapfill_job.py slurm out.zarr` on a machine with Slurm "
          "(or `eocube gapfill --cluster slurm --cluster-config cluster.yaml`)")"""),
    ("md", """Tips for clusters: put `local-directory` on node-local scratch; use `--jobs`/`adapt-max` rather than one
huge job so that lost jobs cost little; keep the Zarr output on a parallel file system visible to every node."""),
]
