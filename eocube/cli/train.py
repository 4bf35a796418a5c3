"""``eocube train``: train a network from a config file (``--task gapfill|segmentation|superres``).

Run alone (``eocube train``), on several GPUs of a node
(``torchrun --nproc_per_node 4 -m eocube train --config c.yaml``) or under
Slurm with one task per GPU (``srun python -m eocube train ...``). Errors are those of every
command (:func:`eocube.cli._common.friendly_errors`): one line ``error: ...`` on stderr, exit 2.
"""

from __future__ import annotations

import logging

import click

from ..names import MODEL_FILE, TASKS
from ._common import InputError, OneLineCommand, SampleHelpOption, friendly_errors


@click.command("train", cls=OneLineCommand)
@click.argument("config_arg", metavar="[CONFIG]", required=False, type=click.Path(dir_okay=False))
@click.option("--task", type=click.Choice(TASKS), default=None,
              help="What to train (default: the config's task key, else gapfill); defaults in "
                   "eocube/learn/default.yaml, segmentation.yaml, superres.yaml.")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="YAML config overriding the task's defaults (any subset of its keys); or give it as CONFIG.")
@click.option("--source", default=None, cls=SampleHelpOption,
              note="Gap filling: the cube to train on (default: the bundled Sentinel-2 sample); the other tasks "
                   "read data.sources and data.target of the config.")
@click.option("--out", default="eocube-train", show_default=True, type=click.Path(file_okay=False),
              help="Output folder: last.pt (resume) and best.pt (lowest validation loss).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt (epoch, model, optimiser state).")
@click.option("--until-epoch", type=click.IntRange(min=1), default=None,
              help="Stop after this epoch (to fit a job's time limit; continue later with --resume).")
@friendly_errors
def train_command(config_arg: str | None, task: str | None, config: str | None, source: str | None, out: str,
                  resume: bool, until_epoch: int | None) -> None:
    """Train a network on cubes: gap filling (self-supervised, real cloud masks), segmentation, super-resolution."""
    if config_arg and config and config_arg != config:
        raise InputError(f"two configs given ({config_arg} and --config {config}): give one")
    from ..learn.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = train(config or config_arg, source=source, out=out, resume=resume, until_epoch=until_epoch, task=task)
    if result.rank == 0 and result.history:
        last = result.history[-1]
        extra = "".join(f", {k} {last[k]:.4f}" for k in ("oa", "macro_f1", "miou", "rmse", "psnr", "psnr_bicubic", "ssim", "sam")
                        if k in last)
        click.echo(
            f"trained epochs {result.start_epoch + 1}..{last['epoch']} in {result.seconds:.0f} s on "
            f"{result.world_size} process(es), {result.device}: train loss {last['train_loss']:.4f}, "
            f"val loss {last['val_loss']:.4f}{extra}; checkpoints in {result.out}"
            + (f", model {result.out / MODEL_FILE}" if (result.out / MODEL_FILE).exists() else "")
        )


if __name__ == "__main__":
    train_command(prog_name="eocube train")
