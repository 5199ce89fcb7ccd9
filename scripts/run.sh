#!/usr/bin/env bash
# Brings the platform up on local defaults and feeds it: installs what is missing,
# builds, starts a local ClickHouse (data in .hospital/clickhouse), starts the platform
# on 127.0.0.1:50051 (gRPC) and 127.0.0.1:2575 (HL7 v2 MLLP), loads the reference
# catalogue, then feeds it data: with no argument, the hospital simulator streams the
# last DAYS days at full speed and then carries on live at the wall clock; with
# `SOURCE PATH` (fhir, hl7, mimic or synthea), that data set is loaded instead. Then a
# warehouse load, and what landed. Keeps everything running until Ctrl-C
# (HOSPITAL_DEMO_EXIT=1 stops at the end instead).
#
#   scripts/run.sh                                   # simulated hospital, live
#   scripts/run.sh mimic ../shared/data/mimic3_demo  # a data set instead
#   DAYS=45 SEED=42 HOSPITAL_GRPC_PORT=50051 HOSPITAL_CH_HTTP_PORT=8123 scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

days=${DAYS:-45}
seed=${SEED:-42}
source_kind=${1:-}
source_path=${2:-}
if [ -n "$source_kind" ] && [ -z "$source_path" ]; then
  echo "usage: scripts/run.sh [fhir|hl7|mimic|synthea PATH]" >&2
  exit 2
fi
grpc_port=${HOSPITAL_GRPC_PORT:-50051}
mllp_port=${HOSPITAL_MLLP_PORT:-2575}
ch_http=${HOSPITAL_CH_HTTP_PORT:-8123}
ch_tcp=${HOSPITAL_CH_TCP_PORT:-9000}
ml_port=${HOSPITAL_ML_PORT:-50061}
state=.hospital
mkdir -p "$state"

echo "== building (release)"
cargo build --release --locked -p hospital-platform -p hospital-client -p hospital-testkit -p hospital-ml
bin="${CARGO_TARGET_DIR:-target}/release"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "== starting ClickHouse on 127.0.0.1:$ch_http (data in $state/clickhouse)"
"$bin/hospital-clickhouse" --dir "$state/clickhouse" --http-port "$ch_http" --tcp-port "$ch_tcp" >"$state/clickhouse.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  grep -q "clickhouse ready" "$state/clickhouse.log" 2>/dev/null && break
  if ! kill -0 "${pids[0]}" 2>/dev/null; then cat "$state/clickhouse.log"; exit 1; fi
  sleep 0.1
done

echo "== starting the platform on 127.0.0.1:$grpc_port (gRPC) and 127.0.0.1:$mllp_port (HL7 v2 MLLP)"
# Warehouse loads every 15 s (default 60): live risk scores follow the warehouse.
HOSPITAL__CLICKHOUSE__URL="http://127.0.0.1:$ch_http" HOSPITAL__BATCH__INTERVAL_SECS=${HOSPITAL__BATCH__INTERVAL_SECS:-15} \
  "$bin/hospital-platform" --listen "127.0.0.1:$grpc_port" --mllp-listen "127.0.0.1:$mllp_port" >"$state/platform.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  (echo >"/dev/tcp/127.0.0.1/$grpc_port") 2>/dev/null && break
  if ! kill -0 "${pids[1]}" 2>/dev/null; then cat "$state/platform.log"; exit 1; fi
  sleep 0.1
done

export HOSPITAL_ENDPOINT="http://127.0.0.1:$grpc_port"
echo "== reference data: drug catalogue and payers (platform/sources/reference)"
"$bin/hospital" load reference platform/sources/reference
if [ -n "$source_kind" ]; then
  echo "== loading $source_kind data from $source_path"
  "$bin/hospital" load "$source_kind" "$source_path"
else
  echo "== the simulated hospital: the last $days days at full speed, then live (seed $seed)"
  "$bin/hospital" simulate --days-ago "$days" --seed "$seed" --live >"$state/simulate.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 1200); do
    grep -q "caught up with the wall clock" "$state/simulate.log" 2>/dev/null && break
    if ! kill -0 "${pids[2]}" 2>/dev/null; then cat "$state/simulate.log"; exit 1; fi
    sleep 0.25
  done
  grep "simulating\|caught up" "$state/simulate.log"
  sleep 2
fi
hl7=../shared/data/hl7v2/microsoft_FHIR-Converter/messages
if [ -d "$hl7" ]; then
  echo "== a live HL7 v2 feed over MLLP (sample messages; AA = durably staged)"
  "$bin/hospital" hl7-send --to "127.0.0.1:$mllp_port" "$hl7"/ADT01-23.hl7 "$hl7"/ADT-A02-01.hl7 \
    "$hl7"/ADT04-28.hl7 "$hl7"/LAB-ORU-1.hl7 "$hl7"/SIU-S12-01.hl7 "$hl7"/ADT01-28.hl7 || true
fi
echo "== warehouse load"
"$bin/hospital" batch run
"$bin/hospital" batch status

q() { curl -sS "http://127.0.0.1:$ch_http/" --data-binary "$1 FORMAT PrettyCompactMonoBlock"; }
echo "== what landed"
q "SELECT kind, count() AS events, uniqExact(event_id) AS distinct_events FROM staging.events GROUP BY kind ORDER BY kind"
q "SELECT count() AS encounters, round(avg(length_of_stay_hours), 1) AS avg_los_hours, round(avg(ed_wait_minutes), 1) AS avg_ed_wait_min FROM warehouse.fact_encounter FINAL WHERE is_deleted = 0"
q "SELECT loinc_code, unit, count() AS observations, round(avg(value), 1) AS mean FROM warehouse.fact_vital_sign FINAL WHERE is_deleted = 0 GROUP BY loinc_code, unit ORDER BY loinc_code"

echo "== live census and NEWS2 scores (the real-time stage)"
"$bin/hospital" census
echo "highest NEWS2 now:"
"$bin/hospital" scores --top 10

echo "== the ML sidecar on 127.0.0.1:$ml_port: training sets from the warehouse (Lance), models trained, served and scoring live"
staged_before_ml=$(curl -sS "http://127.0.0.1:$ch_http/" --data-binary "SELECT max(position) FROM staging.events FORMAT TSV")
# --live-backfill-hours 6: at its first start it also scores the last 6 simulated hours
# (the live hospital charts a vital-signs set every minute or two).
HOSPITAL__CLICKHOUSE__URL="http://127.0.0.1:$ch_http" HOSPITAL_ML_DATA_DIR="$state/ml" \
  "$bin/hospital-ml" --listen "127.0.0.1:$ml_port" --bootstrap --platform "$HOSPITAL_ENDPOINT" \
  --live-backfill-hours 6 >"$state/ml.log" 2>&1 &
pids+=($!)
ml_pid=$!
for _ in $(seq 1 2400); do
  grep -q "hospital-ml serving" "$state/ml.log" 2>/dev/null && break
  if ! kill -0 "$ml_pid" 2>/dev/null; then cat "$state/ml.log"; exit 1; fi
  sleep 0.25
done
grep -E "training set built|model trained|bootstrap failed" "$state/ml.log" | sed 's/\x1b\[[0-9;]*m//g' || true
if [ -z "$source_kind" ]; then
  echo "== live risk scores: the last 6 hours' vital-signs sets, then each new one once the warehouse holds it (30 s)"
  timeout 30 "$bin/hospital" risk --after "$staged_before_ml" | head -20 || true
fi

echo
echo "platform: $HOSPITAL_ENDPOINT (try: grpcurl -plaintext 127.0.0.1:$grpc_port list)"
echo "ML sidecar: grpcurl -plaintext -d '{\"task\":\"TASK_DETERIORATION_24H\"}' 127.0.0.1:$ml_port hospital.ml.v1.ModelService/ListModels"
echo "the simulated hospital carries on live (log: $state/simulate.log); follow it:"
echo "  $bin/hospital alerts    |    $bin/hospital risk    |    $bin/hospital census --watch    |    $bin/hospital feed --kind admission"
echo "clickhouse: http://127.0.0.1:$ch_http   logs: $state/*.log"
if [ "${HOSPITAL_DEMO_EXIT:-0}" = "1" ]; then
  exit 0
fi
echo "running; Ctrl-C stops everything"
wait
