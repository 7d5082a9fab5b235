#!/usr/bin/env bash
# System packages the tests and the local stack need: a PostgreSQL server, Prometheus (promtool),
# Java and Maven (to fetch and run the Kafka broker). Installs only what is missing; needs root
# (or sudo) for apt-get, and says what to install by hand otherwise.
set -euo pipefail

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v go >/dev/null 2>&1 || need+=(golang-go)

if [ ${#need[@]} -eq 0 ]; then
  echo "system-deps: everything present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "system-deps: please install: ${need[*]} (apt-get install -y ${need[*]})" >&2
    exit 1
  fi
fi
echo "system-deps: installing ${need[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
