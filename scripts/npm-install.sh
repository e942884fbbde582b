#!/usr/bin/env bash
# Installs the npm packages that the folders named on the command line pin
# in their package-lock.json (the official openai client for the bridge's
# tests), with Debian's node and npm when the machine has no node.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npm >/dev/null || scripts/apt-install.sh nodejs npm
for dir in "$@"; do
	if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
		echo "npm ci in $dir" >&2
		(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
	fi
done
