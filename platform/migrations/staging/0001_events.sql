-- The landing table: every accepted event, append-only, in commit order.
-- `payload` is the canonical (validated, normalised) ClinicalEvent as protobuf bytes;
-- `raw` is the event as it was received, kept for replay and audit.
CREATE TABLE IF NOT EXISTS staging.events
(
    position UInt64,
    event_id String,
    source_system String,
    kind String,
    patient_mrn String,
    patient_authority String,
    occurred_at_ms Int64,
    received_at_ms Int64,
    payload String,
    raw String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(toDateTime(intDiv(received_at_ms, 1000)))
ORDER BY position
