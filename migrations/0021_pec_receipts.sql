-- PEC receipts (CONTRACT 1.2 §9, D2) are matched to their delivery by the Message-ID they
-- name (X-Riferimento-Message-ID): an index for PEC deliveries, so reading a receipt costs
-- one lookup, not a scan.
CREATE INDEX deliveries_pec_message_id ON deliveries (message_id) WHERE channel = 'pec';
