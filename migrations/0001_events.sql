-- The event log: one row per engine journal record, in the order the engine decided them.
--
-- `seq` is the engine's monotone sequence number and the only key: writing the same record
-- twice (a replay after a crash, a retried batch) is a no-op. `payload` is the record exactly as
-- the local journal holds it (persist::codec, versioned), so it stays the truth; the other columns
-- are copies of fields an operator searches by, filled where the record has them.
--
-- Times are engine nanoseconds (`at_ns`, the clock the daemon passes to the engine), kept as
-- integers so nothing is rounded; `written_at` is when the row reached Postgres, which is what
-- an operator needs to see the writer's lag.

CREATE TABLE events (
    seq         bigint      PRIMARY KEY CHECK (seq > 0),
    at_ns       bigint      NOT NULL,
    kind        text        NOT NULL,
    payload     bytea       NOT NULL,
    position_id bigint,
    account     integer,
    venue       text,
    symbol      text,
    side        text,
    cid         text,
    written_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE events IS
    'robsond journal records, append-only; payload is the persist::codec encoding';

-- The log is written far more often than it is searched, and each index costs every insert
-- (measured: four secondary indexes more than doubled the insert time). A position's history and
-- a symbol's are the searches that matter; an order's records are its position's (`orders`
-- gives the position), and a search by kind is rare enough to scan. Partial: most records name
-- no position and many no symbol.
CREATE INDEX events_position_id ON events (position_id, seq) WHERE position_id IS NOT NULL;
CREATE INDEX events_symbol ON events (symbol, seq) WHERE symbol IS NOT NULL;

-- Records are facts: a row that changes after it is written would make the log lie about what
-- the engine decided. Deleting old rows (retention) stays possible for a database owner.
CREATE FUNCTION events_refuse_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only (seq %)', OLD.seq
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_update();
