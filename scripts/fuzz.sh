#!/usr/bin/env bash
# Fuzzes the HL7 v2 and FHIR R4 parsers of hospital-sources with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh                      # every target, FUZZ_SECONDS (60) each
#   FUZZ_SECONDS=300 scripts/fuzz.sh hl7v2_parse
#   scripts/fuzz.sh fhir_bundle -- -jobs=2 -workers=2   # extra libFuzzer flags after --
#
# Targets (platform/sources/fuzz/fuzz_targets; bodies in hospital_sources::fuzzing):
#   hl7v2_parse  fhir_bundle  fhir_ndjson
#
# Seeds are built from shared/data on every run (HL7 files as they are; small Bundles cut
# from the Synthea bundles; NDJSON made from their resources, one per line, references
# made relative as in a bulk export), plus the hand-made seeds and the regressions in
# platform/sources/fuzz. Everything generated (corpus, seeds, crash artifacts, logs) goes
# to FUZZ_WORK, outside the repository.
#
# A crash, timeout (-timeout, seconds per input) or OOM (-rss_limit_mb) stops that target
# and is saved under FUZZ_WORK/artifacts/<target>/; the script goes on with the other
# targets and exits 1. To keep a finding: minimise it with
#   cargo +nightly fuzz tmin --fuzz-dir platform/sources/fuzz <target> <artifact>
# fix the bug, and copy the minimised input to platform/sources/fuzz/regressions/<target>/,
# which `cargo test -p hospital-sources --test fuzz_regressions` replays on stable.
#
# Environment:
#   FUZZ_SECONDS          seconds per target (default 60)
#   FUZZ_MAX_LEN          -max_len in bytes (default 65536)
#   FUZZ_TIMEOUT          -timeout in seconds per input (default 10)
#   FUZZ_RSS_MB           -rss_limit_mb (default 2048)
#   FUZZ_WORK             work directory (default ${TMPDIR:-/tmp}/hospital-fuzz)
#   HOSPITAL_SHARED_DATA  the shared/data directory (default: ../shared/data beside the repo)
#   CARGO_TARGET_DIR      build directory (default /var/cache/hospital-fuzz-target)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`), python3.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$repo/platform/sources/fuzz"
all_targets=(hl7v2_parse fhir_bundle fhir_ndjson)

seconds="${FUZZ_SECONDS:-60}"
max_len="${FUZZ_MAX_LEN:-65536}"
timeout="${FUZZ_TIMEOUT:-10}"
rss_mb="${FUZZ_RSS_MB:-2048}"
work="${FUZZ_WORK:-${TMPDIR:-/tmp}/hospital-fuzz}"
data="${HOSPITAL_SHARED_DATA:-$repo/../shared/data}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/hospital-fuzz-target}"

targets=()
extra=()
while (($#)); do
    case "$1" in
        --) shift; extra=("$@"); break ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *)
            [[ " ${all_targets[*]} " == *" $1 "* ]] || { echo "unknown target $1 (${all_targets[*]})" >&2; exit 2; }
            targets+=("$1"); shift ;;
    esac
done
((${#targets[@]})) || targets=("${all_targets[@]}")

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "needs the nightly toolchain and cargo-fuzz: rustup toolchain install nightly && cargo install cargo-fuzz --locked" >&2
    exit 2
fi
[[ -d "$data/hl7v2" && -d "$data/synthea_fhir_r4/bundles" ]] || {
    echo "shared data not found at $data (set HOSPITAL_SHARED_DATA to the shared/data directory)" >&2
    exit 2
}

echo "== seeds from $data -> $work/seeds"
rm -rf "$work/seeds"
mkdir -p "$work/seeds" "$work/logs"
python3 - "$data" "$work/seeds" "$max_len" <<'PY'
import hashlib, json, pathlib, sys

data, out, max_len = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
counts = {}

def put(target, blob):
    if len(blob) > max_len:
        return
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(blob).hexdigest()).write_bytes(blob)
    counts[target] = counts.get(target, 0) + 1

for f in sorted(data.glob("hl7v2/**/*.hl7")):
    put("hl7v2_parse", f.read_bytes())

def dumps(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode()

def strip(resource):
    resource = dict(resource)
    resource.pop("text", None)  # the XHTML narrative: large, and never read
    return resource

def refs(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "reference" and isinstance(x, str):
                yield x
            else:
                yield from refs(x)
    elif isinstance(v, list):
        for x in v:
            yield from refs(x)

def relative(v, names):
    """urn:uuid references -> Type/id, as a bulk export writes them."""
    if isinstance(v, dict):
        return {k: (names.get(x, x) if k == "reference" and isinstance(x, str) else relative(x, names)) for k, x in v.items()}
    if isinstance(v, list):
        return [relative(x, names) for x in v]
    return v

for f in sorted(data.glob("synthea_fhir_r4/bundles/*.json")):
    bundle = json.loads(f.read_bytes())
    entries = [dict(e, resource=strip(e["resource"])) for e in bundle.get("entry", [])]
    by_url = {e.get("fullUrl"): e for e in entries}
    head = {k: v for k, v in bundle.items() if k != "entry"}
    patients = [e for e in entries if e["resource"].get("resourceType") == "Patient"]
    types = sorted({e["resource"].get("resourceType") for e in entries})

    def with_refs(chosen):
        """The chosen entries, the patient, and what they reference (one level)."""
        keep = list(patients[:1])
        for e in chosen:
            for r in refs(e["resource"]):
                if r in by_url and by_url[r] not in keep:
                    keep.append(by_url[r])
        return keep + [e for e in chosen if e not in keep]

    def bundle_seed(chosen):
        chosen = list(chosen)
        while chosen:
            blob = dumps(dict(head, entry=with_refs(chosen)))
            if len(blob) <= max_len:
                put("fhir_bundle", blob)
                return
            chosen.pop()

    for ty in types:
        of_type = [e for e in entries if e["resource"].get("resourceType") == ty]
        bundle_seed(of_type[:3])
        bundle_seed(of_type[-2:])
    for start in range(0, min(len(entries), 160), 16):
        bundle_seed(entries[start:start + 16])

    names = {e["fullUrl"]: f'{e["resource"]["resourceType"]}/{e["resource"]["id"]}'
             for e in entries if "fullUrl" in e and "id" in e["resource"]}
    lines = [dumps(relative(e["resource"], names)) for e in entries]
    types_of = [e["resource"].get("resourceType") for e in entries]
    patient_lines = [l for l, t in zip(lines, types_of) if t == "Patient"][:1]
    for ty in types:
        of_type = [l for l, t in zip(lines, types_of) if t == ty][:6]
        extra = [] if ty == "Patient" else patient_lines
        while of_type and len(b"\n".join(extra + of_type)) + 1 > max_len:
            of_type.pop()
        if of_type:
            put("fhir_ndjson", b"\n".join(extra + of_type) + b"\n")
    for start in range(0, min(len(lines), 160), 20):
        chunk = patient_lines + lines[start:start + 20]
        while len(chunk) > 1 and len(b"\n".join(chunk)) + 1 > max_len:
            chunk.pop()
        put("fhir_ndjson", b"\n".join(chunk) + b"\n")

print("  " + ", ".join(f"{t}: {n}" for t, n in sorted(counts.items())))
PY

echo "== build (nightly, cargo-fuzz; target dir $CARGO_TARGET_DIR)"
cargo +nightly fuzz build --fuzz-dir "$fuzz_dir"

failed=()
for t in "${targets[@]}"; do
    case "$t" in
        hl7v2_parse) dict="$fuzz_dir/dict/hl7v2.dict" ;;
        *) dict="$fuzz_dir/dict/fhir.dict" ;;
    esac
    corpus="$work/corpus/$t"
    artifacts="$work/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    inputs=("$corpus" "$work/seeds/$t")
    for d in "$fuzz_dir/seeds/$t" "$fuzz_dir/regressions/$t"; do
        [[ -d "$d" ]] && inputs+=("$d")
    done
    log="$work/logs/$t.log"
    echo "== $t: ${seconds}s, -max_len=$max_len -timeout=$timeout -rss_limit_mb=$rss_mb (log $log)"
    if cargo +nightly fuzz run --fuzz-dir "$fuzz_dir" "$t" "${inputs[@]}" -- \
        -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb="$rss_mb" -max_len="$max_len" \
        -dict="$dict" -artifact_prefix="$artifacts/" -print_final_stats=1 "${extra[@]}" >"$log" 2>&1; then
        grep -E '^Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added' "$log" | sed 's/^/  /' || true
        grep -E '#[0-9]+\s+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 | sed 's/^/  /' || true
    else
        failed+=("$t")
        grep -E 'ERROR: libFuzzer|panicked at|Test unit written to|SUMMARY' "$log" | sed 's/^/  /' || tail -20 "$log"
    fi
done

if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]} (artifacts under $work/artifacts, logs under $work/logs)" >&2
    exit 1
fi
echo "ok: ${targets[*]}"
