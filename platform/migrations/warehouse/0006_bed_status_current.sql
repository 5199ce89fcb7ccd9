-- The current state of every bed: one row per bed, the state of its latest
-- `fact_bed_status` event by (occurred_at, staging position), kept by the warehouse load
-- (platform/src/warehouse/census.rs) so that the real-time census starts from a table
-- the size of the hospital rather than from every bed event ever loaded.
--
-- Same conventions as 0001 (valid on ClickHouse 18.16.1 and a current LTS). The load
-- writes a bed's row only when an event beats the stored one, with the chunk's version,
-- so the row with the highest version is the latest; readers take the latest by
-- (occurred_at_ms, source_position) and need no FINAL. Beds without a ward or bed code
-- are not kept.
CREATE TABLE IF NOT EXISTS warehouse.bed_status_current
(
    department_code String,
    ward_code String,
    bed_code String,
    state String,
    occurred_at_ms Int64,
    source_position UInt64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (department_code, ward_code, bed_code);

-- Beds loaded before this table existed.
INSERT INTO warehouse.bed_status_current
SELECT department_code, ward_code, bed_code,
       argMax(state, (occurred_at_ms, source_position)),
       max(occurred_at_ms),
       argMax(source_position, (occurred_at_ms, source_position)),
       max(version)
FROM warehouse.fact_bed_status FINAL
WHERE is_deleted = 0 AND ward_code != '' AND bed_code != ''
GROUP BY department_code, ward_code, bed_code;
