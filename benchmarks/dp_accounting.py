"""FLamby's DP accounting against flamby-flare's, on Fed-Heart-Disease (no training: accounting only).

FLamby's DP example calls Opacus' ``make_private_with_epsilon(epochs=nrounds, ...)`` on a loader of
batch 4, so Opacus plans ``nrounds / q`` steps at q = 1 / len(loader), while each site really takes
``nrounds x 100`` steps. This prints, per site and target (epsilon, delta): the noise multiplier each
computes, and the epsilon really spent over the steps taken (RDP, Opacus' defaults).

    python benchmarks/dp_accounting.py [--epsilons 0.1 1 5 10 50] [--deltas 0.1 0.01 0.001 0.0001] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math

from opacus.accountants.utils import get_noise_multiplier

from privacy.accounting import epsilon_of

N_TRAIN = {"site-1": 199, "site-2": 172, "site-3": 30, "site-4": 85}  # Fed-Heart-Disease train sets
BATCH, ROUNDS, UPDATES = 4, 15, 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[0.1, 1, 5, 10, 50])
    parser.add_argument("--deltas", nargs="+", type=float, default=[0.1, 0.01, 0.001, 0.0001])
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args()
    taken = ROUNDS * UPDATES
    rows = []
    print(
        f"{'eps':>5} {'delta':>7} {'site':>7} | {'FLamby plans':>12} {'sigma':>7} {'real eps':>9} | {'ours: sigma':>11} {'real eps':>9}"
    )
    for eps in args.epsilons:
        for delta in args.deltas:
            for site, n in N_TRAIN.items():
                q_flamby = 1 / math.ceil(n / BATCH)
                sigma_flamby = get_noise_multiplier(
                    target_epsilon=eps, target_delta=delta, sample_rate=q_flamby, epochs=ROUNDS
                )
                planned = int(ROUNDS / q_flamby)
                real_flamby = epsilon_of([(sigma_flamby, q_flamby, taken)], delta)
                q = BATCH / n
                sigma = get_noise_multiplier(
                    target_epsilon=eps,
                    target_delta=delta,
                    sample_rate=q,
                    steps=taken,
                    epsilon_tolerance=min(0.01, 0.01 * eps),
                )
                ours = epsilon_of([(sigma, q, taken)], delta)
                rows.append(
                    {
                        "epsilon": eps,
                        "delta": delta,
                        "site": site,
                        "flamby_planned_steps": planned,
                        "flamby_sigma": sigma_flamby,
                        "flamby_real_epsilon": real_flamby,
                        "our_sigma": sigma,
                        "our_real_epsilon": ours,
                        "steps_taken": taken,
                    }
                )
                print(
                    f"{eps:>5g} {delta:>7g} {site:>7} | {planned:>12} {sigma_flamby:>7.3f} {real_flamby:>9.3g} | {sigma:>11.3f} {ours:>9.3g}"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
