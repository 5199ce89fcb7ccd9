-- Risk alerts (kind "risk", raised for a `risk_score` event whose `alert` is set) are
-- audited in the same table as NEWS2 alerts, in one order of staging positions; these
-- columns say which model raised one and how high its probability was. Empty / 0 for
-- NEWS2 alerts (their score and bands are set instead).
ALTER TABLE warehouse.news2_alerts
    ADD COLUMN model String DEFAULT '',
    ADD COLUMN model_version UInt64 DEFAULT 0,
    ADD COLUMN probability Float64 DEFAULT 0
