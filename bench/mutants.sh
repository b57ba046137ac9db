#!/usr/bin/env bash
# Mutation score of dkv-core: cargo-mutants plants one small bug at a time in core/ (an operator
# flipped, a body replaced by a default value, a match arm deleted) and runs dkv-core's tests and
# dkv-sim's (1,000 swarm seeds, the seeds that found bugs, the canary hunt: about 20 s) against
# it; a mutant that no test notices is a hole in the tests.
#
# Usage: bench/mutants.sh [extra cargo-mutants options, e.g. --file core/src/locks.rs]
#   MUTANTS_SHARD=k/n  test every n-th mutant, starting at the k-th (default 0/12: a round-robin
#                      sample of 54 of the ~650 mutants, about 30 minutes on two shared cores)
#   MUTANTS_SHARD=0/1  every mutant (about 6 hours)
#   MUTANTS_OUT=dir    where mutants.out/ goes (default target/mutants)
# Results: mutants.out/{caught,missed,timeout,unviable}.txt and outcomes.json. The score is
# caught / (caught + missed); unviable mutants (that do not compile) do not count, and timeouts
# (a mutant that makes the tests hang) are reported apart, as the README does.
# Exit status is cargo-mutants' own: 0 all caught, 2 some missed, 3 some timed out.
# Equivalent mutants (no behaviour can tell them apart) are excluded in .cargo/mutants.toml,
# each with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-mutants >/dev/null 2>&1; then
  cargo install cargo-mutants --locked
fi
# One job: the machine has two cores and builds dominate. A mutant whose tests run past two
# minutes (six times the unmutated run) counts as a timeout: it made something never end.
exec cargo mutants --package dkv-core --test-package dkv-core --test-package dkv-sim \
  --jobs 1 --timeout 120 --build-timeout 900 \
  --shard "${MUTANTS_SHARD:-0/12}" --sharding round-robin \
  --output "${MUTANTS_OUT:-target/mutants}" "$@"
