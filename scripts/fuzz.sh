#!/usr/bin/env bash
# Fuzzes the frame decoder and the message parser with libFuzzer on the
# stable toolchain: the coverage instrumentation cargo-fuzz would add is
# passed as stable -C flags, so no nightly compiler is needed.
#
#   scripts/fuzz.sh [TARGET] [SECONDS]    TARGET: decode_frames | parse_message | all (default)
#
# Corpora are kept in fuzz/corpus/TARGET, crashes in fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

target=${1:-all}
seconds=${2:-60}
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps these flags off build scripts and proc macros.
triple=$(rustc -vV | sed -n "s/^host: //p")
cargo build --release --bins --target "$triple"
bin="target/$triple/release"

if [ "$target" = all ]; then
  targets=(decode_frames parse_message)
else
  targets=("$target")
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== fuzzing $t for ${seconds}s"
  "$bin/$t" -max_total_time="$seconds" -artifact_prefix="artifacts/$t/" \
    -print_final_stats=1 "corpus/$t" 2>&1 | grep -E '^(stat::|Done|==|INFO: Seed|SUMMARY)' || true
  if compgen -G "artifacts/$t/*" >/dev/null; then
    echo "fuzz: $t found crashes in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
