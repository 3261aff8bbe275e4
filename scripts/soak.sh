#!/usr/bin/env bash
# The long reliability runs of docs/RELIABILITY.md, in one go:
#   - kill -9 of the server during a stream of registrations, 20 times
#     (ECHO_SOAK_KILLS to change), the store checked after each;
#   - timing of failed logins: unknown user against wrong password;
#   - 1,000 clients x 100 round trips with random abrupt disconnects, and the
#     server's memory afterwards;
#   - 1,000 clients asking for `/repeat 100` of 65,000 bytes and never
#     reading: the server's memory;
#   - both fuzz targets for FUZZ_SECONDS each (default 120).
# Release builds; about 8 minutes on 2 cores. Prints the figures it measured.
set -euo pipefail
cd "$(dirname "$0")/.."

export ECHO_SOAK_KILLS=${ECHO_SOAK_KILLS:-20}
cargo test --release -p echo-server --test it -- operations::kill_9 --nocapture
cargo test --release -p echo-server --test it -- soak:: --ignored --nocapture --test-threads 1
cargo test --release -p echo-server --test it -- attacks:: --ignored --nocapture --test-threads 1
scripts/fuzz.sh all "${FUZZ_SECONDS:-120}"
