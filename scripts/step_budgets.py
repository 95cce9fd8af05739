"""Batches per epoch of step-budget recipes, and where their last epoch-end validation falls.

A recipe that stops on ``trainer.max_steps`` inside an epoch was, before 2026-12-02, last
validated (and tested) at the epoch end before it; since then it is also validated at its last
step (``ValidateAtMaxSteps``). This prints, for each experiment and swept label budget, the
batches per epoch as the data module builds them (split seed 0) and the steps that lay after
the last epoch end (docs/results.md, "Step budgets").

    python scripts/step_budgets.py fmnist_budgets fmnist_imagenet_all
"""

from __future__ import annotations

import argparse

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from transferlab.core.config import config_dir, register_resolvers
from transferlab.data.target import target_datamodule
from transferlab.tasks.data_summary import compose_run_config


def swept_budgets(experiment: str) -> list[str]:
    """The label budgets an experiment's sweeper sweeps (its own one when it sweeps none)."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", [f"experiment={experiment}"], return_hydra_config=True)
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    value = params.get("data.labels_per_class", cfg.data.labels_per_class)
    return [str(item).strip() for item in str(value).split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+", help="experiment names (conf/experiment)")
    args = parser.parse_args()
    print("experiment\tlabels_per_class\tmax_steps\tbatches_per_epoch\tlast_epoch_end\tafter_it")
    for name in args.experiments:
        for budget in swept_budgets(name):
            plain = compose_run_config(
                [f"experiment={name}", f"data.labels_per_class={budget}"],
                extra=("trainer.max_steps",),
            )
            max_steps = int(plain["trainer"]["max_steps"] or -1)
            if max_steps <= 0:
                print(f"{name}\t{budget}\tno max_steps\t-\t-\t-")
                continue
            data, _ = target_datamodule(plain["data"], 0)
            per_epoch = len(data.train_dataloader())
            after = max_steps % per_epoch
            print(
                f"{name}\t{budget}\t{max_steps}\t{per_epoch}\t{max_steps - after}\t{after}",
                flush=True,
            )


if __name__ == "__main__":
    main()
