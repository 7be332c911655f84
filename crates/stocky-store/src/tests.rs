//! The storage conformance suite: the writer's guarantees, documents, the ledger and
//! accounts, without any network in the way — run against every engine this run has
//! (SQLite always; PostgreSQL when `STOCKY_TEST_DATABASE_URL` is set, see [`crate::testing`]).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::json;
use stocky_core::auth::Role;
use stocky_core::documents::DocWrite;

use stocky_core::stock::{StockCommand, StockLine, StockOp};
use stocky_core::{DEFAULT_SITE, DEFAULT_TENANT};

use super::*;
use crate::audit::AuditFilter;
use crate::sql::{args, DbError};
use crate::testing::TestDatabase;

/// Runs `test` once per engine, each time on a fresh database.
async fn on_every_engine<F, Fut>(test: F)
where
    F: Fn(Location) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    for db in TestDatabase::all(dir.path()) {
        let location = db.location();
        eprintln!("engine: {location:?}");
        test(location).await;
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<CommittedEvent>>, Mutex<Vec<BatchReport>>);

impl EventSink for Recorder {
    fn publish(&self, event: CommittedEvent) -> usize {
        self.0.lock().unwrap().push(event);
        1
    }

    fn batch_done(&self, report: &BatchReport) {
        self.1.lock().unwrap().push(*report);
    }
}

fn origin(op_id: Option<&str>) -> Origin {
    let mut origin = Origin::system(DEFAULT_TENANT.into(), DEFAULT_SITE.into(), "test");
    origin.op_id = op_id.map(str::to_owned);
    origin
}

fn cmd(op: StockOp, lines: &[(i64, i64)]) -> StockCommand {
    StockCommand {
        op,
        lines: lines
            .iter()
            .map(|&(product_id, amount)| StockLine { product_id, amount })
            .collect(),
    }
}

async fn open(at: &Location, sink: Arc<Recorder>) -> (Store, WriterGuard, Vec<StreamHead>) {
    open_with(at, StoreOptions::default(), sink).await
}

async fn open_with(
    at: &Location,
    options: StoreOptions,
    sink: Arc<Recorder>,
) -> (Store, WriterGuard, Vec<StreamHead>) {
    Store::open(at, options, sink, None).await.unwrap()
}

#[tokio::test]
async fn concurrent_subtracts_never_oversell_and_ids_are_gap_free() {
    on_every_engine(concurrent_subtracts).await;
}

async fn concurrent_subtracts(at: Location) {
    let sink = Arc::new(Recorder::default());
    let (store, writer, _) = open(&at, sink.clone()).await;
    store
        .submit(cmd(StockOp::Update, &[(1, 50)]), origin(None))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .submit(cmd(StockOp::Subtract, &[(1, 1)]), origin(None))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(SubmitError::Rejected(Rejection::InsufficientStock {
                available: 0,
                requested: 1,
                ..
            })) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 50);
    let row = store
        .stock_of(DEFAULT_TENANT, DEFAULT_SITE, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.on_hand, 0);
    assert_eq!(
        store
            .ledger_sum(DEFAULT_TENANT, DEFAULT_SITE, 1)
            .await
            .unwrap(),
        0
    );
    let ids: Vec<u64> = sink.0.lock().unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=51).collect::<Vec<_>>());
    drop(store);
    writer.join();
}

#[tokio::test]
async fn state_ids_and_epoch_survive_a_restart() {
    on_every_engine(restart).await;
}

async fn restart(at: Location) {
    let (store, writer, heads) = open(&at, Arc::default()).await;
    let epoch = heads[0].epoch.clone();
    store
        .submit(cmd(StockOp::Add, &[(7, 5), (8, 2)]), origin(None))
        .await
        .unwrap();
    store
        .submit(cmd(StockOp::Subtract, &[(7, 1)]), origin(None))
        .await
        .unwrap();
    drop(store);
    writer.join();

    let sink = Arc::new(Recorder::default());
    let (store, writer, heads) = open(&at, sink.clone()).await;
    assert_eq!((heads[0].epoch.clone(), heads[0].head), (epoch, 2));
    let applied = store
        .submit(cmd(StockOp::Add, &[(7, 1)]), origin(None))
        .await
        .unwrap();
    assert_eq!(applied.id(), 3);
    let snap = store.snapshot(DEFAULT_TENANT, DEFAULT_SITE).await.unwrap();
    assert_eq!(snap.head, 3);
    let levels: Vec<(i64, i64)> = snap
        .stock
        .iter()
        .map(|r| (r.product_id, r.on_hand))
        .collect();
    assert_eq!(levels, vec![(7, 5), (8, 2)]);
    let page = store.replay(DEFAULT_TENANT, 1, 100).await.unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(page.covers(0));
    drop(store);
    writer.join();
}

#[tokio::test]
async fn refused_commands_change_nothing_and_retries_are_idempotent() {
    on_every_engine(refusals_and_retries).await;
}

async fn refusals_and_retries(at: Location) {
    let sink = Arc::new(Recorder::default());
    let (store, writer, _) = open(&at, sink.clone()).await;
    store
        .submit(cmd(StockOp::Update, &[(1, 10)]), origin(None))
        .await
        .unwrap();
    // The second line fails, so the first must not apply either.
    let err = store
        .submit(cmd(StockOp::Subtract, &[(1, 5), (2, 1)]), origin(None))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        SubmitError::Rejected(Rejection::UnknownProduct { product_id: 2 })
    ));
    assert_eq!(
        store
            .stock_of(DEFAULT_TENANT, DEFAULT_SITE, 1)
            .await
            .unwrap()
            .unwrap()
            .on_hand,
        10
    );

    let first = store
        .submit(cmd(StockOp::Subtract, &[(1, 3)]), origin(Some("op-1")))
        .await
        .unwrap();
    let again = store
        .submit(cmd(StockOp::Subtract, &[(1, 3)]), origin(Some("op-1")))
        .await
        .unwrap();
    assert!(matches!(first, Applied::New { id: 2, .. }));
    assert!(matches!(again, Applied::Duplicate { id: 2, .. }));
    assert_eq!(
        store
            .stock_of(DEFAULT_TENANT, DEFAULT_SITE, 1)
            .await
            .unwrap()
            .unwrap()
            .on_hand,
        7
    );
    assert_eq!(sink.0.lock().unwrap().len(), 2);
    drop(store);
    writer.join();
}

#[tokio::test]
async fn each_command_of_a_batch_applies_all_or_nothing_against_what_the_batch_left() {
    on_every_engine(batch_of_seven).await;
}

/// Submits `first`, then — while another connection holds the default tenant's stream
/// (SQLite: the database's write lock; PostgreSQL: the `streams` row), so that the writer
/// waits inside `first`'s batch — each of `rest` in order; then lets go. `rest` reaches the
/// writer as one batch. The answers, in the order sent.
async fn one_batch(
    store: &Store,
    at: &Location,
    first: (StockCommand, Option<&str>),
    rest: Vec<(StockCommand, Option<&str>)>,
) -> Vec<Result<Applied, SubmitError>> {
    let engine = at.engine(Durability::default()).unwrap();
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut conn = engine.connect(engine::ConnRole::Writer).unwrap();
        conn.begin(crate::sql::TxMode::Write).unwrap();
        let sql = format!(
            "SELECT head FROM streams WHERE tenant_id = $1{}",
            conn.row_lock()
        );
        conn.query_opt(&sql, crate::sql::args![DEFAULT_TENANT])
            .unwrap();
        locked_tx.send(()).unwrap();
        let _ = released.recv();
        conn.rollback().unwrap();
    });
    locked.recv().unwrap();
    let submit = |(command, op_id): (StockCommand, Option<&str>)| {
        let (store, origin) = (store.clone(), origin(op_id));
        tokio::spawn(async move { store.submit(command, origin).await })
    };
    let mut answers = vec![submit(first)];
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for command in rest {
        answers.push(submit(command));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(release);
    holder.join().unwrap();
    let mut results = Vec::new();
    for answer in answers {
        results.push(answer.await.unwrap());
    }
    results
}

async fn batch_of_seven(at: Location) {
    let sink = Arc::new(Recorder::default());
    let (store, writer, _) = open(&at, sink.clone()).await;
    store
        .submit(cmd(StockOp::Update, &[(1, 10), (2, 5)]), origin(None))
        .await
        .unwrap();

    let results = one_batch(
        &store,
        &at,
        (cmd(StockOp::Update, &[(9, 1)]), None),
        vec![
            // a: 10 → 6
            (cmd(StockOp::Subtract, &[(1, 4)]), Some("a")),
            // b: its second line names no product, so its first line must not apply either
            (cmd(StockOp::Subtract, &[(1, 3), (3, 1)]), None),
            // c: 6 left (what a left, not the 10 the batch began with): refused
            (cmd(StockOp::Subtract, &[(1, 7)]), None),
            // d: 6 → 0
            (cmd(StockOp::Subtract, &[(1, 6)]), Some("d")),
            // e: a again: a duplicate of a's event, inside the same batch
            (cmd(StockOp::Subtract, &[(1, 4)]), Some("a")),
            // f: a's key for another command: refused
            (cmd(StockOp::Add, &[(2, 1)]), Some("a")),
            // g: two lines of one product: 5 → 7 → 10
            (cmd(StockOp::Add, &[(2, 2), (2, 3)]), None),
        ],
    )
    .await;

    let id = |r: &Result<Applied, SubmitError>| match r {
        Ok(Applied::New { id, .. }) => Some(*id),
        _ => None,
    };
    assert_eq!(id(&results[0]), Some(2), "{:?}", results[0]);
    assert_eq!(id(&results[1]), Some(3), "a: {:?}", results[1]);
    assert!(
        matches!(
            results[2],
            Err(SubmitError::Rejected(Rejection::UnknownProduct {
                product_id: 3
            }))
        ),
        "b: {:?}",
        results[2]
    );
    assert!(
        matches!(
            results[3],
            Err(SubmitError::Rejected(Rejection::InsufficientStock { .. }))
        ),
        "c: {:?}",
        results[3]
    );
    assert_eq!(id(&results[4]), Some(4), "d: {:?}", results[4]);
    assert!(
        matches!(results[5], Ok(Applied::Duplicate { id: 3, .. })),
        "e: {:?}",
        results[5]
    );
    assert!(
        matches!(
            results[6],
            Err(SubmitError::Rejected(Rejection::IdempotencyConflict { .. }))
        ),
        "f: {:?}",
        results[6]
    );
    assert_eq!(id(&results[7]), Some(5), "g: {:?}", results[7]);

    let on_hand = |product| {
        let store = store.clone();
        async move {
            store
                .stock_of(DEFAULT_TENANT, DEFAULT_SITE, product)
                .await
                .unwrap()
                .map(|row| row.on_hand)
        }
    };
    assert_eq!(on_hand(1).await, Some(0));
    assert_eq!(on_hand(2).await, Some(10));
    assert_eq!(on_hand(3).await, None, "a refused command creates nothing");
    assert_eq!(on_hand(9).await, Some(1));
    // Refused commands used no id: the log is 1..=5.
    let ids: Vec<u64> = sink.0.lock().unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    // The ledger holds exactly the applied lines.
    let history = store
        .sync(|s| s.product_history(DEFAULT_TENANT, DEFAULT_SITE, 1, None, 100))
        .await
        .unwrap();
    let deltas: Vec<i64> = history.iter().rev().map(|r| r.entry.delta).collect();
    assert_eq!(deltas, vec![10, -4, -6]);
    // And the seven commands after the first were one batch.
    let batches = sink.1.lock().unwrap().clone();
    assert!(
        batches.iter().any(|b| b.size == 7),
        "the commands did not reach the writer as one batch: {batches:?}"
    );
    drop(store);
    writer.join();
}

#[tokio::test]
async fn a_write_that_fails_inside_a_stock_run_costs_only_its_own_command() {
    on_every_engine(failing_run).await;
}

/// A database-side failure in the middle of a run of stock commands (a trigger that
/// refuses product 666's ledger rows): the batch is staged again with each command in its
/// own savepoint, so the others apply, the failing one is answered `Unavailable` and
/// leaves nothing, and no id is skipped.
async fn failing_run(at: Location) {
    let sink = Arc::new(Recorder::default());
    let (store, writer, _) = open(&at, sink.clone()).await;
    store
        .submit(
            cmd(StockOp::Update, &[(1, 1), (2, 1), (666, 1)]),
            origin(None),
        )
        .await
        .unwrap();
    let engine = at.engine(Durability::default()).unwrap();
    let trigger = match at {
        Location::Sqlite(_) => {
            "CREATE TRIGGER refuse_666 BEFORE INSERT ON movements WHEN NEW.product_id = 666
             BEGIN SELECT RAISE(ABORT, 'product 666 is refused'); END;"
        }
        Location::Postgres(_) => {
            "CREATE FUNCTION refuse_666() RETURNS trigger AS $$
             BEGIN
               IF NEW.product_id = 666 THEN RAISE EXCEPTION 'product 666 is refused'; END IF;
               RETURN NEW;
             END $$ LANGUAGE plpgsql;
             CREATE TRIGGER refuse_666 BEFORE INSERT ON movements
               FOR EACH ROW EXECUTE FUNCTION refuse_666();"
        }
    };
    // The PostgreSQL driver is blocking: not on the runtime's thread.
    std::thread::spawn(move || {
        let mut conn = engine.connect(engine::ConnRole::Accounts).unwrap();
        conn.batch(trigger).unwrap();
    })
    .join()
    .unwrap();

    let results = one_batch(
        &store,
        &at,
        (cmd(StockOp::Add, &[(9, 1)]), None),
        vec![
            (cmd(StockOp::Add, &[(1, 1)]), None),
            (cmd(StockOp::Add, &[(666, 1)]), None),
            (cmd(StockOp::Add, &[(2, 1)]), None),
        ],
    )
    .await;
    assert!(
        matches!(results[0], Ok(Applied::New { id: 2, .. })),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(results[1], Ok(Applied::New { id: 3, .. })),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(SubmitError::Unavailable(_))),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(results[3], Ok(Applied::New { id: 4, .. })),
        "{:?}",
        results[3]
    );
    for (product, expected) in [(1, 2), (2, 2), (666, 1), (9, 1)] {
        let row = store
            .stock_of(DEFAULT_TENANT, DEFAULT_SITE, product)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.on_hand, expected, "product {product}");
    }
    let ids: Vec<u64> = sink.0.lock().unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    let batches = sink.1.lock().unwrap().clone();
    assert!(
        batches.iter().any(|b| b.size == 3),
        "the commands did not reach the writer as one batch: {batches:?}"
    );
    drop(store);
    writer.join();
}

#[tokio::test]
async fn retention_prunes_the_log_and_replay_reports_it() {
    on_every_engine(retention).await;
}

async fn retention(at: Location) {
    let options = StoreOptions {
        event_retention: 3,
        ..StoreOptions::default()
    };
    let (store, writer, _) = open_with(&at, options, Arc::default()).await;
    for _ in 0..6 {
        store
            .submit(cmd(StockOp::Add, &[(1, 1)]), origin(None))
            .await
            .unwrap();
    }
    store.prune_soon();
    // The prune runs on the writer; a later command proves it has run.
    store
        .submit(cmd(StockOp::Add, &[(1, 1)]), origin(None))
        .await
        .unwrap();
    let page = store.replay(DEFAULT_TENANT, 0, 100).await.unwrap();
    assert_eq!(page.head, 7);
    assert_eq!(page.oldest, 4);
    assert!(!page.covers(0));
    assert!(page.covers(page.oldest - 1));
    assert!(!page.covers(8));
    drop(store);
    writer.join();
}

#[tokio::test]
async fn several_writers_on_one_database_never_reuse_or_skip_ids() {
    on_every_engine(several_writers).await;
}

/// Three stores on one database stand for three hub instances: each has its own writer,
/// and their commands interleave on one tenant's stream. Each also indexes the ledger in
/// bulk every 4 events, so the three take turns at it.
async fn several_writers(at: Location) {
    let sinks: Vec<Arc<Recorder>> = (0..3).map(|_| Arc::default()).collect();
    let mut stores = Vec::new();
    for sink in &sinks {
        let options = StoreOptions {
            index_lag: 4,
            ..StoreOptions::default()
        };
        stores.push(open_with(&at, options, sink.clone()).await);
    }
    let tasks: Vec<_> = stores
        .iter()
        .flat_map(|(store, _, _)| {
            (0..30).map(move |i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let product = 1 + i % 3;
                    store
                        .submit(cmd(StockOp::Add, &[(product, 1)]), origin(None))
                        .await
                })
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut ids: Vec<u64> = Vec::new();
    for sink in &sinks {
        let mine: Vec<u64> = sink.0.lock().unwrap().iter().map(|e| e.id).collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "each writer publishes in id order"
        );
        ids.extend(mine);
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=90).collect::<Vec<_>>(), "no id reused or skipped");
    let (store, _, _) = &stores[0];
    let page = store.replay(DEFAULT_TENANT, 0, 1000).await.unwrap();
    assert_eq!(page.head, 90);
    assert_eq!(page.events.len(), 90);
    for product in 1..=3 {
        let row = store
            .stock_of(DEFAULT_TENANT, DEFAULT_SITE, product)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.on_hand, 30);
        let sum = store
            .ledger_sum(DEFAULT_TENANT, DEFAULT_SITE, product)
            .await
            .unwrap();
        assert_eq!(sum, 30);
        let history = store
            .sync(move |s| s.product_history(DEFAULT_TENANT, DEFAULT_SITE, product, None, 1000))
            .await
            .unwrap();
        assert_eq!(history.len(), 30, "product {product}'s history");
    }
    // The index holds exactly the movements up to `indexed_head`, whichever writer wrote it.
    let (indexed, in_index, up_to): (i64, i64, i64) = store
        .read(|r| {
            let row = r.0.query_one(
                "SELECT indexed_head,
                    (SELECT COUNT(*) FROM ledger_by_product WHERE tenant_id = $1),
                    (SELECT COUNT(*) FROM movements WHERE tenant_id = $1
                       AND event_id <= (SELECT indexed_head FROM streams WHERE tenant_id = $1))
                 FROM streams WHERE tenant_id = $1",
                args![DEFAULT_TENANT],
            )?;
            Ok((row.int(0)?, row.int(1)?, row.int(2)?))
        })
        .await
        .unwrap();
    assert!(indexed > 86, "indexed up to {indexed} of 90");
    assert_eq!(in_index, up_to);
    for (store, writer, _) in stores {
        drop(store);
        writer.join();
    }
}

/// Creates `tenants`, each with an owner `owner@<tenant>.test`.
async fn create_tenants(store: &Store, tenants: &[&'static str]) {
    for &tenant in tenants {
        let owner = Account {
            id: format!("owner-{tenant}"),
            tenant: tenant.into(),
            role: Role::Owner,
            site: None,
            modules: None,
        };
        let email = format!("owner@{tenant}.test");
        store
            .accounts(move |a| a.create_tenant(tenant, tenant, Some((&owner, &email, "hash"))))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn writers_lock_the_streams_of_a_multi_tenant_batch_in_one_order() {
    on_every_engine(multi_tenant_writers).await;
}

/// Two writers (two hub instances) take commands for four tenants at once, one in tenant
/// order and the other in reverse, so their batches touch the same streams in opposite
/// orders. Locking each batch's streams in arrival order lets PostgreSQL find a deadlock
/// and refuse a command (seen here as `unavailable`); locked in tenant order, every
/// command applies, and every tenant's ids stay gap-free.
async fn multi_tenant_writers(at: Location) {
    const TENANTS: [&str; 4] = ["t1", "t2", "t3", "t4"];
    const ROUNDS: usize = 150;
    let (first, first_writer, _) = open(&at, Arc::default()).await;
    create_tenants(&first, &TENANTS).await;
    let (second, second_writer, _) = open(&at, Arc::default()).await;
    let submit = |store: &Store, tenant: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            let origin = Origin::system(tenant.into(), DEFAULT_SITE.into(), "test");
            store.submit(cmd(StockOp::Add, &[(1, 1)]), origin).await
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..ROUNDS {
        for tenant in TENANTS {
            tasks.push(submit(&first, tenant));
        }
        for tenant in TENANTS.iter().rev() {
            tasks.push(submit(&second, tenant));
        }
    }
    for task in tasks {
        let answer = task.await.unwrap();
        assert!(answer.is_ok(), "every command applies: {answer:?}");
    }
    for tenant in TENANTS {
        let page = first.replay(tenant, 0, 1000).await.unwrap();
        let ids: Vec<u64> = page.events.iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            (1..=2 * ROUNDS as u64).collect::<Vec<_>>(),
            "{tenant}: gap-free"
        );
        let row = first
            .stock_of(tenant, DEFAULT_SITE, 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.on_hand, 2 * ROUNDS as i64, "{tenant}");
    }
    for (store, writer) in [(first, first_writer), (second, second_writer)] {
        drop(store);
        writer.join();
    }
}

/// Which thread published each event: `(tenant, id, thread name)`.
#[derive(Default)]
struct ByThread(Mutex<Vec<(Arc<str>, u64, String)>>);

impl EventSink for ByThread {
    fn publish(&self, event: CommittedEvent) -> usize {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        self.0
            .lock()
            .unwrap()
            .push((event.tenant, event.id, thread));
        1
    }
}

#[tokio::test]
async fn several_writers_share_the_tenants_and_each_tenant_stays_with_one() {
    on_every_engine(sharded_writers).await;
}

/// One store with three writer threads (PostgreSQL; SQLite refuses more than one) takes
/// commands for six tenants at once: every command applies, each tenant's ids are
/// gap-free and its events are all published by one writer, in id order, and the
/// tenants are spread over more than one writer.
async fn sharded_writers(at: Location) {
    const TENANTS: [&str; 6] = ["s1", "s2", "s3", "s4", "s5", "s6"];
    const EACH: u64 = 40;
    let options = StoreOptions {
        writers: 3,
        ..StoreOptions::default()
    };
    if matches!(at, Location::Sqlite(_)) {
        let refused = Store::open(&at, options, Arc::new(ByThread::default()), None).await;
        let message = refused
            .err()
            .expect("SQLite refuses three writers")
            .to_string();
        assert!(message.contains("PostgreSQL"), "{message}");
        return;
    }
    let sink = Arc::new(ByThread::default());
    let (store, writer, _) = Store::open(&at, options, sink.clone(), None).await.unwrap();
    create_tenants(&store, &TENANTS).await;
    let mut tasks = Vec::new();
    for round in 0..EACH {
        for tenant in TENANTS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let origin = Origin::system(tenant.into(), DEFAULT_SITE.into(), "test");
                let product = 1 + (round % 4) as i64;
                store
                    .submit(cmd(StockOp::Add, &[(product, 1)]), origin)
                    .await
            }));
        }
    }
    for task in tasks {
        let answer = task.await.unwrap();
        assert!(answer.is_ok(), "every command applies: {answer:?}");
    }
    let published = sink.0.lock().unwrap().clone();
    let mut threads = BTreeSet::new();
    for tenant in TENANTS {
        let mine: Vec<_> = published
            .iter()
            .filter(|(t, _, _)| &**t == tenant)
            .collect();
        let ids: Vec<u64> = mine.iter().map(|(_, id, _)| *id).collect();
        assert_eq!(
            ids,
            (1..=EACH).collect::<Vec<_>>(),
            "{tenant}: gap-free, in order"
        );
        let by: BTreeSet<&str> = mine.iter().map(|(_, _, thread)| thread.as_str()).collect();
        assert_eq!(by.len(), 1, "{tenant} is published by one writer: {by:?}");
        assert!(by.iter().all(|t| t.starts_with("stocky-writer")), "{by:?}");
        threads.extend(by.into_iter().map(str::to_owned));
        let page = store.replay(tenant, 0, 1000).await.unwrap();
        assert_eq!(page.head, EACH, "{tenant}");
        let total: i64 = on_hand_total(&store, tenant).await;
        assert_eq!(total, EACH as i64, "{tenant}: stock");
    }
    assert!(
        threads.len() > 1,
        "six tenants over three writers: {threads:?}"
    );
    drop(store);
    writer.join();
}

/// The on-hand stock of products 1–4 of `tenant`'s default site, summed.
async fn on_hand_total(store: &Store, tenant: &'static str) -> i64 {
    let mut total = 0;
    for product in 1..=4 {
        if let Some(row) = store.stock_of(tenant, DEFAULT_SITE, product).await.unwrap() {
            total += row.on_hand;
        }
    }
    total
}

fn fields(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().unwrap().clone()
}

#[tokio::test]
async fn documents_and_the_ledger_behave_alike_on_every_engine() {
    on_every_engine(documents_and_ledger).await;
}

async fn documents_and_ledger(at: Location) {
    let (store, writer, _) = open(&at, Arc::default()).await;
    let put = |id: &str, body: serde_json::Value, if_version| DocWrite::Put {
        db: "shop".into(),
        store: "products".into(),
        id: id.into(),
        fields: fields(body),
        if_version,
    };
    store
        .submit(put("a", json!({"name": "Tea"}), None), origin(None))
        .await
        .unwrap();
    store
        .submit(put("b", json!({"name": "Cake"}), None), origin(None))
        .await
        .unwrap();
    let stale = store
        .submit(put("a", json!({"name": "Coffee"}), Some(7)), origin(None))
        .await
        .unwrap_err();
    assert!(matches!(
        stale,
        SubmitError::Rejected(Rejection::VersionConflict {
            actual: Some(1),
            ..
        })
    ));
    let patch = DocWrite::Patch {
        db: "shop".into(),
        store: "products".into(),
        id: "a".into(),
        fields: fields(json!({"price": 3})),
        if_version: Some(1),
    };
    store.submit(patch, origin(None)).await.unwrap();
    let delete = DocWrite::Delete {
        db: "shop".into(),
        store: "products".into(),
        id: "b".into(),
        if_version: None,
    };
    store.submit(delete, origin(None)).await.unwrap();

    let a = store
        .document(DEFAULT_TENANT, "shop", "products", "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a["name"].clone(), a["price"].clone()),
        (json!("Tea"), json!(3))
    );
    assert_eq!(a["version"], json!(2));
    let live = store
        .documents(DEFAULT_TENANT, "shop", "products")
        .await
        .unwrap();
    assert_eq!(live.len(), 1);
    let changes = store
        .documents_since(DEFAULT_TENANT, "shop", "products", 0)
        .await
        .unwrap();
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().any(|c| c["_deleted"] == json!(true)));
    let stats = store
        .document_stats(
            DEFAULT_TENANT,
            "shop",
            "products",
            stocky_core::time::now_millis(),
        )
        .await
        .unwrap();
    assert_eq!(
        (stats["total"].clone(), stats["updatedLast24h"].clone()),
        (json!(1), json!(1))
    );
    let databases = store.databases(DEFAULT_TENANT).await.unwrap();
    assert_eq!(databases["shop"]["products"], 1);
    let (records, deleted) = store.dump(DEFAULT_TENANT, "shop", Some(0)).await.unwrap();
    assert_eq!(records["products"].len(), 1);
    assert_eq!(deleted["products"], vec!["b".to_string()]);

    store
        .submit(cmd(StockOp::Add, &[(5, 4)]), origin(None))
        .await
        .unwrap();
    let ledger = store.ledger(DEFAULT_TENANT, None).await.unwrap();
    assert_eq!(ledger.len(), 1);
    let mut entries = vec![LedgerEntry {
        id: ledger[0]["id"].as_str().unwrap().to_owned(),
        site: DEFAULT_SITE.into(),
        product_id: 5,
        delta: 4,
        kind: "add".into(),
        reason: None,
        origin_client: None,
        origin_op: None,
        server_time: 1,
        client_time: None,
        user_id: None,
    }];
    entries.push(LedgerEntry {
        id: "11111111-2222-3333-4444-555555555555".into(),
        delta: -1,
        ..entries[0].clone()
    });
    let restored = store
        .submit(Command::RestoreLedger(entries), origin(None))
        .await
        .unwrap();
    let Applied::New {
        outcome: crate::Outcome::Ledger(done),
        ..
    } = restored
    else {
        panic!("a ledger restore commits an event");
    };
    assert_eq!((done.restored(), done.skipped()), (1, 1));
    assert_eq!(store.ledger_len(DEFAULT_TENANT).await.unwrap(), 2);
    let row = store
        .stock_of(DEFAULT_TENANT, DEFAULT_SITE, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.on_hand, 3);
    drop(store);
    writer.join();
}

#[tokio::test]
async fn accounts_behave_alike_on_every_engine() {
    on_every_engine(accounts).await;
}

async fn accounts(at: Location) {
    let (store, writer, _) = open(&at, Arc::default()).await;
    let owner = Account {
        id: "u1".into(),
        tenant: "acme".into(),
        role: Role::Owner,
        site: None,
        modules: Some(vec!["inventory".into()]),
    };
    let created = owner.clone();
    store
        .accounts(move |a| {
            a.create_tenant("acme", "Acme", Some((&created, "Ana@Acme.test", "hash")))
        })
        .await
        .unwrap();
    let again = owner.clone();
    let duplicate = store
        .accounts(move |a| a.create_tenant("acme", "Acme", Some((&again, "x@y.test", "hash"))))
        .await
        .unwrap_err();
    assert!(matches!(duplicate, StoreError::Conflict(_)), "{duplicate}");
    let clash = Account {
        id: "u2".into(),
        ..owner.clone()
    };
    let email_taken = store
        .accounts(move |a| a.create_user(&clash, "ana@acme.test", "hash"))
        .await
        .unwrap_err();
    assert!(
        matches!(email_taken, StoreError::Conflict(_)),
        "{email_taken}"
    );
    let login = store
        .accounts(|a| a.user_by_email("ANA@acme.test"))
        .await
        .unwrap()
        .expect("emails match case-insensitively");
    assert_eq!(login.account, owner);
    let unknown_site = Account {
        id: "k1".into(),
        site: Some("nowhere".into()),
        ..owner.clone()
    };
    let refused = store
        .accounts(move |a| a.create_api_key(&unknown_site, "pos", "h1"))
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::NotFound(_)), "{refused}");
    let key = Account {
        id: "k1".into(),
        role: Role::Cashier,
        ..owner.clone()
    };
    let stored = key.clone();
    store
        .accounts(move |a| a.create_api_key(&stored, "pos", "h1"))
        .await
        .unwrap();
    assert_eq!(
        store.accounts(|a| a.api_key("h1")).await.unwrap(),
        Some(crate::KeyHolder {
            account: key,
            device: None
        })
    );
    assert!(store
        .accounts(|a| a.revoke_api_key("acme", "k1"))
        .await
        .unwrap());
    assert_eq!(store.accounts(|a| a.api_key("h1")).await.unwrap(), None);

    let session_owner = owner.clone();
    store
        .accounts(move |a| a.create_session("s1", &session_owner, Some("till-1"), "r1", i64::MAX))
        .await
        .unwrap();
    let now = stocky_core::time::now_millis();
    let rotated = store
        .accounts(move |a| a.rotate_session("r1", "r2", now))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rotated.id.as_str(), rotated.device.as_deref()),
        ("s1", Some("till-1"))
    );
    assert!(store
        .accounts(move |a| a.rotate_session("r1", "r3", now))
        .await
        .unwrap()
        .is_none());
    assert!(
        !store.accounts(|a| a.session_active("s1")).await.unwrap(),
        "reusing the rotated-away refresh token ends the session"
    );
    assert!(store
        .accounts(move |a| a.rotate_session("r2", "r5", now))
        .await
        .unwrap()
        .is_none());
    assert!(!store.accounts(|a| a.revoke_session("s1")).await.unwrap());
    // A password reset replaces the hash and logs the user out everywhere.
    let session_owner = owner.clone();
    store
        .accounts(move |a| a.create_session("s2", &session_owner, None, "r4", i64::MAX))
        .await
        .unwrap();
    let reset = store
        .accounts(|a| a.reset_password("ANA@acme.test", "hash2"))
        .await
        .unwrap();
    assert_eq!(reset, Some(owner.clone()));
    assert!(!store.accounts(|a| a.session_active("s2")).await.unwrap());
    let login = store
        .accounts(|a| a.user_by_email("ana@acme.test"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(login.password_hash, "hash2");
    assert_eq!(
        store
            .accounts(|a| a.reset_password("nobody@acme.test", "hash3"))
            .await
            .unwrap(),
        None
    );
    let tenants = store.accounts(|a| a.list_tenants()).await.unwrap();
    assert_eq!(tenants.len(), 2);
    drop(store);
    writer.join();
}

#[tokio::test]
async fn store_nodes_mirror_users_and_sites_track_their_node_on_every_engine() {
    on_every_engine(store_nodes).await;
}

async fn store_nodes(at: Location) {
    let (store, writer, _) = open(&at, Arc::default()).await;
    let user = |id: &str, email: &str, hash: &str, role: Role| UserLogin {
        account: Account {
            id: id.into(),
            tenant: DEFAULT_TENANT.into(),
            role,
            site: Some(DEFAULT_SITE.into()),
            modules: None,
        },
        email: email.into(),
        password_hash: hash.into(),
    };
    // Mirroring: added, then one changed (its session revoked), one gone, one reusing the
    // gone one's email.
    let first = vec![
        user("u1", "ana@shop.test", "h1", Role::Cashier),
        user("u2", "bo@shop.test", "h2", Role::Manager),
    ];
    let done = store
        .accounts(move |a| a.mirror_users(&first))
        .await
        .unwrap();
    assert_eq!((done.added, done.changed, done.removed), (2, 0, 0));
    let holder = user("u1", "", "", Role::Cashier).account;
    store
        .accounts(move |a| a.create_session("s1", &holder, None, "r1", i64::MAX))
        .await
        .unwrap();
    let second = vec![
        user("u1", "ana@shop.test", "h1-reset", Role::Cashier),
        user("u3", "bo@shop.test", "h3", Role::Cashier),
    ];
    let done = store
        .accounts(move |a| a.mirror_users(&second))
        .await
        .unwrap();
    assert_eq!((done.added, done.changed, done.removed), (1, 1, 1));
    assert!(!store.accounts(|a| a.session_active("s1")).await.unwrap());
    let bo = store
        .accounts(|a| a.user_by_email("bo@shop.test"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bo.account.id, "u3");
    let same = vec![
        user("u1", "ana@shop.test", "h1-reset", Role::Cashier),
        user("u3", "bo@shop.test", "h3", Role::Cashier),
    ];
    let done = store
        .accounts(move |a| a.mirror_users(&same))
        .await
        .unwrap();
    assert_eq!(
        done,
        Mirrored::default(),
        "an unchanged mirror writes nothing"
    );
    let mine = store
        .accounts(|a| a.site_users(DEFAULT_TENANT, DEFAULT_SITE))
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);
    assert!(store
        .accounts(|a| a.site_users(DEFAULT_TENANT, "elsewhere"))
        .await
        .unwrap()
        .is_empty());

    // Site state: online while the marking connection is open and fresh.
    let states = |fresh: i64| {
        let store = store.clone();
        async move {
            store
                .sync(move |s| s.site_states(DEFAULT_TENANT, fresh))
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.id == DEFAULT_SITE)
                .unwrap()
        }
    };
    assert!(!states(0).await.is_online);
    let t = 1_000_000;
    let on = |c: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .sync(move |s| s.site_online(DEFAULT_TENANT, DEFAULT_SITE, c, now, now - 90))
                .await
                .unwrap()
        }
    };
    assert!(on("c1", t).await, "offline → online is a change");
    assert!(!on("c2", t + 1).await, "a second connection is not");
    assert!(states(t).await.is_online);
    assert!(
        !states(t + 10).await.is_online,
        "a stale ping is not online"
    );
    let off = |c: &'static str| {
        let store = store.clone();
        async move {
            store
                .sync(move |s| s.site_offline(DEFAULT_TENANT, DEFAULT_SITE, c))
                .await
                .unwrap()
        }
    };
    assert!(!off("c1").await, "the old connection no longer holds it");
    assert!(states(t).await.is_online);
    store
        .sync(move |s| s.site_synced(DEFAULT_TENANT, DEFAULT_SITE, t + 5, Some(42), None))
        .await
        .unwrap();
    assert_eq!(states(t).await.outbox, None, "no report yet");
    let report = stocky_core::api::OutboxReport {
        pending: 3,
        pending_sales: 2,
        oldest_unsynced_sale_at: Some(t - 60_000),
        reported_at: 0,
    };
    store
        .sync(move |s| s.site_synced(DEFAULT_TENANT, DEFAULT_SITE, t + 6, Some(7), Some(&report)))
        .await
        .unwrap();
    let state = states(t).await;
    assert_eq!(
        (state.sync_version, state.last_sync_at, state.last_ping_at),
        (42, Some(t + 6), Some(t + 6))
    );
    assert_eq!(
        state.outbox,
        Some(stocky_core::api::OutboxReport {
            reported_at: t + 6,
            ..report
        }),
        "the node's outbox as reported, stamped with the hub's time"
    );
    assert!(off("c2").await);
    assert!(!states(0).await.is_online);

    // The sync log keeps the newest rows, newest first.
    for i in 0..3u64 {
        let entry = SyncLogEntry::round("push", (i as i64, i as i64 + 1), Ok(i), None);
        store.sync(move |s| s.log_sync(&entry)).await.unwrap();
    }
    let at_hub = SyncLogEntry::round(
        "pull",
        (5, 6),
        Err("boom".into()),
        Some((DEFAULT_TENANT.into(), "north".into())),
    );
    store.sync(move |s| s.log_sync(&at_hub)).await.unwrap();
    let north = store
        .sync(|s| s.sync_log(Some((DEFAULT_TENANT, "north")), 10))
        .await
        .unwrap();
    assert_eq!(
        (
            north.len(),
            north[0].status.as_str(),
            north[0].error.as_deref()
        ),
        (1, "failed", Some("boom"))
    );
    let log = store.sync(|s| s.sync_log(None, 2)).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.records_affected).collect::<Vec<_>>(),
        vec![2, 1]
    );
    drop(store);
    writer.join();
}

#[tokio::test]
async fn document_changes_page_in_log_order_and_merges_resolve_on_every_engine() {
    on_every_engine(document_sync).await;
}

async fn document_sync(at: Location) {
    use stocky_core::documents::{Merged, SyncedRecord};
    use stocky_core::sync_rules::{CollectionRule, Direction, Side};
    let (store, writer, _) = open(&at, Arc::default()).await;
    let fields = |v: serde_json::Value| match v {
        serde_json::Value::Object(m) => m,
        _ => unreachable!(),
    };
    let upsert = DocWrite::Upsert {
        db: "pos".into(),
        store: "products".into(),
        records: vec![
            (Some("p1".into()), fields(json!({"name": "tea"}))),
            (Some("p2".into()), fields(json!({"name": "cake"}))),
        ],
    };
    store
        .submit(Command::Documents(upsert), origin(None))
        .await
        .unwrap();
    let all = store
        .sync(|s| s.documents_after(DEFAULT_TENANT, &DocCursor::default(), 10, None))
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].modified_by.as_deref(), Some("test"));
    let after_first = all[0].cursor.clone();
    let rest = store
        .sync(move |s| s.documents_after(DEFAULT_TENANT, &after_first, 10, None))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1, "the cursor pages inside one event");
    let skipped = store
        .sync(|s| s.documents_after(DEFAULT_TENANT, &DocCursor::default(), 10, Some("test")))
        .await
        .unwrap();
    assert!(skipped.is_empty());

    let rule = CollectionRule::new("*", "*", Direction::Both);
    let revision = |version: i64, name: &str| SyncedRecord {
        id: "p1".into(),
        fields: fields(json!({ "name": name })),
        version,
        created_at: 1,
        updated_at: 2_000_000_000_000,
        deleted: false,
    };
    let merge = |records: Vec<SyncedRecord>| {
        Command::Documents(DocWrite::Merge {
            db: "pos".into(),
            store: "products".into(),
            records,
            from: Side::Remote,
            rule: rule.clone(),
        })
    };
    let mut upstream = origin(None);
    upstream.client_id = "upstream".into();
    let taken = store
        .submit(merge(vec![revision(5, "green tea")]), upstream.clone())
        .await
        .unwrap();
    let Applied::New {
        outcome: Outcome::Documents(stocky_core::documents::DocOutcome::Merged(done)),
        ..
    } = taken
    else {
        panic!("{taken:?}")
    };
    assert_eq!(done.results, vec![Merged::Taken]);
    let again = store
        .submit(
            merge(vec![revision(5, "green tea"), revision(2, "old")]),
            upstream.clone(),
        )
        .await
        .unwrap();
    assert!(
        matches!(again, Applied::Unchanged { .. }),
        "the same and an older revision change nothing and use no id: {again:?}"
    );
    let record = store
        .document(DEFAULT_TENANT, "pos", "products", "p1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (record["name"].clone(), record["version"].clone()),
        (json!("green tea"), json!(5))
    );
    let from_upstream = store
        .sync(|s| s.documents_after(DEFAULT_TENANT, &DocCursor::default(), 10, Some("upstream")))
        .await
        .unwrap();
    assert_eq!(
        from_upstream
            .iter()
            .map(|c| c.cursor.id.as_str())
            .collect::<Vec<_>>(),
        vec!["p2"],
        "what came from upstream is left out of what goes back"
    );
    drop(store);
    writer.join();
}

#[tokio::test]
async fn daily_numbers_are_gap_free_per_business_day_and_kept_by_repeats() {
    on_every_engine(daily_numbers).await;
}

async fn daily_numbers(at: Location) {
    use stocky_core::orders::{NewOrder, OrderCommand};
    let sink = Arc::new(Recorder::default());
    let (store, writer, _) = open(&at, sink).await;
    // The store's day starts at 04:00 local time, UTC−5: 09:00 UTC.
    store
        .submit(
            Command::SiteData {
                kind: crate::orders::SiteDataKind::Config,
                body: serde_json::json!({"timezone": "-05:00", "businessDayStart": "04:00"}),
            },
            origin(None),
        )
        .await
        .unwrap();
    let order = |n: usize, created: &str| {
        let body = serde_json::json!({"lines": [{"name": "x", "quantity": 1}]});
        let mut o = NewOrder::parse(body.as_object().unwrap())
            .unwrap()
            .into_order(
                DEFAULT_SITE,
                stocky_core::time::parse_iso8601(created).unwrap(),
            );
        o.id = format!("00000000-0000-4000-8000-{n:012}");
        o
    };
    let arrive = |o: stocky_core::orders::Order| {
        let store = store.clone();
        async move {
            store
                .submit(
                    Command::Order(OrderCommand::Arrive(Box::new(o))),
                    origin(None),
                )
                .await
                .unwrap()
        }
    };
    // 30 orders of the 5th's business day arriving at once (the last at 03:59 on the 6th),
    // then one after the day starts.
    let tasks: Vec<_> = (0..30)
        .map(|n| {
            let created = if n == 29 {
                "2026-12-06T08:59:00.000Z"
            } else {
                "2026-12-05T20:00:00.000Z"
            };
            tokio::spawn(arrive(order(n, created)))
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    arrive(order(100, "2026-12-06T09:00:00.000Z")).await;
    // A repeat (a crash before the confirmation) keeps the number.
    assert!(matches!(
        arrive(order(3, "2026-12-05T20:00:00.000Z")).await,
        Applied::Unchanged { .. }
    ));
    let orders = store
        .read(|r| {
            r.orders(
                DEFAULT_TENANT,
                &crate::orders::OrderFilter {
                    limit: 100,
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap();
    let day = |d: &str| {
        let mut n: Vec<i64> = orders
            .iter()
            .filter(|o| o.business_day.as_deref() == Some(d))
            .map(|o| o.daily_number.unwrap())
            .collect();
        n.sort_unstable();
        n
    };
    assert_eq!(day("2026-12-05"), (1..=30).collect::<Vec<i64>>());
    assert_eq!(day("2026-12-06"), vec![1]);
    drop(store);
    writer.join();
}

#[tokio::test]
async fn history_sums_and_audit_find_every_row_before_and_after_bulk_indexing() {
    on_every_engine(bulk_indexes).await;
}

/// With an index lag of 3 events, the ledger by product and the audit log by entity are
/// read partly from their bulk-written indexes and partly from the tail: every read must
/// match what the tables themselves hold, whatever the split.
async fn bulk_indexes(at: Location) {
    let options = StoreOptions {
        index_lag: 3,
        ..StoreOptions::default()
    };
    let (store, writer, _) = open_with(&at, options, Arc::default()).await;
    let account = audit::AccountAudit {
        tenant: DEFAULT_TENANT.into(),
        action: "site:update".into(),
        entity_type: "site",
        entity_id: Some(DEFAULT_SITE.into()),
        ..Default::default()
    };
    store
        .accounts(move |a| a.audited(&account, |_| Ok(())))
        .await
        .unwrap();
    let mut split_seen = (false, false);
    for n in 0..14_i64 {
        let lines: Vec<(i64, i64)> = if n % 5 == 4 {
            vec![(1, 2), (2, 3)]
        } else {
            vec![(n % 3 + 1, n + 1)]
        };
        store
            .submit(cmd(StockOp::Add, &lines), origin(None))
            .await
            .unwrap();

        let (head, indexed, indexed_rows): (i64, i64, i64) = store
            .read(|r| {
                let row = r.0.query_one(
                    "SELECT head, indexed_head,
                        (SELECT COUNT(*) FROM ledger_by_product WHERE tenant_id = $1)
                     FROM streams WHERE tenant_id = $1",
                    args![DEFAULT_TENANT],
                )?;
                Ok((row.int(0)?, row.int(1)?, row.int(2)?))
            })
            .await
            .unwrap();
        assert!(head - indexed < 3, "indexed up to {indexed} at head {head}");
        split_seen.0 |= indexed > 0 && indexed_rows > 0;
        split_seen.1 |= indexed > 0 && head > indexed;

        for product in 1..=3_i64 {
            // The table itself, newest first.
            let expected: Vec<(String, i64)> = store
                .read(move |r| {
                    let rows = r.0.query(
                        "SELECT id, delta FROM movements
                         WHERE tenant_id = $1 AND site_id = $2 AND product_id = $3
                         ORDER BY event_id DESC, id DESC",
                        args![DEFAULT_TENANT, DEFAULT_SITE, product],
                    )?;
                    rows.into_iter()
                        .map(|mut row| Ok((row.text(0)?, row.int(1)?)))
                        .collect::<Result<_, DbError>>()
                        .map_err(StoreError::from)
                })
                .await
                .unwrap();
            // The history, two at a time.
            let mut paged = Vec::new();
            let mut before: Option<OutboxCursor> = None;
            loop {
                let cursor = before.clone();
                let page = store
                    .sync(move |s| {
                        s.product_history(DEFAULT_TENANT, DEFAULT_SITE, product, cursor.as_ref(), 2)
                    })
                    .await
                    .unwrap();
                let Some(last) = page.last() else { break };
                before = Some(last.cursor.clone());
                paged.extend(page.into_iter().map(|p| (p.entry.id, p.entry.delta)));
            }
            assert_eq!(paged, expected, "history of product {product} after {n}");
            let sum = store
                .ledger_sum(DEFAULT_TENANT, DEFAULT_SITE, product)
                .await
                .unwrap();
            assert_eq!(sum, expected.iter().map(|(_, d)| d).sum::<i64>());

            let filter = AuditFilter {
                entity_type: Some("stock".into()),
                entity_id: Some(product.to_string()),
                limit: 100,
                ..AuditFilter::default()
            };
            let audited = store
                .read(move |r| r.audit(DEFAULT_TENANT, &filter))
                .await
                .unwrap();
            let single_line = (0..=n).filter(|k| k % 5 != 4 && k % 3 + 1 == product);
            assert_eq!(
                audited.len(),
                single_line.count(),
                "audit of product {product}"
            );
        }
        // Every command's entry, newest first, in pages; and the account change's.
        let mut ids = Vec::new();
        let mut before_id = None;
        loop {
            let filter = AuditFilter {
                entity_type: Some("stock".into()),
                before_id,
                limit: 4,
                ..AuditFilter::default()
            };
            let page = store
                .read(move |r| r.audit(DEFAULT_TENANT, &filter))
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            before_id = last["id"].as_i64();
            ids.extend(page.iter().map(|e| e["eventId"].as_i64().unwrap()));
        }
        assert_eq!(ids, (1..=head).rev().collect::<Vec<_>>());
        let filter = AuditFilter {
            entity_type: Some("site".into()),
            entity_id: Some(DEFAULT_SITE.into()),
            limit: 10,
            ..AuditFilter::default()
        };
        let sites = store
            .read(move |r| r.audit(DEFAULT_TENANT, &filter))
            .await
            .unwrap();
        assert_eq!(sites.len(), 1);
    }
    assert_eq!(
        split_seen,
        (true, true),
        "both the index and the tail were read"
    );
    drop(store);
    writer.join();
}

#[tokio::test]
async fn a_row_indexed_ahead_of_indexed_head_never_stops_a_tenants_commits() {
    on_every_engine(index_ahead).await;
}

/// A ledger row found in `ledger_by_product` before the writer indexes its range (which
/// the invariant rules out, but a hand-edited or half-restored database could hold): the
/// flush skips it instead of failing, every command still applies, and the index ends
/// with each movement once.
async fn index_ahead(at: Location) {
    let options = StoreOptions {
        index_lag: 3,
        ..StoreOptions::default()
    };
    let (store, writer, _) = open_with(&at, options, Arc::default()).await;
    store
        .submit(cmd(StockOp::Add, &[(1, 5)]), origin(None))
        .await
        .unwrap();
    let copied = store
        .sync(|s| {
            Ok(s.0.execute(
                "INSERT INTO ledger_by_product (tenant_id, site_id, product_id, event_id, id, delta)
                 SELECT tenant_id, site_id, product_id, event_id, id, delta FROM movements
                 WHERE tenant_id = $1",
                args![DEFAULT_TENANT],
            )?)
        })
        .await
        .unwrap();
    assert_eq!(copied, 1);
    for n in 0..4 {
        let answer = store
            .submit(cmd(StockOp::Add, &[(1, 1 + n)]), origin(None))
            .await;
        assert!(answer.is_ok(), "command {n} applies: {answer:?}");
    }
    let (indexed, rows, movements): (i64, i64, i64) = store
        .read(|r| {
            let row = r.0.query_one(
                "SELECT indexed_head,
                    (SELECT COUNT(*) FROM ledger_by_product WHERE tenant_id = $1),
                    (SELECT COUNT(*) FROM movements WHERE tenant_id = $1)
                 FROM streams WHERE tenant_id = $1",
                args![DEFAULT_TENANT],
            )?;
            Ok((row.int(0)?, row.int(1)?, row.int(2)?))
        })
        .await
        .unwrap();
    assert_eq!(
        (indexed, rows, movements),
        (3, 3, 5),
        "indexed up to 3, once each"
    );
    let history = store
        .sync(|s| s.product_history(DEFAULT_TENANT, DEFAULT_SITE, 1, None, 100))
        .await
        .unwrap();
    assert_eq!(history.len(), 5, "each movement once in the history");
    drop(store);
    writer.join();
}

#[tokio::test]
async fn sessions_that_ended_before_the_cut_are_purged_and_no_other() {
    on_every_engine(purge_sessions).await;
}

/// The first (text) column of every row `sql` reads.
async fn first_column(store: &Store, sql: &'static str) -> Vec<String> {
    store
        .read(move |r| {
            let rows = r.0.query(sql, args![])?;
            rows.into_iter()
                .map(|mut row| row.text(0))
                .collect::<Result<_, _>>()
                .map_err(Into::into)
        })
        .await
        .unwrap()
}

/// Four sessions: expired long ago, logged out long ago, expired recently, live. Purging
/// before the cut removes the first two only (and the spent refresh tokens of the first),
/// and the remaining ones still work as before.
async fn purge_sessions(at: Location) {
    let (store, writer, _) = open(&at, Arc::default()).await;
    let owner = Account {
        id: "u-purge".into(),
        tenant: DEFAULT_TENANT.into(),
        role: Role::Owner,
        site: None,
        modules: None,
    };
    let created = owner.clone();
    store
        .accounts(move |a| a.create_user(&created, "purge@example.test", "hash"))
        .await
        .unwrap();
    let (cut, now) = (1_000_000, 2_000_000);
    for (id, expires_at) in [("old", cut - 1), ("out", i64::MAX), ("recent", cut + 1)] {
        let holder = owner.clone();
        store
            .accounts(move |a| a.create_session(id, &holder, None, &format!("r-{id}"), expires_at))
            .await
            .unwrap();
    }
    let holder = owner.clone();
    store
        .accounts(move |a| a.create_session("live", &holder, None, "r-live", i64::MAX))
        .await
        .unwrap();
    // The old session was refreshed once while it lived: its spent token goes with it.
    store
        .accounts(move |a| a.rotate_session("r-old", "r-old-2", cut - 10))
        .await
        .unwrap()
        .expect("the old session refreshes before it expires");
    store
        .sync(move |s| {
            Ok(s.0.execute(
                "UPDATE sessions SET revoked_at = $2 WHERE id = $1",
                args!["out", cut - 1],
            )?)
        })
        .await
        .unwrap();
    let purged = store
        .accounts(move |a| a.purge_sessions(cut))
        .await
        .unwrap();
    assert_eq!(purged, 2);
    let left = first_column(&store, "SELECT id FROM sessions ORDER BY id").await;
    assert_eq!(left, ["live", "recent"]);
    assert!(store.accounts(|a| a.session_active("live")).await.unwrap());
    let rotated = store
        .accounts(move |a| a.rotate_session("r-live", "r-live-2", now))
        .await
        .unwrap();
    assert!(rotated.is_some(), "the live session still refreshes");
    let spent = first_column(&store, "SELECT session_id FROM spent_refresh_tokens").await;
    assert_eq!(
        spent,
        ["live"],
        "spent tokens of purged sessions are purged"
    );
    drop(store);
    writer.join();
}
