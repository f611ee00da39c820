#!/bin/bash
# Enrollments per second and prefix allocations per second of the registry, on the file
# (registry.json under flock) and on PostgreSQL (the Debian package's server, started in a
# temporary directory on a Unix socket, fsync on like the file's), in the same run.
#
# Usage: bench/registry.sh [COUNT=200] [THREADS=4]
#   Each backend starts empty; its registry grows by COUNT enrollments, then COUNT allocations.
#   Needs /usr/lib/postgresql/15/bin (scripts/install-deps.sh installs postgresql-15); as root
#   the database runs as the postgres user.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p hometun-pki --example registry_bench -- "${1:-200}" "${2:-4}"
