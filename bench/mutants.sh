#!/usr/bin/env bash
# Mutation score of dkv-core: cargo-mutants plants one small bug at a time in core/ (an operator
# flipped, a body replaced by a default value, a match arm deleted) and runs dkv-core's tests plus
# a short simulator sweep (the dkv-sim tests but the 1,000-seed swarm and the canary hunt, which
# the full suite runs anyway) against it; a mutant no test notices is a hole in the tests.
#
# Usage: bench/mutants.sh [extra cargo-mutants options, e.g. --file core/src/locks.rs]
#   MUTANTS_SHARD=k/n  run only every n-th mutant, starting at k (default 0/12: a round-robin
#                      sample of about 55 of the ~640 mutants, ~1 hour on two shared cores)
#   MUTANTS_SHARD=0/1  every mutant (many hours)
# Results: target/mutants/mutants.out/{caught,missed,timeout,unviable}.txt and outcomes.json.
# Exit status is cargo-mutants' own: 0 all caught, 2 some missed, 3 some timed out.
# Equivalent mutants (no behaviour can tell them apart) are excluded, each with its reason, in
# .cargo/mutants.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-mutants >/dev/null 2>&1; then
  cargo install cargo-mutants --locked
fi
shard=${MUTANTS_SHARD:-0/12}
# One job: the machine has two cores and builds dominate. A mutant whose tests run past five
# minutes counts as a timeout (usually a mutant that makes a loop never end).
exec cargo mutants --package dkv-core --test-package dkv-core --test-package dkv-sim \
  --jobs 1 --timeout 300 --build-timeout 900 --shard "$shard" --sharding round-robin \
  --output target/mutants "$@" \
  -- -- --skip thousand_swarm_seeds_pass_every_checker --skip every_canary_is_caught
