#!/usr/bin/env bash
# Bring the Apache Kafka broker jars into $KAFKA_HOME/libs (default ~/.cache/trustwatch/kafka) with
# Maven, from scripts/kafka-pom.xml. Idempotent: a marker file written after a complete copy makes a
# second run a no-op; delete $KAFKA_HOME/libs to force a fresh copy.
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
KAFKA_HOME="${KAFKA_HOME:-$HOME/.cache/trustwatch/kafka}"
LIBS="$KAFKA_HOME/libs"
MARKER="$LIBS/.trustwatch-kafka-$KAFKA_VERSION"
POM="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka-pom.xml"

if [[ -f "$MARKER" ]]; then
    echo "kafka-jars: Kafka $KAFKA_VERSION already in $LIBS"
    exit 0
fi

command -v mvn >/dev/null || { echo "kafka-jars: Maven (mvn) is required" >&2; exit 1; }
command -v java >/dev/null || { echo "kafka-jars: Java 17+ is required to run the broker" >&2; exit 1; }

# Copy into a staging folder and swap it in, so an interrupted run never leaves a half-filled libs/
# that a later run (or the test harness) would take for complete.
mkdir -p "$KAFKA_HOME"
STAGE="$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

echo "kafka-jars: copying Kafka $KAFKA_VERSION jars into $LIBS"
mvn -q -B -Dstyle.color=never -f "$POM" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$STAGE"

ls "$STAGE"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null
touch "$STAGE/.trustwatch-kafka-$KAFKA_VERSION"
rm -rf "$LIBS"
mv "$STAGE" "$LIBS"
trap - EXIT
echo "kafka-jars: $(ls "$LIBS"/*.jar | wc -l) jars in $LIBS"
