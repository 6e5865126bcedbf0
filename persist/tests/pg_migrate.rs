//! Migrations against a real Postgres: what they build, that they apply once (also when two
//! instances start together), and that they refuse a database that does not match the files.

mod pg_common;

use std::sync::Barrier;
use std::thread;

use persist::pg::{Applied, MIGRATIONS, MigrateError, Migration, migrate, migrate_with};
use pg_common::*;
use postgres::Client;

fn strings(client: &mut Client, sql: &str, schema: &str) -> Vec<String> {
    client.query(sql, &[&schema]).expect(sql).iter().map(|r| r.get(0)).collect()
}

fn all_applied() -> Vec<Applied> {
    MIGRATIONS.iter().map(|m| Applied { version: m.version, name: m.name.to_owned() }).collect()
}

#[test]
fn an_empty_schema_gets_the_tables_indexes_and_history() {
    let db = TestDb::empty();
    let mut client = connect_plain(&db.url);
    assert_eq!(migrate(&mut client, &db.schema).expect("applies"), all_applied());
    let schema = db.schema.as_str();

    let tables = strings(
        &mut client,
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
         ORDER BY 1",
        schema,
    );
    let expected =
        ["event_log", "events", "orders", "positions", "schema_migrations", "stop_changes"];
    assert_eq!(tables, expected);

    let columns = strings(
        &mut client,
        "SELECT table_name || '.' || column_name || ' ' || data_type || \
                coalesce('(' || numeric_precision || ',' || numeric_scale || ')', '') || \
                CASE is_nullable WHEN 'NO' THEN ' not null' ELSE '' END \
         FROM information_schema.columns WHERE table_schema = $1 \
           AND table_name IN ('events', 'positions', 'orders', 'stop_changes')",
        schema,
    );
    for expected in [
        "events.seq bigint(64,0) not null",
        "events.at_ns bigint(64,0) not null",
        "events.kind text not null",
        "events.payload bytea not null",
        "events.position_id bigint(64,0)",
        "events.symbol text",
        "events.cid text",
        "positions.id bigint(64,0) not null",
        "positions.account integer(32,0) not null",
        "positions.symbol text not null",
        "positions.side text not null",
        "positions.modality text not null",
        "positions.state text not null",
        "positions.qty numeric(38,8)",
        "positions.entry numeric(38,8)",
        "positions.stop numeric(38,8)",
        "positions.trigger_price numeric(38,8)",
        "positions.opened_at_ns bigint(64,0)",
        "positions.closed_at_ns bigint(64,0)",
        "positions.closed_by text",
        "orders.cid text not null",
        "orders.position_id bigint(64,0)",
        "orders.purpose text",
        "orders.status text not null",
        "orders.cum_qty numeric(38,8)",
        "orders.avg_price numeric(38,8)",
        "orders.sent_at_ns bigint(64,0)",
        "orders.updated_at_ns bigint(64,0) not null",
        "stop_changes.seq bigint(64,0) not null",
        "stop_changes.position_id bigint(64,0) not null",
        "stop_changes.kind text not null",
        "stop_changes.from_stop numeric(38,8)",
        "stop_changes.to_stop numeric(38,8) not null",
        "stop_changes.level bigint(64,0)",
        "stop_changes.pct numeric(38,8)",
    ] {
        assert!(columns.iter().any(|c| c == expected), "missing column {expected}: {columns:#?}");
    }

    let indexes = strings(
        &mut client,
        "SELECT indexname || ': ' || indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY 1",
        schema,
    );
    for (name, columns) in [
        ("events_pkey", "(seq)"),
        ("events_position_id", "(position_id, seq)"),
        ("events_symbol", "(symbol, seq)"),
        ("positions_pkey", "(id)"),
        ("positions_symbol_side", "(symbol, side)"),
        ("orders_pkey", "(cid)"),
        ("orders_position_id", "(position_id)"),
        ("stop_changes_position", "(position_id, seq)"),
    ] {
        assert!(
            indexes.iter().any(|i| i.starts_with(&format!("{name}: ")) && i.contains(columns)),
            "missing index {name} {columns}: {indexes:#?}"
        );
    }

    let history = client
        .query(&format!("SELECT version, name, checksum FROM {schema}.schema_migrations"), &[])
        .expect("history");
    let history: Vec<(i32, String, String)> =
        history.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let expected: Vec<(i32, String, String)> =
        MIGRATIONS.iter().map(|m| (m.version, m.name.to_owned(), m.checksum())).collect();
    assert_eq!(history, expected);

    // Again: nothing to do, nothing recorded twice.
    let applied_at = strings(
        &mut client,
        &format!("SELECT applied_at::text FROM {schema}.schema_migrations WHERE $1 <> ''"),
        schema,
    );
    assert_eq!(migrate(&mut client, &db.schema).expect("no-op"), []);
    let again = strings(
        &mut client,
        &format!("SELECT applied_at::text FROM {schema}.schema_migrations WHERE $1 <> ''"),
        schema,
    );
    assert_eq!(again, applied_at);

    // The caller's session is left as it was.
    let path: String = client.query_one("SHOW search_path", &[]).expect("show").get(0);
    assert!(!path.contains(schema), "{path}");
}

#[test]
fn two_instances_starting_together_apply_each_migration_once() {
    let db = TestDb::empty();
    let barrier = Barrier::new(3);
    let results: Vec<Vec<Applied>> = thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut client = connect_plain(&db.url);
                    barrier.wait();
                    migrate(&mut client, &db.schema).expect("every instance succeeds")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let mut applied: Vec<Applied> = results.into_iter().flatten().collect();
    applied.sort_by_key(|a| a.version);
    assert_eq!(applied, all_applied());
}

#[test]
fn an_edited_migration_is_refused_by_name() {
    let db = TestDb::new();
    let mut client = connect_plain(&db.url);
    client
        .execute(
            &format!(
                "UPDATE {}.schema_migrations SET checksum = 'crc32:00000000' WHERE version = 1",
                db.schema
            ),
            &[],
        )
        .expect("tamper");
    let err = migrate(&mut client, &db.schema).expect_err("refused");
    match &err {
        MigrateError::ChecksumChanged { version, name, recorded, embedded } => {
            assert_eq!((*version, name.as_str()), (1, "0001_events.sql"));
            assert_eq!(recorded, "crc32:00000000");
            assert_eq!(embedded, &MIGRATIONS[0].checksum());
        }
        other => panic!("expected ChecksumChanged, got {other:?}"),
    }
    assert!(err.to_string().contains("0001_events.sql"), "{err}");

    // The same with the file itself changed, and the lock was released both times.
    let mut edited = MIGRATIONS.to_vec();
    edited[1].sql = "CREATE TABLE sneaky (x int);";
    client
        .execute(
            &format!("UPDATE {}.schema_migrations SET checksum = $1 WHERE version = 1", db.schema),
            &[&MIGRATIONS[0].checksum()],
        )
        .expect("untamper");
    match migrate_with(&mut client, &db.schema, &edited) {
        Err(MigrateError::ChecksumChanged { name, .. }) => assert_eq!(name, "0002_projections.sql"),
        other => panic!("expected ChecksumChanged, got {other:?}"),
    }
    assert_eq!(migrate(&mut connect_plain(&db.url), &db.schema).expect("unlocked"), []);
}

#[test]
fn a_database_migrated_by_a_newer_robsond_is_refused() {
    let db = TestDb::new();
    let mut client = connect_plain(&db.url);
    client
        .execute(
            &format!(
                "INSERT INTO {}.schema_migrations (version, name, checksum) \
                 VALUES (99, '0099_future.sql', 'crc32:12345678')",
                db.schema
            ),
            &[],
        )
        .expect("future");
    match migrate(&mut client, &db.schema) {
        Err(MigrateError::Unknown { version, name }) => {
            assert_eq!((version, name.as_str()), (99, "0099_future.sql"));
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
}

#[test]
fn a_failing_migration_leaves_nothing_behind() {
    let db = TestDb::empty();
    let mut client = connect_plain(&db.url);
    let mut list = MIGRATIONS.to_vec();
    list.push(Migration {
        version: MIGRATIONS.len() as i32 + 1,
        name: "0099_broken.sql",
        sql: "CREATE TABLE half_done (x int); ALTER TABLE events ADD COLUMN y int; SELECT 1 / 0;",
    });
    match migrate_with(&mut client, &db.schema, &list) {
        Err(MigrateError::Failed { name, error, .. }) => {
            assert_eq!(name, "0099_broken.sql");
            assert_eq!(error.code.as_deref(), Some("22012"), "{error}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    let schema = db.schema.as_str();
    let tables = strings(
        &mut client,
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = $1 AND table_name = 'half_done'",
        schema,
    );
    assert!(tables.is_empty(), "the failed migration's first statement was rolled back");
    let y = strings(
        &mut client,
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'events' AND column_name = 'y'",
        schema,
    );
    assert!(y.is_empty());
    let versions: Vec<i32> = client
        .query(&format!("SELECT version FROM {schema}.schema_migrations ORDER BY 1"), &[])
        .expect("history")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2], "the good ones before it stay applied");

    let mut out_of_order = MIGRATIONS.to_vec();
    out_of_order.swap(0, 1);
    assert!(matches!(
        migrate_with(&mut client, &db.schema, &out_of_order),
        Err(MigrateError::BadList)
    ));
}
