#!/usr/bin/env bash
# DRAFT of .ci/run's Kafka part (the lead owns .ci/run; merge what is useful).
# Java 17 and Maven are on the CI image; the install branch only documents what a bare
# Debian/Ubuntu runner would need. Cache ~/.m2 and .kafka/lib keyed on
# hashFiles('scripts/kafka/pom.xml') so later runs start the broker without Maven.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  echo "ci: installing Java 17 and Maven" >&2
  SUDO=$([[ $(id -u) -eq 0 ]] && echo "" || echo sudo)
  $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends openjdk-17-jre-headless maven
fi

npm ci
bash scripts/kafka-up.sh || { tail -n 100 .kafka/kafka.log >&2 || true; exit 1; }
trap 'bash scripts/kafka-down.sh' EXIT # CI stops it; dev machines leave it running
export KAFKA_BROKERS=127.0.0.1:${KAFKA_PORT:-9092} # globalSetup then starts nothing
node scripts/kafka/check-protocol.mjs "$KAFKA_BROKERS"
npx tsc --noEmit
npx vitest run
