#!/usr/bin/env bash
# Runs every check and test of annals: formatting, lints (warnings are errors), all tests.
# Works on a fresh machine with only the Rust toolchain; installs whatever the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

# CI keeps build artifacts between runs outside the clone (a clean clone has no target/).
if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR=/var/tmp/annals-target
  # Incremental artifacts only help edit-compile loops; in CI they double the target's size.
  export CARGO_INCREMENTAL=0
fi

rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy

# The OpenAPI test validates the document with openapi-spec-validator (PyPI).
python3 -c 'import openapi_spec_validator' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore openapi-spec-validator
# The fuzz test (tests/tests/api_fuzz.rs) runs schemathesis (PyPI, v4) against the server.
python3 -m schemathesis.cli --version 2>/dev/null | grep -q 'version 4\.' ||
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'schemathesis>=4.32,<5'

# The browser test (tests/tests/browser_live.rs) runs Debian's headless chromium.
if ! command -v chromium >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium
fi

# The PostgreSQL store's tests start a throwaway cluster with Debian's server programs.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends postgresql-15
fi

# The Redis invalidation tests (projectors/tests/invalidation_redis.rs) start throwaway servers
# with Debian's redis-server; annals-projectors' tests turn its `redis` feature on themselves.
if ! command -v redis-server >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends redis-server
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The Elasticsearch view backend, named explicitly: no server runs here, so compiling and
# linting it (and its wire-level tests, in `cargo test`) is what every run can do for it.
cargo clippy -p annals-projectors --lib --features elasticsearch --locked -- -D warnings
# The multi-process tests (tests/tests/distributed.rs) start the release binary, the one
# operators run: lease takeovers and timings are those of the optimized build.
echo "== cargo build --release (the binary the multi-process tests start)"
cargo build --release --locked --bin annals
export ANNALS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/annals"
echo "== cargo test"
cargo test --workspace --locked
