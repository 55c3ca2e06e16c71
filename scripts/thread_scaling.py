"""Threads against processes on this machine, in one run: the measurements behind armlens.parallel's default.

    ARMLENS_DATA_ROOT=/path/to/preference .venv/bin/python scripts/thread_scaling.py [--out experiments/bench/threads.json]

Times, on the default model, (1) a full forward of a 280-token prompt and (2) a REINFORCE step (K = 32 masks over
that prompt's cached prefix) with 2 torch threads, with 1, and as two one-thread processes running at once; then
(3) a short per-criterion HHH fit (4 criteria, 8 extraction trials, 60 REINFORCE steps) in one process against
forked processes (``ActivationRM.fit(processes=2)``), checking that both give the same means and masks. Run it with
other work paused: it measures throughput, which anything else on the machine changes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import armlens.model as M
from armlens.data import load_pairs, split_pairs
from armlens.evaluation.protocol import environment_versions
from armlens.io import atomic_write
from armlens.parallel import fork_map
from armlens.rm import ActivationRM, ARMConfig
from armlens.selection import ReinforceConfig, mask_losses

REPS = 20
TEXT = "<|im_start|>user\n" + "hello world " * 140 + "<|im_end|>\n<|im_start|>assistant\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="experiments/bench/threads.json")
    args = parser.parse_args()
    model = M.load_model()
    cfg = model.cfg
    tokens = M.tokenize(model, [TEXT])
    cache = M.PrefixPool(model).get(TEXT)
    g = torch.Generator().manual_seed(0)
    means = torch.randn(cfg.n_layers, cfg.n_heads, cfg.d_head, generator=g) * 0.1
    masks = torch.bernoulli(torch.full((32, cfg.n_layers, cfg.n_heads), 0.27), generator=g).bool()
    gold = torch.tensor([1])
    work = {"forward": lambda: M.run_last_logits(model, *tokens),
            "reinforce_step_k32": lambda: mask_losses(model, cache, means, masks, gold)}

    def seconds_each(name: str) -> float:
        work[name]()  # warm-up
        t = time.perf_counter()
        for _ in range(REPS):
            work[name]()
        return (time.perf_counter() - t) / REPS

    result: dict = {"model": M.model_id(model), "prompt_tokens": int(tokens[1].sum()), "reps": REPS}
    threads = torch.get_num_threads()
    for name in work:
        torch.set_num_threads(2)
        two = seconds_each(name)
        torch.set_num_threads(1)
        one = seconds_each(name)
        torch.set_num_threads(threads)
        both = fork_map(seconds_each, [(name,), (name,)], processes=2)  # two one-thread children at once
        result[name] = {"s_2_threads": two, "s_1_thread": one, "s_each_of_2_processes": both,
                        "throughput_2_processes_over_2_threads": 2 / max(both) * two}
    split = split_pairs(load_pairs("hhh"), seed=0, n_fewshot=16, n_select=0, stratify=True)
    arm = ARMConfig(n_trials=8, reinforce=ReinforceConfig(steps=60))
    fits = {}
    for processes in (1, 2):
        t = time.perf_counter()
        rm = ActivationRM(model, arm, seed=0).fit(split.fewshot, show_progress=False, processes=processes)
        fits[processes] = (time.perf_counter() - t, rm)
    same = all(torch.equal(fits[1][1].fits[k].means, fits[2][1].fits[k].means)
               and torch.equal(fits[1][1].fits[k].mask, fits[2][1].fits[k].mask) for k in fits[1][1].fits)
    result["hhh_fit_4_criteria"] = {"config": "n_trials=8, reinforce.steps=60, 16 few-shot pairs, seed 0",
                                    "s_1_process": fits[1][0], "s_2_processes": fits[2][0],
                                    "ratio": fits[1][0] / fits[2][0], "same_means_and_masks": same}
    result["threads_default"] = threads
    result["versions"] = environment_versions()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
