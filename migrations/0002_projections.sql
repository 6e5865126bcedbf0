-- Projections: the current picture operators query, derived from `events` by the writer in the
-- same transaction as the events themselves, and only from rows that transaction inserted. They
-- can always be rebuilt from `events`; they are never written by anything else.
--
-- Money: numeric(38,8). The engine counts every price, quantity and ratio in i64 units of 1e-8;
-- the writer sends those integers and Postgres scales them with `units * 0.00000001`, a numeric
-- product that is exact (its scale is exactly 8), so no value ever passes through a float and
-- an operator can write `qty * entry` or `sum(qty)` without knowing the unit. The widest i64
-- (about 9.2e10 whole units) needs 19 digits, well inside 38. Percentages (`*_pct`) are
-- percent: 2.5 means 2.5 %.
--
-- Text codes mirror the engine's names: side LONG/SHORT, order side BUY/SELL, venue usdm/margin,
-- modality core/safety_net; position state is armed, entering, active, exiting (Core) or
-- protected, exiting (Safety Net), and then closed, entry_failed or disarmed.

CREATE TABLE positions (
    id              bigint        PRIMARY KEY,
    -- The exchange position this one guards: at most one live robsond position per key.
    account         integer       NOT NULL,
    venue           text          NOT NULL,
    symbol          text          NOT NULL,
    side            text          NOT NULL,
    modality        text          NOT NULL,
    state           text          NOT NULL,
    qty             numeric(38,8),
    entry           numeric(38,8),
    stop            numeric(38,8),
    -- Core: the hand span the trailing stop moves by, and the trailing level reached.
    span            numeric(38,8),
    trail_level     bigint,
    -- Safety Net: the percent its stop sits from the entry.
    safety_pct      numeric(38,8),
    -- Safety Net: the Core position whose remainder it took over, if any.
    from_position   bigint,
    -- What the arm asked for (null: the engine's default).
    technical_stop  numeric(38,8),
    capital         numeric(38,8),
    risk_pct        numeric(38,8),
    ma_fast         bigint,
    ma_slow         bigint,
    signal_price    numeric(38,8),
    -- The trigger price that reached the stop, and when.
    trigger_price   numeric(38,8),
    triggered_at_ns bigint,
    -- The latest close: why it was decided, whether it waits for the lease, and the latest
    -- reason one could not be sent (dust, refused).
    close_reason    text,
    close_deferred  boolean,
    close_problem   text,
    closed_by       text,
    armed_at_ns     bigint,
    opened_at_ns    bigint,
    closed_at_ns    bigint,
    updated_at_ns   bigint        NOT NULL,
    -- The last event folded into this row.
    last_seq        bigint        NOT NULL
);

CREATE INDEX positions_symbol_side ON positions (symbol, side);
-- What is live now, per exchange key: the question a person on call asks first.
CREATE INDEX positions_live ON positions (account, venue, symbol, side)
    WHERE state NOT IN ('closed', 'entry_failed', 'disarmed');

CREATE TABLE orders (
    cid           text          PRIMARY KEY,
    position_id   bigint,
    account       integer       NOT NULL,
    venue         text          NOT NULL,
    symbol        text          NOT NULL,
    -- Null only for an order whose `order_sent` record predates this database's history.
    side          text,
    qty           numeric(38,8),
    purpose       text,
    modality      text,
    close_reason  text,
    -- sent (no answer yet), then the exchange's: new, partially_filled, filled, canceled,
    -- expired, rejected, unknown, not_found.
    status        text          NOT NULL,
    reject_kind   text,
    cum_qty       numeric(38,8),
    avg_price     numeric(38,8),
    exchange_ms   bigint,
    queries       integer       NOT NULL DEFAULT 0,
    sent_at_ns    bigint,
    queried_at_ns bigint,
    updated_at_ns bigint        NOT NULL,
    last_seq      bigint        NOT NULL
);

CREATE INDEX orders_position_id ON orders (position_id);
CREATE INDEX orders_open ON orders (symbol)
    WHERE status IN ('sent', 'new', 'partially_filled', 'unknown');

-- Every stop move: trailing (Core's stop following the price) and safety (the Safety Net's stop
-- set or re-set from the entry). `from_stop` is null for a position's first stop.
CREATE TABLE stop_changes (
    seq         bigint        PRIMARY KEY,
    position_id bigint        NOT NULL,
    at_ns       bigint        NOT NULL,
    kind        text          NOT NULL CHECK (kind IN ('trailing', 'safety')),
    from_stop   numeric(38,8),
    to_stop     numeric(38,8) NOT NULL,
    level       bigint,
    pct         numeric(38,8)
);

CREATE INDEX stop_changes_position ON stop_changes (position_id, seq);

-- The log with each record's position key filled in from its position, for records that only
-- name a position id (a stop move, a close).
CREATE VIEW event_log AS
SELECT e.seq, e.at_ns, e.written_at, e.kind, e.position_id,
       coalesce(e.account, p.account) AS account,
       coalesce(e.venue, p.venue)     AS venue,
       coalesce(e.symbol, p.symbol)   AS symbol,
       coalesce(e.side, p.side)       AS side,
       e.cid
FROM events e
LEFT JOIN positions p ON p.id = e.position_id;
